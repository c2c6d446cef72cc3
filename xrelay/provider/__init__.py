"""The provider client: the only code that knows the provider's address and credentials."""
