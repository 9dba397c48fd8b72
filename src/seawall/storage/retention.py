"""Optional storage powers for immutable repositories: retention dates and object versions.

The Storage protocol stays small; a store that can do more says so in
``capabilities()`` and implements one of these protocols as well:

- :class:`RetentionStorage`: objects written with a retention date (S3 Object
  Lock) cannot be deleted or overwritten before it, not even by the client that
  wrote them. Dates can be extended, never shortened.
- :class:`VersionedStorage`: a delete or an overwrite keeps the previous
  versions of an object, readable by version id.

A store with ``capabilities().object_lock`` implements both (S3 Object Lock
implies versioning). Wrappers (retry, faults) do not forward these powers:
:func:`find_retention` and :func:`find_versions` walk a chain of wrappers
(their ``inner``) to the store that has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from seawall.errors import UsageError
from seawall.storage.base import Storage

#: Object Lock modes: governance (an account with s3:BypassGovernanceRetention can
#: still delete) and compliance (nobody can, not even the bucket's owner).
LOCK_MODES = ("governance", "compliance")


@dataclass(frozen=True)
class RetentionPolicy:
    """Objects written from now on are retained ``days`` days in ``mode``,
    except those whose name starts with one of ``exempt``."""

    days: int
    mode: str = "governance"
    exempt: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.days < 1:
            raise UsageError(f"a retention of {self.days} days is too short: give at least 1")
        if self.mode not in LOCK_MODES:
            raise UsageError(f"unknown lock mode {self.mode!r}: use governance or compliance")

    def applies(self, name: str) -> bool:
        return not name.startswith(self.exempt) if self.exempt else True

    def until(self, now: datetime | None = None) -> datetime:
        """The retention date of an object written (or extended) at ``now``."""
        return (now or datetime.now(UTC)) + timedelta(days=self.days)


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object, as a versioned store lists it."""

    name: str
    version_id: str
    size: int
    #: this is the current version (what get() reads, or a delete marker)
    latest: bool
    #: a delete marker: the object was deleted, its older versions remain
    deleted: bool


@runtime_checkable
class RetentionStorage(Protocol):
    """Contracts:

    - after ``set_write_retention(policy)``, every object put whose name the
      policy applies to is written with the retention date ``policy.until()``
      of the moment it is written; ``None`` turns this off.
    - ``retention(name, version_id)`` is the retain-until date of that version
      (default: the current one), or None if it has none. ObjectNotFound if
      there is no such version (a current version that is a delete marker
      counts as missing).
    - ``extend_retention(name, until, version_id)`` sets it to ``until``; the
      caller never asks for an earlier date than the present one.
    """

    def set_write_retention(self, policy: RetentionPolicy | None) -> None: ...

    def retention(self, name: str, version_id: str | None = None) -> datetime | None: ...

    def extend_retention(
        self, name: str, until: datetime, version_id: str | None = None
    ) -> None: ...


@runtime_checkable
class VersionedStorage(Protocol):
    """Contracts:

    - ``versions(prefix)`` yields every version and delete marker of every
      object whose name starts with ``prefix``; for each name, versions come
      newest first (delete markers may come in any order among them; exactly
      one entry of a name has ``latest``).
    - ``get_version`` reads one version (ObjectNotFound if it does not exist,
      or is a delete marker); ``length=None`` reads to the end.
    - ``restore_version(name, version_id)`` makes a copy of that version the
      current one, written with the write retention (see RetentionStorage).
    - ``delete_version`` removes one version or delete marker for good;
      :class:`~seawall.errors.ObjectRetained` if it is under retention.
    """

    def versions(self, prefix: str = "") -> Iterator[ObjectVersion]: ...

    def get_version(
        self, name: str, version_id: str, offset: int = 0, length: int | None = None
    ) -> bytes: ...

    def restore_version(self, name: str, version_id: str) -> None: ...

    def delete_version(self, name: str, version_id: str) -> None: ...


def _chain(store: Storage) -> Iterator[object]:
    """``store`` and the stores it wraps, outermost first."""
    current: object = store
    for _ in range(32):  # a chain of wrappers is short; a cycle is a bug
        if current is None:
            return
        yield current
        current = getattr(current, "inner", None)


def find_retention(store: Storage) -> RetentionStorage | None:
    """The store in ``store``'s chain of wrappers that has retention dates, or None.

    Call it only when ``store.capabilities().object_lock`` says the power is there.
    """
    return next((s for s in _chain(store) if isinstance(s, RetentionStorage)), None)


def find_versions(store: Storage) -> VersionedStorage | None:
    """The store in ``store``'s chain of wrappers that keeps versions, or None."""
    return next((s for s in _chain(store) if isinstance(s, VersionedStorage)), None)
