"""forget: remove snapshots by a retention policy (restic's --keep-* rules).

:func:`apply_policy` is a pure function over snapshot times, tested on its own.
Snapshots are grouped by host and paths; each group keeps its own set.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from seawall.errors import ObjectNotFound, ObjectRetained, UsageError
from seawall.operations.retention import require_view, retention_of, split_by_retention
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot
from seawall.storage.base import refuse_if_append_only

_BUCKETS = {
    "hourly": "%Y-%m-%d %H",
    "daily": "%Y-%m-%d",
    "weekly": "%G-W%V",
    "monthly": "%Y-%m",
    "yearly": "%Y",
}


@dataclass(frozen=True)
class KeepPolicy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    tags: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not (
            self.last
            or self.hourly
            or self.daily
            or self.weekly
            or self.monthly
            or self.yearly
            or self.tags
        )


@dataclass
class ForgetGroup:
    key: tuple[str, tuple[str, ...]]
    keep: list[Snapshot] = field(default_factory=list)
    remove: list[Snapshot] = field(default_factory=list)
    #: snapshot id -> the rules that kept it
    reasons: dict[bytes, list[str]] = field(default_factory=dict)
    #: immutable repositories: snapshots kept (in ``keep``) only because their
    #: retention runs until a later date, snapshot id -> that date
    retained: dict[bytes, datetime] = field(default_factory=dict)

    def hold(self, snap: Snapshot, until: datetime | None) -> None:
        """Keep ``snap``, which is under retention until ``until``, instead of removing it."""
        if snap in self.remove:
            self.remove.remove(snap)
        self.keep.append(snap)
        self.keep.sort(key=lambda s: (s.time, s.id), reverse=True)
        if until is not None:
            self.retained[snap.id] = until
        when = until.isoformat(timespec="seconds") if until is not None else "a later date"
        self.reasons.setdefault(snap.id, []).append(f"retained until {when}")


def apply_policy(snapshots: list[Snapshot], policy: KeepPolicy) -> list[ForgetGroup]:
    if policy.empty():
        raise UsageError("no --keep-* rule given; refusing to forget every snapshot")
    groups: dict[tuple[str, tuple[str, ...]], list[Snapshot]] = defaultdict(list)
    for snap in snapshots:
        groups[(snap.hostname, tuple(sorted(snap.paths)))].append(snap)
    result = []
    for key, snaps in sorted(groups.items()):
        group = ForgetGroup(key)
        newest_first = sorted(snaps, key=lambda s: (s.time, s.id), reverse=True)
        reasons: dict[bytes, list[str]] = defaultdict(list)
        for i, snap in enumerate(newest_first):
            if i < policy.last:
                reasons[snap.id].append("last")
            if set(policy.tags) & set(snap.tags):
                reasons[snap.id].append("tag")
        for rule, fmt in _BUCKETS.items():
            budget = getattr(policy, rule)
            last_bucket = None
            for snap in newest_first:
                if budget <= 0:
                    break
                bucket = _bucket(snap.datetime, fmt)
                if bucket != last_bucket:
                    reasons[snap.id].append(rule)
                    last_bucket = bucket
                    budget -= 1
        for snap in newest_first:
            (group.keep if snap.id in reasons else group.remove).append(snap)
        group.reasons = dict(reasons)
        result.append(group)
    return result


def _bucket(when: datetime, fmt: str) -> str:
    return when.astimezone().strftime(fmt)


def forget(repo: Repository, policy: KeepPolicy, *, dry_run: bool = False) -> list[ForgetGroup]:
    """Remove the snapshots the policy does not keep. Data goes only with prune.

    In an immutable repository, a snapshot whose retention runs until later
    is kept instead, and its group's ``retained`` says until when.
    """
    with Lock(repo, exclusive=True):
        groups = apply_policy(repo.list_snapshots(), policy)
        doomed = sum(len(group.remove) for group in groups)
        if not dry_run and doomed:
            refuse_if_append_only(repo.storage, f"forget would remove {doomed} snapshot(s)")
        for group in groups:
            _hold_retained(repo, group, f"forget would remove {doomed} snapshot(s)")
        if not dry_run:
            for group in groups:
                for snap in list(group.remove):
                    with contextlib.suppress(ObjectNotFound):
                        _remove(repo, group, snap)
    return groups


def forget_ids(repo: Repository, names: list[str], *, dry_run: bool = False) -> ForgetGroup:
    """Remove the named snapshots: the group's ``remove``. In an immutable repository,
    those whose retention runs until later are kept: ``keep`` and ``retained``."""
    with Lock(repo, exclusive=True):
        snaps = [repo.resolve_snapshot(n) for n in names]
        if not dry_run:
            refuse_if_append_only(repo.storage, f"forget would remove {len(snaps)} snapshot(s)")
        group = ForgetGroup(("", ()), remove=list({s.id: s for s in snaps}.values()))
        _hold_retained(repo, group, f"forget would remove {len(snaps)} snapshot(s)")
        if not dry_run:
            for snap in list(group.remove):
                _remove(repo, group, snap)
    return group


def _hold_retained(repo: Repository, group: ForgetGroup, action: str) -> None:
    """Move the snapshots of ``group.remove`` that are under retention to ``keep``."""
    view = require_view(repo, action) if group.remove else None
    if view is None:
        return
    by_name = {f"snapshots/{s.id.hex()}": s for s in group.remove}
    _free, held = split_by_retention(retention_of(view, by_name), datetime.now(UTC))
    for name, until in held.items():
        group.hold(by_name[name], until)


def _remove(repo: Repository, group: ForgetGroup, snap: Snapshot) -> None:
    try:
        repo.delete_object("snapshots", snap.id)
    except ObjectRetained as err:  # a version forget did not see is retained
        group.hold(snap, err.until)
