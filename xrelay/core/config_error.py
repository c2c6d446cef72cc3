"""The one exception a configuration problem raises (its own module, so that
the parsers of the configuration's parts can raise it without importing
the configuration itself)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration problem, described in one line for the admin."""
