"""Read-only views of a repository: ls, diff, stats."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from seawall.engine.trees import find, load_tree, safe_name, walk
from seawall.errors import UsageError
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
