"""edged: a battery-aware inference daemon for edge cameras."""

__version__ = "0.1.0"
