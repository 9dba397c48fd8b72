"""Storage layer: the Storage protocol, backends and wrappers."""

from __future__ import annotations

from pathlib import Path

from seawall.errors import UsageError
from seawall.storage.base import Capabilities, ObjectInfo, Storage
from seawall.storage.local import LocalStorage
from seawall.storage.memory import MemoryStorage
from seawall.storage.wrappers import FaultyStorage, RetryingStorage


def open_storage(location: str) -> Storage:
    """Open the store a repository location names (``/path``, ``local:/path``, ``memory:``)."""
    if not location:
        raise UsageError("no repository given: use --repo or set SEAWALL_REPOSITORY")
    if location.startswith("local:"):
        location = location[len("local:") :]
    elif location == "memory:":
        return MemoryStorage()
    elif ":" in location.split("/", 1)[0] and not Path(location).exists():
        scheme = location.split(":", 1)[0]
        raise UsageError(f"unsupported repository location scheme {scheme!r} in {location!r}")
    return RetryingStorage(LocalStorage(Path(location).expanduser()))


__all__ = [
    "Capabilities",
    "FaultyStorage",
    "LocalStorage",
    "MemoryStorage",
    "ObjectInfo",
    "RetryingStorage",
    "Storage",
    "open_storage",
]
