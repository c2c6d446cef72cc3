"""HTTP building blocks shared by every surface: request arguments, error answers, authentication, bodies."""
