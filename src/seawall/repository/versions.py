"""Immutable repositories: retention on write, and reading past an attacker's changes.

A repository made with ``init --immutable DAYS`` lives on a store with Object
Lock (S3). Every object but the locks is written with a retention date, so
no client, not even one holding the backup's own credentials, can destroy a
version before that date. What such a client can still do is hide the data:
delete an object (S3 then shows a delete marker, the retained version stays)
or overwrite it (a new version on top). :class:`VersionedView` reads through
that.

Invariants:

- An object named by its content (everything under ``data/``, ``index/``,
  ``snapshots/`` and ``keys/``: the last part of the name is the hex storage
  id of the bytes) is *intact* exactly when its bytes hash to its name. So
  picking the newest intact version is safe: it is the object seawall wrote,
  whoever wrote the versions above it.
- The view lists an object when any version of it is intact, with that
  version's size, and reads that version when the current one is a delete
  marker or not intact. Each such object is remembered (``touched``) and one
  warning per object says what was read (``notes``).
- Names it lists and reads with no anomaly (one version, current) cost the
  same requests as the store itself; anomalies are resolved by reading the
  candidate versions, once per process.
- ``delete`` removes every version of an object (a delete marker would leave
  the retained version, which the view would then list again: a forgotten
  snapshot coming back). A version under retention refuses with ObjectRetained.
- ``locks/`` are not retained and not resolved: a deleted lock stays deleted.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from seawall.codec.crypto import MasterKey
from seawall.codec.ids import storage_id
from seawall.errors import FormatError, IntegrityError, ObjectNotFound, SeawallError, UsageError
from seawall.repository.config import CONFIG_NAME, Immutability, RepoConfig
from seawall.storage.base import Capabilities, ObjectInfo, Storage
from seawall.storage.retention import (
    ObjectVersion,
    RetentionPolicy,
    RetentionStorage,
    VersionedStorage,
    find_retention,
    find_versions,
)

#: Prefixes of objects named by their content: the ones the view can vouch for.
CONTENT_PREFIXES = ("data/", "index/", "snapshots/", "records/", "keys/")
#: Never retained: a lock must be deletable by the process that took it.
EXEMPT_PREFIXES = ("locks/",)

#: States of an object the view had to look behind.
DELETED = "deleted"  # the current version is a delete marker; an intact version remains
OVERWRITTEN = "overwritten"  # the current version is not intact; an intact version remains
LOST = "lost"  # no version is intact

Check = Callable[[bytes], bool]


@dataclass(frozen=True)
class Touched:
    """An object whose current version is not what seawall wrote."""

    name: str
    state: str
    #: the newest intact version (None when LOST)
    good: ObjectVersion | None

    def describe(self) -> str:
        if self.state == LOST:
            return f"{self.name} was deleted or overwritten, and no retained version is intact"
        return (
            f"{self.name} was {self.state} in the store; an intact older version is retained "
            "(run `seawall repair versions` to put it back)"
        )


def is_intact(name: str, data: bytes) -> bool:
    """Whether ``data`` is what a content-named object ``name`` must hold."""
    return storage_id(data).hex() == name.rsplit("/", 1)[-1]


def _protected(name: str) -> bool:
    return name.startswith(CONTENT_PREFIXES)


def write_policy(immutability: Immutability) -> RetentionPolicy:
    return RetentionPolicy(immutability.days, immutability.mode, EXEMPT_PREFIXES)


def lock_powers(store: Storage) -> tuple[RetentionStorage, VersionedStorage] | None:
    """The retention and versions powers of ``store``, if it has Object Lock."""
    if not store.capabilities().object_lock:
        return None
    retention = find_retention(store)
    versions = find_versions(store)
    if retention is None or versions is None:
        return None
    return retention, versions


class VersionedView:
    """A Storage over the store of an immutable repository (see the module docstring)."""

    def __init__(
        self, inner: Storage, retention: RetentionStorage, versions: VersionedStorage
    ) -> None:
        self.inner = inner
        self.retention_power = retention
        self.versions = versions
        self._lock = threading.Lock()
        #: name -> the version to read instead of the current one
        self._read_from: dict[str, str] = {}
        self._touched: dict[str, Touched] = {}
        self._notes: list[str] = []
        self._noted: set[str] = set()
        #: how to tell an intact version of a name not named by its content
        self._checks: dict[str, Check] = {}
        self._checked: set[str] = set()

    def expect_config(self, config: RepoConfig) -> None:
        """The repository was opened with ``config``: an intact config version is one
        that parses to it (for retention, which must go on that version)."""
        self._checks[CONFIG_NAME] = functools.partial(_parses_as_config, expected=config)

    def _version_for(self, name: str) -> str | None:
        """The version of ``name`` to act on (None: the current one)."""
        with self._lock:
            version = self._read_from.get(name)
            pending = name in self._checks and name not in self._checked
        if version is not None or not pending:
            return version
        self.resolve(name, self._checks[name], note=False)  # not a read: no warning
        with self._lock:
            self._checked.add(name)
            return self._read_from.get(name)

    # --- what the view found ---------------------------------------------------------------

    @property
    def notes(self) -> list[str]:
        """One warning per object read from an older version, in order."""
        with self._lock:
            return list(self._notes)

    @property
    def touched(self) -> list[Touched]:
        with self._lock:
            return sorted(self._touched.values(), key=lambda t: t.name)

    def resolve(
        self, name: str, check: Check | None = None, *, note: bool = True
    ) -> Touched | None:
        """Look at every version of ``name`` afresh; None if the current one is intact
        (or there is none at all), else what was found. ``check`` tells an intact
        version (default: its bytes hash to its name); ``note``: add a warning if it
        is not the current one."""
        found = [v for v in self.versions.versions(name) if v.name == name]
        return self._resolve(name, found, check or functools.partial(is_intact, name), note)

    def _resolve(
        self, name: str, found: list[ObjectVersion], check: Check, note: bool = True
    ) -> Touched | None:
        latest = next((v for v in found if v.latest), None)
        good = None
        for version in (v for v in found if not v.deleted):
            try:
                data = self.versions.get_version(name, version.version_id)
            except ObjectNotFound:
                continue
            if check(data):
                good = version
                break
        if latest is None and good is None:
            touched = None  # nothing there at all
        elif latest is not None and not latest.deleted and good == latest:
            touched = None
        elif latest is None or latest.deleted:
            touched = Touched(name, DELETED if good else LOST, good)
        else:
            touched = Touched(name, OVERWRITTEN if good else LOST, good)
        with self._lock:
            if touched is None:
                self._read_from.pop(name, None)
                self._touched.pop(name, None)
                return None
            if touched.good is not None:
                self._read_from[name] = touched.good.version_id
            if note and name not in self._noted and touched.state != LOST:
                self._noted.add(name)
                self._notes.append(
                    f"{name} was {touched.state} in the store; read an older retained version"
                )
            self._touched[name] = touched
        return touched

    def distrust(self, name: str) -> bool:
        """Called when what was read of ``name`` failed authentication: whether an
        intact older version is now what the view reads (so reading again helps)."""
        if not _protected(name):
            return False
        touched = self.resolve(name)
        return touched is not None and touched.good is not None

    def audit(self, config: RepoConfig) -> list[Touched]:
        """Every object whose current version is not what seawall wrote, looked at afresh;
        ``config`` is the config the repository was opened with."""
        with self._lock:
            self._touched.clear()
            notes = len(self._notes)
        for prefix in CONTENT_PREFIXES:
            for _info in self.list(prefix):
                pass
        self.resolve(CONFIG_NAME, lambda data: _parses_as_config(data, config))
        with self._lock:
            del self._notes[notes:]  # the audit's report says it: no warnings as well
        return self.touched

    def forget(self, name: str) -> None:
        """Drop what the view knows of ``name`` (after repairing it)."""
        with self._lock:
            self._read_from.pop(name, None)
            self._touched.pop(name, None)

    # --- the Storage protocol ----------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.inner.location

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.put(name, data, if_absent=if_absent)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            version = self._read_from.get(name)
        if version is not None:
            return self.versions.get_version(name, version, offset, length)
        try:
            return self.inner.get(name, offset, length)
        except ObjectNotFound:
            if not _protected(name):
                raise
            touched = self.resolve(name)
            if touched is None or touched.good is None:
                raise
            return self.versions.get_version(name, touched.good.version_id, offset, length)

    def stat(self, name: str) -> ObjectInfo:
        with self._lock:
            touched = self._touched.get(name)
        if touched is not None and touched.good is not None:
            return ObjectInfo(name, touched.good.size)
        try:
            return self.inner.stat(name)
        except ObjectNotFound:
            if not _protected(name):
                raise
            touched = self.resolve(name)
            if touched is None or touched.good is None:
                raise
            return ObjectInfo(name, touched.good.size)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not any(p.startswith(prefix) or prefix.startswith(p) for p in CONTENT_PREFIXES):
            yield from self.inner.list(prefix)
            return
        by_name: dict[str, list[ObjectVersion]] = {}
        for version in self.versions.versions(prefix):
            by_name.setdefault(version.name, []).append(version)
        for name, found in by_name.items():
            latest = next((v for v in found if v.latest), None)
            kept = [v for v in found if not v.deleted]
            if latest is not None and not latest.deleted and len(kept) == 1:
                yield ObjectInfo(name, latest.size)  # the usual case: one version
                continue
            if not kept or not _protected(name):
                if latest is not None and not latest.deleted:
                    yield ObjectInfo(name, latest.size)
                continue
            touched = self._resolve(name, found, functools.partial(is_intact, name))
            if touched is None and latest is not None:
                yield ObjectInfo(name, latest.size)
            elif touched is not None and touched.good is not None:
                yield ObjectInfo(name, touched.good.size)
            elif latest is not None and not latest.deleted:
                yield ObjectInfo(name, latest.size)  # damaged beyond versions: as it is

    def delete(self, name: str) -> None:
        """Remove every version of ``name``: delete markers first, then versions newest
        first; ObjectRetained stops it at the first version under retention."""
        found = [v for v in self.versions.versions(name) if v.name == name]
        if not found:
            raise ObjectNotFound(f"object {name} does not exist in {self.location}")
        order = [v for v in found if v.deleted] + [v for v in found if not v.deleted]
        try:
            for version in order:
                self.versions.delete_version(name, version.version_id)
        finally:
            self.forget(name)

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()

    # --- retention ---------------------------------------------------------------------------

    def retention(self, name: str) -> datetime | None:
        """The retain-until date of the version of ``name`` the view reads (None: none);
        ObjectNotFound if no version remains."""
        version = self._version_for(name)
        try:
            return self.retention_power.retention(name, version)
        except ObjectNotFound:
            if version is not None or not _protected(name):
                raise
            touched = self.resolve(name)
            if touched is None or touched.good is None:
                raise
            return self.retention_power.retention(name, touched.good.version_id)

    def extend_retention(self, name: str, until: datetime) -> None:
        self.retention_power.extend_retention(name, until, self._version_for(name))


def hidden_config(store: Storage) -> bool:
    """Whether ``store`` keeps versions and retains a config version under a delete
    marker: a repository is there, hidden (init must not write over it)."""
    powers = lock_powers(store)
    if powers is None:
        return False
    return any(v.name == CONFIG_NAME and not v.deleted for v in powers[1].versions(CONFIG_NAME))


def require_object_lock(store: Storage, immutability: Immutability) -> None:
    """Turn on write retention on ``store`` for a new immutable repository;
    UsageError if the store has no Object Lock."""
    powers = lock_powers(store)
    if powers is None:
        raise UsageError(
            f"--immutable needs a store with Object Lock, and the store at {store.location} "
            "has none, so it cannot keep objects from being deleted. Use an S3 bucket with "
            "Object Lock enabled (`aws s3api create-bucket --bucket NAME "
            "--object-lock-enabled-for-bucket`), or serve a local directory with "
            "`seawall repo-server --append-only`. Nothing was created"
        )
    powers[0].set_write_retention(write_policy(immutability))


def open_view(store: Storage, config: RepoConfig, notes: list[str]) -> VersionedView | None:
    """Turn on write retention for an immutable repository on ``store`` and return the
    view to read it through; None (with a note saying so) if the store has no Object Lock."""
    powers = lock_powers(store)
    if powers is None:
        notes.append(
            f"this repository is immutable, but the store at {store.location} shows no "
            "Object Lock (or this client may not read the bucket's Object Lock configuration: "
            "s3:GetBucketObjectLockConfiguration): new objects are not retained, and forget "
            "and prune refuse to run"
        )
        return None
    retention, versions = powers
    assert config.immutability is not None
    retention.set_write_retention(write_policy(config.immutability))
    view = VersionedView(store, retention, versions)
    view.expect_config(config)
    return view


# --- opening a repository whose config or keys were hidden ----------------------------------


def _newest_intact(
    versions: VersionedStorage, name: str, found: list[ObjectVersion], check: Check
) -> Iterator[tuple[ObjectVersion, bytes]]:
    for version in (v for v in found if not v.deleted):
        try:
            data = versions.get_version(name, version.version_id)
        except ObjectNotFound:
            continue
        if check(data):
            yield version, data


def unlock_from_versions(
    store: Storage, password: str
) -> tuple[RepoConfig, MasterKey, str, list[str]] | None:
    """Open a repository from the retained versions of its config and keys, when the
    current ones were deleted or overwritten; None if the store keeps no versions or
    no version opens with ``password``. The notes say which objects were read so."""
    from seawall.repository.keys import open_key_file  # keys.py calls this module

    try:
        powers = lock_powers(store)
    except SeawallError:
        return None
    if powers is None:
        return None
    versions = powers[1]
    configs: list[tuple[ObjectVersion, RepoConfig]] = []
    found = [v for v in versions.versions(CONFIG_NAME) if v.name == CONFIG_NAME]
    for version, data in _newest_intact(versions, CONFIG_NAME, found, _parses_as_config):
        configs.append((version, RepoConfig.from_bytes(data)))
    keys: dict[str, list[ObjectVersion]] = {}
    for version in versions.versions("keys/"):
        keys.setdefault(version.name, []).append(version)
    key_files: list[tuple[str, ObjectVersion, bytes]] = []
    for name, key_versions in sorted(keys.items()):
        intact = _newest_intact(versions, name, key_versions, functools.partial(is_intact, name))
        for version, data in intact:
            key_files.append((name, version, data))
            break
    for config_version, config in configs:
        for name, key_version, data in key_files:
            key_id = name.split("/", 1)[1]
            try:
                key = open_key_file(data, key_id, password, config.id)
            except (FormatError, IntegrityError):
                continue
            if key is None:
                continue
            notes = [
                f"{what} was deleted or overwritten in the store; read an older retained version"
                for what, version in ((CONFIG_NAME, config_version), (name, key_version))
                if not version.latest
            ]
            return config, key, key_id, notes
    return None


def _parses_as_config(data: bytes, expected: RepoConfig | None = None) -> bool:
    try:
        config = RepoConfig.from_bytes(data)
    except FormatError:
        return False
    return expected is None or config == expected
