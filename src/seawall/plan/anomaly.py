"""Anomaly signals on each backup: the marks ransomware leaves, and snapshots marked for them.

Every snapshot a plan's backup takes is compared with the asset's newest
*clean* snapshot before it (one not marked suspect: after an attack, the
next backup of still-encrypted data is compared with the data as it was, so
it is marked too) and with the asset's history (the summaries of up to
:data:`HISTORY` clean snapshots before it). The comparison walks both
trees, skipping the subtrees they share, and reads no file data: whether a
chunk compressed is known from the index (a chunk is stored raw when zstd
gains less than 1/32 of it, codec/compress.py), which is what encrypted
data looks like. The signals, each scored from 0 to 1:

- **incompressible data**: data that does not compress, as a share of the
  asset: in files whose previous version did compress (files rewritten
  encrypted), and in new files, muted when the asset's new data never
  compressed (its history says so: images, archives). Files that did not
  compress before either (a photo replaced by a photo) do not count.
- **changed data**: the share of the asset that is new, against how much
  usually changes (the history's median); a supporting signal (at most 0.5).
- **deleted files**: the share of the asset's files gone (mass deletion).
- **size jump**: the asset shrinking to a fraction of its size, or growing
  many times over; muted when the history has jumps as large.

They combine as independent evidence (``1 - prod(1 - s)``). A backup whose
score reaches :data:`THRESHOLD` is *suspect*: a record of kind ``anomaly``
marks its snapshot (naming the files that drove the score), and restores
and drills pass over the groups holding it unless told otherwise (a group
id given explicitly). A mark found to be a false alarm is cleared with a
record of kind ``anomaly-cleared``: records are write-once, like the
evidence they are.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeVar

from seawall.codec.crypto import OVERHEAD
from seawall.engine.trees import load_tree, safe_name
from seawall.errors import SnapshotNotFound, UsageError
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, FILE, Node, Snapshot

RECORD_KIND = "anomaly"
CLEARED_KIND = "anomaly-cleared"
#: A backup scoring this much or more is marked suspect.
THRESHOLD = 0.7
#: Clean snapshots before it whose summaries are the asset's history.
HISTORY = 10
#: A history compressing its new data no better than this: its data does not compress anyway.
INCOMPRESSIBLE_HISTORY = 0.9
#: A file's previous version that compressed at least this well (stored / raw) "compressed".
COMPRESSED = 0.9
#: Incompressible data that is evidence on its own, even in one file (a database).
MASS_BYTES = 1 << 20
#: Files named in a mark, at most (the record must stay small).
FILES_NAMED = 50

Log = Callable[[str], None]


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


# --- what changed between two snapshots ----------------------------------------------------------


@dataclass
class FileChange:
    path: str
    #: "new", "changed" or "deleted"
    change: str
    size: int
    #: bytes of chunks its previous version did not have
    new_bytes: int = 0
    #: of those, the bytes stored as they were (zstd could not shrink them)
    incompressible_bytes: int = 0
    #: stored / plaintext bytes of its previous version, or for a new file of files
    #: beside it with the same suffix (None: none such, or deleted)
    was_ratio: float | None = None

    @property
    def counts_incompressible(self) -> bool:
        """Written with incompressible data where that is not expected of it."""
        return (
            self.change != "deleted"
            and self.incompressible_bytes > 0
            and (self.was_ratio is None or self.turned_incompressible)
        )

    @property
    def turned_incompressible(self) -> bool:
        """Rewritten with mostly incompressible data where it used to compress."""
        return (
            self.was_ratio is not None
            and self.was_ratio <= COMPRESSED
            and self.incompressible_bytes * 2 > self.new_bytes > 0
        )


@dataclass
class TreeDiff:
    changes: list[FileChange] = field(default_factory=list)

    def of(self, change: str) -> list[FileChange]:
        return [c for c in self.changes if c.change == change]


def diff_snapshots(repo: Repository, old: Snapshot, new: Snapshot) -> TreeDiff:
    """Files new, changed and deleted from ``old`` to ``new`` (index loaded), with how
    much of each file's new data did not compress."""
    out = TreeDiff()
    _diff(repo, old.tree, new.tree, "", out)
    return out


