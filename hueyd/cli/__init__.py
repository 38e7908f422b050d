"""Command-line entry points of hueyd and the daemon's configuration loading."""
