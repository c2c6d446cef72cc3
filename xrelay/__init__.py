"""xrelay: share one Xtream Codes IPTV subscription across a LAN."""

__version__ = "0.1.0"
