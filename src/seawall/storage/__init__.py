"""Storage layer: the Storage protocol, backends and wrappers."""

from __future__ import annotations

from pathlib import Path

from seawall.errors import UsageError
from seawall.storage.base import Capabilities, ObjectInfo, Storage
from seawall.storage.local import LocalStorage
from seawall.storage.memory import MemoryStorage
from seawall.storage.wrappers import ChaosStorage, FaultPlan, FaultyStorage, RetryingStorage


def open_storage(location: str, *, s3_endpoint: str | None = None) -> Storage:
    """Open the store a repository location names (``/path``, ``local:/path``, ``memory:``,
    ``s3:BUCKET/PREFIX``). ``s3_endpoint`` overrides boto3's endpoint for ``s3:``."""
    if not location:
        raise UsageError("no repository given: use --repo or set SEAWALL_REPOSITORY")
    if location.startswith("s3:"):
        return RetryingStorage(_open_s3(location, s3_endpoint))
    if location.startswith("rest:"):
        return RetryingStorage(_open_rest(location[len("rest:") :]))
    if location.startswith("local:"):
        location = location[len("local:") :]
    elif location == "memory:":
        return MemoryStorage()
    elif ":" in location.split("/", 1)[0] and not Path(location).exists():
        scheme = location.split(":", 1)[0]
        raise UsageError(f"unsupported repository location scheme {scheme!r} in {location!r}")
    return RetryingStorage(LocalStorage(Path(location).expanduser()))


def _open_rest(url: str) -> Storage:
    """``rest:http(s)://HOST:PORT/``: a ``seawall repo-server``. The token comes from
    $SEAWALL_REST_TOKEN, never from the location; $SEAWALL_REST_CACERT names a PEM
    file to verify a self-signed server with."""
    import os

    from seawall.storage.rest import RestStorage  # httpx loads only when needed

    cacert = os.environ.get("SEAWALL_REST_CACERT")
    return RestStorage(url, os.environ.get("SEAWALL_REST_TOKEN") or None, verify=cacert or True)


def _open_s3(location: str, endpoint: str | None) -> Storage:
    # Imported here: boto3 takes a while to import, and most runs never need it.
    from seawall.errors import StorageError
    from seawall.storage.base import check_name
    from seawall.storage.s3 import S3Storage

    path = location[len("s3:") :].lstrip("/")  # s3://bucket/prefix is accepted too
    bucket, _, prefix = path.partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise UsageError(f"no bucket in {location!r}: write s3:BUCKET or s3:BUCKET/PREFIX")
    if prefix:
        try:
            check_name(prefix)
        except StorageError:
            raise UsageError(f"invalid prefix {prefix!r} in {location!r}") from None
    return S3Storage(bucket, prefix, endpoint_url=endpoint or None)


__all__ = [
    "Capabilities",
    "ChaosStorage",
    "FaultPlan",
    "FaultyStorage",
    "LocalStorage",
    "MemoryStorage",
    "ObjectInfo",
    "RetryingStorage",
    "Storage",
    "open_storage",
]
