"""Retention of an immutable repository: what may be deleted now, and keeping the rest locked.

The rules are pure functions of dates (:func:`split_by_retention`,
:func:`needs_extension`), tested on their own; the rest reads and sets
retention dates through the repository's view of its store.

- forget and prune delete nothing whose retention date is in the future;
  they report it, with the date, instead.
- An object that a snapshot still needs has its retention extended to
  now + DAYS once less than DAYS/2 of it is left. prune does this for every
  object it keeps; a backup does it when the config (extended last by each
  pass) shows less than DAYS/2 left, so the pass runs about every DAYS/2 as
  long as backups or prunes run. Objects no snapshot needs are not extended:
  their retention runs out, and the next prune deletes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from seawall.errors import ObjectNotFound, StorageError
from seawall.repository.config import CONFIG_NAME
from seawall.repository.pack import pack_name
from seawall.repository.repo import Repository
from seawall.repository.versions import VersionedView

#: Requests in flight when reading or extending many retention dates.
_WORKERS = 8


def split_by_retention(
    until: Mapping[str, datetime | None], now: datetime
) -> tuple[list[str], dict[str, datetime]]:
    """(names that may be deleted at ``now``, name -> retain-until date of the others)."""
    free = [name for name, date in until.items() if date is None or date <= now]
    held = {name: date for name, date in until.items() if date is not None and date > now}
    return free, held


def needs_extension(until: datetime | None, now: datetime, days: int) -> bool:
    """Whether an object retained until ``until`` must be extended at ``now``: less
    than half of a ``days`` retention is left (or it has none)."""
    return until is None or until - now < timedelta(days=days) / 2


def require_view(repo: Repository, action: str) -> VersionedView | None:
    """The repository's view of its versions if it is immutable (None if it is not);
    StorageError, before anything changes, if it is immutable on a store without Object Lock."""
    if repo.config.immutability is None:
        return None
    if repo.view is None:
        raise StorageError(
            f"{action}, but this repository is immutable and the store at "
            f"{repo.storage.location} shows no Object Lock, so seawall cannot tell what is "
            "still retained. Nothing was changed"
        )
    return repo.view


def retention_of(view: VersionedView, names: Iterable[str]) -> dict[str, datetime | None]:
    """The retain-until date of each object (None: none, or the object is gone)."""

    def one(name: str) -> datetime | None:
        try:
            return view.retention(name)
        except ObjectNotFound:
            return None

    names = list(names)
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="retention") as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


@dataclass
class ExtendResult:
    checked: int = 0
    #: names whose retention was extended
    extended: list[str] = field(default_factory=list)
    until: str = ""


def used_pack_names(repo: Repository, used: np.ndarray) -> list[str]:
    """The packs that hold any of ``used`` (sorted blob ids, as prune.used_blobs gives)."""
    from seawall.operations.prune import member_of  # prune imports this module

    entries = repo.index.entries()
    packs = repo.index.packs()
    numbers = np.unique(entries["pack"][member_of(entries["id"], used)])
    return [pack_name(packs[int(n)][0]) for n in numbers]


def referenced_names(
    repo: Repository, packs: Iterable[str], index_ids: Iterable[bytes]
) -> list[str]:
    """Every object the snapshots need: ``packs``, the ``index_ids`` objects, the
    snapshots, the keys, and the config, last."""
    names = list(packs)
    names += [f"index/{i.hex()}" for i in sorted(index_ids)]
    names += [f"snapshots/{i.hex()}" for i in repo.list_ids("snapshots")]
    names += [info.name for info in repo.storage.list("keys/")]
    return [*names, CONFIG_NAME]


def extend_retention(
    repo: Repository, names: list[str], *, now: datetime | None = None
) -> ExtendResult:
    """Extend to now + DAYS the retention of those of ``names`` with less than DAYS/2
    left, in order (so a pass that fails leaves the config, last, unextended)."""
    view = require_view(repo, "extending retention")
    result = ExtendResult()
    if view is None or repo.config.immutability is None:
        return result
    days = repo.config.immutability.days
    now = now or datetime.now(UTC)
    until = now + timedelta(days=days)
    result.until = until.isoformat()
    config_last = names[-1:] == [CONFIG_NAME]
    dates = retention_of(view, names[:-1] if config_last else names)
    due = [name for name, date in dates.items() if needs_extension(date, now, days)]

    def extend(name: str) -> None:
        try:
            view.extend_retention(name, until)
        except ObjectNotFound:
            return  # deleted meanwhile (a concurrent forget of an expired snapshot)
        result.extended.append(name)

    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="retention") as pool:
        list(pool.map(extend, due))
    # The config last, once the others are done: its date says when the next pass is
    # due (see extension_due).
    if config_last and needs_extension(retention_of(view, [CONFIG_NAME])[CONFIG_NAME], now, days):
        extend(CONFIG_NAME)
    result.checked = len(names)
    return result


def extension_due(repo: Repository, *, now: datetime | None = None) -> bool:
    """Whether the config's retention, extended last by every pass, says a pass is due."""
    if repo.config.immutability is None or repo.view is None:
        return False
    now = now or datetime.now(UTC)
    until = retention_of(repo.view, [CONFIG_NAME])[CONFIG_NAME]
    return needs_extension(until, now, repo.config.immutability.days)


def extend_if_due(repo: Repository, *, now: datetime | None = None) -> ExtendResult | None:
    """Run an extension pass over every object the snapshots need, if one is due
    (for backup: the caller holds a lock). None when none was due."""
    if not extension_due(repo, now=now):
        return None
    from seawall.operations.prune import used_blobs  # prune imports this module

    repo.load_index()
    packs = used_pack_names(repo, used_blobs(repo))
    live = repo.index.loaded_index_ids - repo.superseded
    return extend_retention(repo, referenced_names(repo, packs, live), now=now)