def _diff(
    repo: Repository, old: bytes | None, new: bytes | None, prefix: str, out: TreeDiff
) -> None:
    if old == new:
        return  # the same tree: nothing below changed
    before = {n.name: n for n in load_tree(repo, old)} if old else {}
    after = {n.name: n for n in load_tree(repo, new)} if new else {}
    alike: dict[str, float | None] = {}  # suffix -> ratio of the files beside that have it
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        node = b if b is not None else a
        assert node is not None
        path = f"{prefix}/{safe_name(node).decode('utf-8', 'surrogateescape')}"
        a_dir = a is not None and a.type == DIR
        b_dir = b is not None and b.type == DIR
        if a_dir or b_dir:
            _diff(
                repo,
                a.subtree if a is not None and a_dir else None,
                b.subtree if b is not None and b_dir else None,
                path,
                out,
            )
        a_file = a if a is not None and a.type == FILE else None
        b_file = b if b is not None and b.type == FILE else None
        if a_file is not None and b_file is None:
            out.changes.append(FileChange(path, "deleted", a_file.size))
        elif b_file is not None and a_file is None:
            suffix = PurePosixPath(path).suffix
            if suffix not in alike:
                alike[suffix] = _ratio_of_alike(repo, before.values(), suffix)
            out.changes.append(_file_change(repo, path, "new", b_file, set(), alike[suffix]))
        elif b_file is not None and a_file is not None and a_file.content != b_file.content:
            was = _ratio(repo, a_file.content)
            out.changes.append(
                _file_change(repo, path, "changed", b_file, set(a_file.content), was)
            )


def _ratio_of_alike(repo: Repository, nodes: Iterable[Node], suffix: str) -> float | None:
    """How well up to 3 files with ``suffix`` among ``nodes`` compress (their first
    chunks): what a new file of that kind is expected to do."""
    if not suffix:
        return None
    raw = suffix.encode("utf-8", "surrogateescape")
    alike = [n for n in nodes if n.type == FILE and n.name.endswith(raw)][:3]
    return _ratio(repo, [blob for n in alike for blob in n.content[:8]])


def _ratio(repo: Repository, blobs: list[bytes]) -> float | None:
    """Stored / plaintext bytes of these blobs (None: none known)."""
    raw = stored = 0
    for blob in blobs:
        loc = repo.index.lookup(blob)
        if loc is not None:
            raw += loc.raw_length
            stored += loc.length - OVERHEAD
    return stored / raw if raw else None


def _file_change(
    repo: Repository, path: str, change: str, node: Node, had: set[bytes], was: float | None
) -> FileChange:
    out = FileChange(path, change, node.size, was_ratio=was)
    for blob in node.content:
        if blob in had:
            continue
        loc = repo.index.lookup(blob)
        if loc is None:
            continue
        out.new_bytes += loc.raw_length
        if loc.length - OVERHEAD > loc.raw_length:  # stored raw, behind its flag byte
            out.incompressible_bytes += loc.raw_length
    return out


# --- the score -----------------------------------------------------------------------------------


@dataclass
class Signal:
    name: str
    #: what was measured, and what the asset's history makes usual (None: no history)
    value: float
    baseline: float | None
    score: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["value"] = round(self.value, 4)
        out["score"] = round(self.score, 3)
        out["baseline"] = None if self.baseline is None else round(self.baseline, 4)
        return out


