"""Read-only views of a repository: ls, diff, stats."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from seawall.engine.checkpoints import float_widths
from seawall.engine.trees import find, load_tree, safe_name, walk
from seawall.errors import UsageError
from seawall.repository.pack import DELTA
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, FILE, Node, Snapshot


def ls(repo: Repository, snap: Snapshot, path: str = "/") -> Iterator[tuple[str, Node]]:
    """Nodes at and below ``path`` in a snapshot, depth first."""
    repo.load_index()
    path = "/" + path.strip("/")
    if path == "/":
        yield from walk(repo, snap.tree)
        return
    node = find(repo, snap.tree, path)
    if node is None:
        raise UsageError(f"{path} is not in snapshot {snap.short_id}")
    yield path, node
    if node.type == DIR and node.subtree is not None:
        yield from walk(repo, node.subtree, path)


@dataclass(frozen=True)
class Change:
    kind: str  # "+" added, "-" removed, "M" content changed, "T" type changed, "U" metadata only
    path: str


def diff(repo: Repository, a: Snapshot, b: Snapshot) -> list[Change]:
    """What changed from snapshot ``a`` to ``b``. Equal subtrees are skipped unread."""
    repo.load_index()
    changes: list[Change] = []
    _diff_trees(repo, a.tree, b.tree, "", changes)
    return changes


def _diff_trees(
    repo: Repository, ta: bytes | None, tb: bytes | None, prefix: str, out: list[Change]
) -> None:
    if ta == tb:
        return
    na = {n.name: n for n in load_tree(repo, ta)} if ta else {}
    nb = {n.name: n for n in load_tree(repo, tb)} if tb else {}
    for name in sorted(na.keys() | nb.keys()):
        x, y = na.get(name), nb.get(name)
        ref = x if x is not None else y
        assert ref is not None
        path = f"{prefix}/{safe_name(ref).decode('utf-8', 'surrogateescape')}"
        if x is None or y is None:
            out.append(Change("+" if x is None else "-", path))
            _diff_trees(repo, x.subtree if x else None, y.subtree if y else None, path, out)
        elif x.type != y.type:
            out.append(Change("T", path))
        elif x.type == DIR:
            _diff_trees(repo, x.subtree, y.subtree, path, out)
        elif x.content != y.content or x.target != y.target:
            out.append(Change("M", path))
        elif (x.mode, x.mtime_ns, x.uid, x.gid) != (y.mode, y.mtime_ns, y.uid, y.gid):
            out.append(Change("U", path))


@dataclass
class RepoStats:
    snapshots: int
    packs: int
    blobs: int
    #: bytes of unique data before compression and encryption
    raw_bytes: int
    #: bytes the repository's packs take in storage
    stored_bytes: int
    #: the size all snapshots would take if restored (before deduplication)
    restore_bytes: int
    files: int

    @property
    def dedup_ratio(self) -> float:
        return self.restore_bytes / self.raw_bytes if self.raw_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 1.0


def stats(repo: Repository) -> RepoStats:
    repo.load_index()
    entries = repo.index.entries()
    packs = repo.index.packs()
    snaps = repo.list_snapshots()
    sizes: dict[bytes, tuple[int, int]] = {}

    def tree_size(tree_id: bytes) -> tuple[int, int]:
        if tree_id not in sizes:
            nbytes = files = 0
            for node in load_tree(repo, tree_id):
                if node.type == FILE:
                    nbytes += node.size
                    files += 1
                elif node.type == DIR and node.subtree is not None:
                    b, f = tree_size(node.subtree)
                    nbytes, files = nbytes + b, files + f
            sizes[tree_id] = (nbytes, files)
        return sizes[tree_id]

    totals = [tree_size(s.tree) for s in snaps]
    return RepoStats(
        snapshots=len(snaps),
        packs=len(packs),
        blobs=len(entries),
        raw_bytes=int(entries["raw_length"].sum(dtype="u8")),
        stored_bytes=sum(size for _p, size, _s in packs),
        restore_bytes=sum(t[0] for t in totals),
        files=sum(t[1] for t in totals),
    )


#: How a file's bytes are stored, as counted by :func:`storage_report`.
HOW = ("dedup", "delta", "transform", "generic")


@dataclass
class Stored:
    """Bytes of plaintext by how they were stored, and the stored (sealed) bytes
    of what was new. ``dedup``: already stored by an earlier snapshot or file;
    ``delta``: stored as a delta of a parent checkpoint's tensor; ``transform``:
    float tensor pieces (byte-grouping transform, kept only when smaller);
    ``generic``: everything else (zstd when it helps)."""

    original: int = 0
    stored: int = 0
    raw: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOW, 0))

    def add(self, other: Stored) -> None:
        self.original += other.original
        self.stored += other.stored
        for k in HOW:
            self.raw[k] += other.raw[k]

    @property
    def ratio(self) -> float:
        """Stored bytes per original byte (lower is better)."""
        return self.stored / self.original if self.original else 0.0


@dataclass
class SnapshotStorage:
    snapshot: Snapshot
    total: Stored
    #: path -> how that checkpoint file's bytes were stored
    checkpoints: dict[str, Stored]


def storage_report(repo: Repository) -> list[SnapshotStorage]:
    """Per snapshot (oldest first) and per checkpoint file in it, what its data
    cost: each blob is charged to the first snapshot (and file) that has it.
    A subtree already counted costs nothing new and is not walked again."""
    repo.load_index()
    seen: set[bytes] = set()
    counted: dict[bytes, Stored] = {}  # tree id -> its files' total, once counted
    out = []

    def visit(tree_id: bytes, prefix: str, report: SnapshotStorage) -> Stored:
        done = counted.get(tree_id)
        if done is not None:
            again = Stored(original=done.original)
            again.raw["dedup"] = sum(done.raw.values())
            return again
        total = Stored()
        for node in load_tree(repo, tree_id):
            path = f"{prefix}/{safe_name(node).decode('utf-8', 'surrogateescape')}"
            if node.type == DIR and node.subtree is not None:
                total.add(visit(node.subtree, path, report))
            elif node.type == FILE:
                cost = _file_cost(repo, node, seen)
                total.add(cost)
                if node.checkpoint is not None:
                    report.checkpoints[path] = cost
        counted[tree_id] = total
        return total

    for snap in repo.list_snapshots():
        report = SnapshotStorage(snap, Stored(), {})
        report.total = visit(snap.tree, "", report)
        out.append(report)
    return out


def _file_cost(repo: Repository, node: Node, seen: set[bytes]) -> Stored:
    floats = float_widths(node)
    cost = Stored(original=node.size)
    for i, bid in enumerate(node.content):
        loc = repo.index.lookup(bid)
        if loc is None:
            continue  # missing: check reports it
        if bid in seen:
            cost.raw["dedup"] += loc.raw_length
            continue
        seen.add(bid)
        how = "delta" if loc.type == DELTA else "transform" if i in floats else "generic"
        cost.raw[how] += loc.raw_length
        cost.stored += loc.length
    return cost
