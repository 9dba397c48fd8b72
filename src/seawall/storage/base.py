"""The storage protocol: the one seam between seawall and where bytes live.

A store holds named, immutable-by-convention objects. Names are relative,
slash-separated paths such as ``data/3f/3f9a...`` or ``config``. The store
knows nothing of their meaning; every guarantee about contents (encryption,
authentication, ids) is the repository's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from seawall.errors import StorageError


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


@dataclass(frozen=True)
class Capabilities:
    """What a store can promise beyond the basic calls."""

    #: put(if_absent=True) is atomic: two writers racing on one name cannot both win.
    conditional_write: bool = False
    #: objects can be given a retention date before which they cannot be deleted, and
    #: older versions stay readable: the store also implements RetentionStorage and
    #: VersionedStorage (storage/retention.py).
    object_lock: bool = False
    #: a listing shows every object whose put() has returned.
    consistent_list: bool = True
    #: the store refuses every delete (except under ``locks/``) and every overwrite
    #: with different bytes, so forget and prune cannot run through it.
    append_only: bool = False


def check_name(name: str) -> str:
    """``name`` if it is a valid object name, else raise StorageError (not transient).

    A name is relative and slash-separated; no component is empty, ``.`` or
    ``..``, and it holds no NUL. Every backend applies this one rule, so a
    name is valid on one store exactly when it is valid on all of them.
    """
    parts = name.split("/")
    if not name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object name {name!r}")
    return name


def refuse_if_append_only(store: Storage, action: str) -> None:
    """Raise StorageError (not transient) before ``action`` (which must delete
    objects) starts, if ``store`` is append-only: better than failing halfway."""
    if store.capabilities().append_only:
        raise StorageError(
            f"{action}, but the store at {store.location} is append-only and refuses "
            "deletes; run it on the server host against the repository directory itself "
            "(seawall --repo /path/to/dir ...). Nothing was changed"
        )


@runtime_checkable
class Storage(Protocol):
    """Contracts every backend must keep (see tests/storage/test_conformance.py).

    - ``put`` makes the object visible whole or not at all: a crash during a
      put never leaves a partial object under the name. It may be called
      again with the same name and bytes (idempotent).
    - ``get`` raises :class:`~seawall.errors.ObjectNotFound` for a missing
      name, never another error; ``length=None`` reads to the end.
    - ``list(prefix)`` yields every object whose name starts with ``prefix``,
      in no particular order.
    - ``delete`` of a missing object raises ObjectNotFound.
    - Transient failures raise StorageError(transient=True); a full store
      raises StorageFull. Foreign exceptions never escape.
    - Every method may be called from several threads at once.
    """

    @property
    def location(self) -> str:
        """Where the store is, for messages (never contains credentials)."""
        ...

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None: ...

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...

    def stat(self, name: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, name: str) -> None: ...

    def capabilities(self) -> Capabilities: ...

    def close(self) -> None: ...