@dataclass
class AnomalyScore:
    asset: str
    kind: str
    snapshot: str
    group: str
    time: str
    #: the clean snapshot it was compared with ("" for an asset's first backup)
    compared_with: str = ""
    score: float = 0.0
    signals: list[Signal] = field(default_factory=list)
    #: the files that drove the score, worst first (at most FILES_NAMED)
    files: list[dict[str, Any]] = field(default_factory=list)
    files_total: int = 0
    #: the record marking the snapshot, when it is suspect
    record: str = ""

    @property
    def suspect(self) -> bool:
        return self.score >= THRESHOLD

    def summary(self) -> str:
        strong = [s for s in sorted(self.signals, key=lambda s: -s.score) if s.score >= 0.2]
        why = "; ".join(s.detail for s in strong) or "no signal"
        names = ", ".join(f["path"] for f in self.files[:5])
        more = f" and {self.files_total - 5} more" if self.files_total > 5 else ""
        files = f" (files: {names}{more})" if names else ""
        return f"score {self.score:.2f}: {why}{files}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            # not "kind": a record's kind is its own (anomaly)
            "asset_kind": self.kind,
            "snapshot": self.snapshot,
            "group": self.group,
            "time": self.time,
            "compared_with": self.compared_with,
            "score": round(self.score, 3),
            "suspect": self.suspect,
            "threshold": THRESHOLD,
            "signals": [s.to_dict() for s in self.signals],
            "files": self.files,
            "files_total": self.files_total,
            "summary": self.summary(),
            "record": self.record,
        }


def score_snapshot(repo: Repository, snap: Snapshot) -> AnomalyScore:
    """Score ``snap`` (a snapshot of a plan's asset) against the asset's newest clean
    snapshot before it and its history. The repository's index must be loaded."""
    name = str(snap.asset.get("name", ""))
    score = AnomalyScore(
        name,
        str(snap.asset.get("kind", "")),
        snap.id.hex(),
        str(snap.asset.get("group", "")),
        snap.time,
    )
    marked = marks(repo)
    earlier = [
        s
        for s in repo.list_snapshots()
        if s.asset.get("name") == name and s.datetime < snap.datetime and s.id.hex() not in marked
    ]
    if not earlier:
        return score
    base = earlier[-1]
    history = earlier[-HISTORY:]
    score.compared_with = base.id.hex()
    diff = diff_snapshots(repo, base, snap)
    was, now = base.summary, snap.summary
    prev_bytes = max(1, int(was.get("bytes_total", 0)))
    prev_files = _files(was)
    score.signals = [
        _incompressible(diff, prev_bytes, history),
        _changed(diff, prev_bytes, history),
        _deleted(diff, prev_files),
        _size_jump(prev_bytes, int(now.get("bytes_total", 0)), history),
    ]
    rest = 1.0
    for signal in score.signals:
        rest *= 1.0 - signal.score
    score.score = 1.0 - rest
    culprits = _culprits(diff, score.signals)
    score.files_total = len(culprits)
    score.files = [
        {
            "path": c.path,
            "change": c.change,
            "size": c.size,
            "incompressible_bytes": c.incompressible_bytes,
            "was_ratio": None if c.was_ratio is None else round(c.was_ratio, 3),
        }
        for c in culprits[:FILES_NAMED]
    ]
    return score


def _files(summary: dict[str, Any]) -> int:
    return sum(int(summary.get(k, 0)) for k in ("files_new", "files_changed", "files_unmodified"))


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _history_ratio(history: list[Snapshot]) -> float | None:
    """Stored / plaintext bytes of the new data of the asset's history."""
    raw = stored = 0
    for snap in history:
        encodings = snap.summary.get("encodings") or {}
        if encodings:
            for plain, packed in encodings.values():
                raw, stored = raw + int(plain), stored + int(packed)
        else:
            raw += int(snap.summary.get("data_added", 0))
            stored += int(snap.summary.get("data_stored", 0))
    return stored / raw if raw else None


