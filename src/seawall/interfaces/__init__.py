"""Interfaces: the CLI (and, later, the HTTP API). Thin layers over seawall's Python API."""