def _incompressible(diff: TreeDiff, prev_bytes: int, history: list[Snapshot]) -> Signal:
    """Files rewritten incompressible where they compressed before (or, new, where the
    files like them beside them compress) weigh most; other new files count as the
    asset's history makes them expected; files expected not to compress (a photo
    replaced by a photo, or added beside photos) do not count."""
    counted = [c for c in diff.changes if c.counts_incompressible]
    turned = [c for c in counted if c.turned_incompressible]
    fresh = [c for c in counted if c.was_ratio is None]
    turned_share = sum(c.incompressible_bytes for c in turned) / prev_bytes
    fresh_share = sum(c.incompressible_bytes for c in fresh) / prev_bytes
    ratio = _history_ratio(history)
    usual = ratio is not None and ratio >= INCOMPRESSIBLE_HISTORY
    score = max(
        (0.3 if usual else 1.0) * _clamp((fresh_share - 0.05) / 0.20) * _mass(fresh),
        _clamp((turned_share - 0.02) / 0.13) * _mass(turned),
        _clamp(len(turned) / 20),
    )
    share = turned_share + fresh_share
    detail = f"{_pct(share)} of the asset written with data that does not compress"
    if turned:
        detail += f", in {len(turned)} files that compressed before (or like files do)"
    if usual:
        detail += " (new data of this asset usually does not compress)"
    return Signal("incompressible data", share, ratio, score, detail)


def _mass(files: list[FileChange]) -> float:
    """How much ``files`` weigh as evidence: ransomware rewrites many files, or much
    data; one small file that stopped compressing (a rotated key) is not it."""
    return min(1.0, len(files) / 3 + sum(c.incompressible_bytes for c in files) / MASS_BYTES)


def _changed(diff: TreeDiff, prev_bytes: int, history: list[Snapshot]) -> Signal:
    share = sum(c.new_bytes for c in diff.changes) / prev_bytes
    usual = [
        int(s.summary.get("data_added", 0)) / max(1, int(s.summary.get("bytes_total", 0)))
        for s in history
        if s.parent is not None and s.summary.get("bytes_total")
    ]
    typical = statistics.median(usual) if usual else None
    limit = max(0.25, 3 * typical) if typical is not None else 0.5
    score = 0.5 * _clamp((share - limit) / max(limit, 0.25))
    detail = f"{_pct(share)} of the asset changed" + (
        f" (usually {_pct(typical)})" if typical is not None else ""
    )
    return Signal("changed data", share, typical, score, detail)


def _deleted(diff: TreeDiff, prev_files: int) -> Signal:
    gone = len(diff.of("deleted"))
    share = gone / prev_files if prev_files else 0.0
    score = _clamp((share - 0.2) / 0.3) * min(1.0, gone / 5)
    return Signal("deleted files", share, None, score, f"{gone} files deleted ({_pct(share)})")


def _size_jump(prev_bytes: int, now_bytes: int, history: list[Snapshot]) -> Signal:
    ratio = now_bytes / prev_bytes
    sizes = [int(s.summary.get("bytes_total", 0)) for s in history]
    jumps = [b / a for a, b in itertools.pairwise(sizes) if a]
    if ratio < 1:
        score = 0.8 * _clamp((0.7 - ratio) / 0.4)
        seen = bool(jumps) and min(jumps) <= ratio
    else:
        score = 0.5 * _clamp((ratio - 3) / 3)
        seen = bool(jumps) and max(jumps) >= ratio
    if seen:
        score *= 0.3
    detail = f"the asset is {ratio:.2f} times its previous size"
    return Signal("size jump", ratio, None, score, detail)


def _culprits(diff: TreeDiff, signals: list[Signal]) -> list[FileChange]:
    """The files behind the signals: those rewritten incompressible first, then the
    deleted ones when deletion counts."""
    written = sorted(
        (c for c in diff.changes if c.counts_incompressible),
        key=lambda c: (not c.turned_incompressible, -c.incompressible_bytes, c.path),
    )
    deleted = next(s for s in signals if s.name == "deleted files")
    gone = diff.of("deleted") if deleted.score > 0 else []
    return written + gone


# --- marks ---------------------------------------------------------------------------------------


def check_backup(repo: Repository, snap: Snapshot, log: Log | None = None) -> AnomalyScore | None:
    """Score a new backup and mark it if suspect; never fails the backup (a score that
    cannot be computed is logged and None returned). Saying that it is suspect is the
    caller's (the score says so)."""
    try:
        repo.load_index()
        score = score_snapshot(repo, snap)
        if score.suspect:
            score.record = repo.save_record(RECORD_KIND, score.to_dict()).hex()
    except Exception as err:  # the backup is stored: a failed check must not undo it
        if log:
            log(f"warning: {snap.asset.get('name')}: the anomaly check failed: {err}")
        return None
    return score


def marks(repo: Repository) -> dict[str, dict[str, Any]]:
    """Snapshot id (hex) -> its anomaly record, for every mark not cleared."""
    cleared = {str(r.get("anomaly")) for r in repo.list_records(CLEARED_KIND)}
    return {
        str(r["snapshot"]): r
        for r in repo.list_records(RECORD_KIND)
        if r["id"] not in cleared and isinstance(r.get("snapshot"), str)
    }


def suspect_assets(marked: dict[str, dict[str, Any]], group: str) -> dict[str, dict[str, Any]]:
    """Asset name -> mark, for the marked snapshots of ``group`` (a group id). Marks
    name the group, so copies of it in a replica match marks made in the primary."""
    return {str(r.get("asset")): r for r in marked.values() if r.get("group") == group}


class _Group(Protocol):
    id: str
    time: datetime


G = TypeVar("G", bound=_Group)


def clean_groups(
    repo: Repository, groups: list[G], asset: str | None, log: Log | None = None
) -> list[G]:
    """``groups`` (oldest first) without those holding a marked snapshot of ``asset``
    (of any asset when None). The suspect groups newer than the newest clean one are
    logged: a restore passes over them."""
    marked = marks(repo)
    if not marked:
        return groups
    kept: list[G] = []
    dropped: list[G] = []
    for group in groups:
        hit = suspect_assets(marked, group.id)
        (dropped if (hit if asset is None else asset in hit) else kept).append(group)
    newest = kept[-1].time if kept else None
    for group in dropped:
        if log and (newest is None or group.time > newest):
            for name, mark in sorted(suspect_assets(marked, group.id).items()):
                if asset is None or name == asset:
                    log(
                        f"passing over group {group.id[:8]} of {group.time.isoformat()}: "
                        f"{name} is marked suspect, {mark.get('summary', '')} (to restore it "
                        f"anyway, give its id: --at {group.id[:8]})"
                    )
    return kept


def clear_mark(repo: Repository, which: str, *, reason: str, by: str) -> dict[str, Any]:
    """Clear the mark of a snapshot (its id or anomaly record id, or a unique prefix of
    either): restores no longer pass over its group. Returns the mark."""
    if not reason.strip():
        raise UsageError("say why the mark is a false alarm (--reason)")
    name = which.lower()
    found = [
        r
        for sid, r in marks(repo).items()
        if name and (sid.startswith(name) or r["id"].startswith(name))
    ]
    if len(found) != 1:
        raise SnapshotNotFound(
            f"{len(found) or 'no'} marked snapshots match {which!r}"
            + ("; give more of the id" if found else ": list them with `seawall anomalies`")
        )
    mark = found[0]
    repo.save_record(
        CLEARED_KIND,
        {
            "anomaly": mark["id"],
            "snapshot": mark["snapshot"],
            "asset": mark.get("asset"),
            "group": mark.get("group"),
            "reason": reason,
            "by": by,
            "cleared": datetime.now(UTC).isoformat(),
        },
    )
    return mark
