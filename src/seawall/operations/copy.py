"""copy: replicate snapshots into another repository, verified, incremental and resumable.

The target may be on another backend and always has other keys, so nothing
is copied byte for byte: each blob is read and decrypted from the source and
written with the target's BlobWriter, under the target's keys. Blob ids are
keyed hashes with a different id key per repository, so a blob's id differs
between the two: trees are rewritten bottom-up with the target's ids (a map
source id -> target id built while copying), and the new snapshot points at
the new root tree and records ``original``, the id of the snapshot it copies.

Per snapshot, in this order (the repository's write ordering): read the
source trees and collect the data blobs not copied yet in this run; read
them from the source pack by pack (one ranged read per pack), add each to
the target (the writer skips any blob the target already has); rewrite the
trees; flush (packs, then index); verify; write the snapshot last. A copy
killed at any instant leaves a valid target, holding at most packs that no
snapshot uses yet.

Incremental and resumable:

- A source snapshot whose copy is already in the target (a target snapshot
  whose ``original`` is the source's, or its own ``original``) is skipped
  without reading anything.
- Before copying a snapshot, the trees of a related snapshot already copied
  (its parent, else the newest older one of the same host and paths) are
  walked next to their copy in the target: equal trees pair up source and
  target ids, so unchanged subtrees and data are neither read from the
  source nor uploaded. A nightly copy reads the trees and the new data only.
- Within a snapshot, only blobs the target lacks are uploaded; on a rerun
  after a kill, packs that arrived are found (indexed, or orphans indexed at
  start) and their blobs are not uploaded again.
- The trade-off: the target id of a blob is the keyed hash of its plaintext
  under the *target's* id key, so knowing whether the target has a blob
  that no earlier copy pairs up means reading the blob from the source. A
  rerun therefore reads again the source data of the snapshot that was not
  finished (but uploads only what is missing). A persistent source -> target id map would avoid that
  re-read at the cost of another object kind in the format; not done.
- Chunk boundaries are the source's: data copied in deduplicates with later
  copies from the same source, not with backups made directly into the
  target (whose chunker is keyed differently).

Verification: while copying, each source data blob's unkeyed BLAKE3 digest
of its plaintext is kept in memory (never stored). Before the snapshot is
written, the copy is read back from the target: every tree is walked next
to the source's, nodes must be equal field by field (content and subtree ids
through the id map), and every data blob is read from the target, which
authenticates it and checks its keyed id, and its plaintext's BLAKE3 must
equal the source's. A file is the concatenation of its blobs, so equal
blobs in equal order give equal files. Any difference stops the copy with
IntegrityError and the snapshot is not written. Data paired from an earlier
copy (above) was verified when that copy was made; it is only required to
be in the target's index, since ids are content hashes on both sides.

Residency: a snapshot with a residency rule is refused unless the target's
region label equals the rule (see repository/residency.py); every other
snapshot is still copied, then ResidencyViolation is raised with the result.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import blake3

from seawall.engine.checkpoints import float_widths
from seawall.engine.progress import Progress
from seawall.errors import (
    DamagedSnapshot,
    IntegrityError,
    ObjectNotFound,
    ResidencyViolation,
    SeawallError,
    StorageError,
    UsageError,
)
from seawall.repository.lock import Lock
from seawall.repository.pack import DATA, DELTA, TREE, PackedBlob
from seawall.repository.repo import BlobWriter, DeltaBase, Repository, WriteStats
from seawall.repository.residency import residency_violation
from seawall.repository.snapshot import DIR, FILE, Snapshot, decode_tree

#: Tree plaintexts kept between reading the trees and rewriting them (beyond: read again).
TREE_CACHE_BYTES = 64 * 1024 * 1024


@dataclass
class CopiedSnapshot:
    source: Snapshot
    #: the new snapshot in the target
    target: Snapshot
    #: data blobs read from the source for it (not those copied earlier in the run)
    blobs_read: int = 0
    #: plaintext bytes read back from the target and verified (0 without verification)
    verified_bytes: int = 0


@dataclass
class CopyResult:
    copied: list[CopiedSnapshot] = field(default_factory=list)
    #: (source snapshot, its copy already in the target)
    skipped: list[tuple[Snapshot, Snapshot]] = field(default_factory=list)
    #: (source snapshot, why): refused by its residency rule
    refused: list[tuple[Snapshot, str]] = field(default_factory=list)
    #: (source snapshot, why): its source data is missing or damaged
    failed: list[tuple[Snapshot, str]] = field(default_factory=list)
    #: what was uploaded to the target
    written: WriteStats = field(default_factory=WriteStats)
    #: data read from the source (plaintext)
    bytes_read: int = 0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.refused and not self.failed


class _SourceDamaged(Exception):
    """Source data of the snapshot being copied cannot be read (not a store failure)."""


def _origin(snap: Snapshot) -> bytes:
    """The id of the snapshot a snapshot is (a copy of)."""
    return snap.original or snap.id


def _reference(
    snap: Snapshot, parent: Snapshot | None, every: list[Snapshot], present: dict[bytes, Snapshot]
) -> tuple[Snapshot, Snapshot] | None:
    """A source snapshot already in the target, and its copy there, likely to share most
    of ``snap``'s content: its parent, else the newest older one of the same host and paths."""
    if parent is not None and _origin(parent) in present:
        return parent, present[_origin(parent)]
    same = [
        s
        for s in every
        if _origin(s) in present
        and s.hostname == snap.hostname
        and sorted(s.paths) == sorted(snap.paths)
        and (s.time, s.id) < (snap.time, snap.id)
    ]
    return (same[-1], present[_origin(same[-1])]) if same else None


def _meta(node_doc: dict[str, Any]) -> dict[str, Any]:
    """A tree node's JSON without the ids that differ between repositories."""
    return {k: v for k, v in node_doc.items() if k not in ("content", "subtree")}


def _check_store_error(err: SeawallError) -> None:
    """Raise ``err`` if the store failed (stop everything); data damage is left to the caller."""
    if isinstance(err, StorageError) and not isinstance(err, ObjectNotFound):
        raise err


def copy(
    src: Repository,
    dst: Repository,
    snapshots: list[str] | None = None,
    *,
    progress: Progress | None = None,
    verify: bool = True,
    workers: int = 4,
) -> CopyResult:
    """Copy snapshots (names as ``resolve_snapshot`` takes them; all when None or
    empty) from ``src`` into ``dst``, oldest first. See the module docstring.

    Raises ResidencyViolation (after copying the rest) when a snapshot's
    residency rule forbids the target, DamagedSnapshot when a snapshot's
    source data cannot be read, IntegrityError when a copy fails
    verification, and StorageError when a store fails (the target stays
    valid; run the copy again to finish).
    """
    if src.config.id == dst.config.id:
        raise UsageError("the source and the target are the same repository")
    progress = progress or Progress("copy")
    started = time.monotonic()
    result = CopyResult()
    with Lock(src, exclusive=False), Lock(dst, exclusive=False):
        src.load_index()
        dst.load_index()
        dst.sync_index_with_packs()  # packs of a killed copy: their blobs are not uploaded again
        every = src.list_snapshots()
        if snapshots:
            chosen = {s.id: s for s in (src.resolve_snapshot(n) for n in snapshots)}
            todo = sorted(chosen.values(), key=lambda s: (s.time, s.id))
        else:
            todo = every
        by_id = {s.id: s for s in every}
        #: what the target holds: origin id -> its copy there
        present = {_origin(t): t for t in dst.list_snapshots()}
        copier = _Copier(src, dst, progress, workers)
        try:
            for snap in todo:
                progress.check_cancelled()
                if _origin(snap) in present:
                    result.skipped.append((snap, present[_origin(snap)]))
                    continue
                why = residency_violation(
                    snap.residency,
                    dst.config.region,
                    f"snapshot {snap.short_id}",
                    dst.storage.location,
                )
                if why:
                    result.refused.append((snap, why))
                    continue
                parent = by_id.get(snap.parent) if snap.parent else None
                parent_copy = present.get(_origin(parent)) if parent else None
                ref = _reference(snap, parent, every, present)
                try:
                    done = copier.copy_snapshot(snap, ref, parent_copy, verify=verify)
                except _SourceDamaged as err:
                    result.failed.append((snap, str(err)))
                    continue
                result.copied.append(done)
                present[_origin(snap)] = done.target
        finally:
            copier.close()
        result.written = copier.writer.stats
        result.bytes_read = copier.bytes_read
    result.duration = time.monotonic() - started
    if result.failed:
        lines = "; ".join(f"snapshot {s.short_id}: {why}" for s, why in result.failed)
        raise DamagedSnapshot(
            f"copied {len(result.copied)} snapshot(s), but {len(result.failed)} could not be "
            f"copied because source data is missing or damaged ({lines}); run `seawall check "
            "--read-data` on the source",
            [s.short_id for s, _ in result.failed],
            result,
        )
    if result.refused:
        raise ResidencyViolation(
            f"copied {len(result.copied)} snapshot(s); refused {len(result.refused)}: "
            + "; ".join(why for _s, why in result.refused),
            result,
        )
    return result


def copy_contents(
    src: Repository,
    dst: Repository,
    snapshots: list[Snapshot],
    *,
    progress: Progress | None = None,
    verify: bool = True,
    workers: int = 4,
) -> dict[bytes, bytes | str]:
    """Store in ``dst`` every tree and data blob of each of ``snapshots`` (of ``src``)
    that ``dst`` lacks, as copy does, but write no snapshot: for each, the id of its
    root tree in ``dst``, or why its source data could not be read. The caller holds
    the locks and has loaded both indexes. A snapshot copied back into the repository
    it was copied from gets its original trees again (``repair heal`` relies on it)."""
    copier = _Copier(src, dst, progress or Progress("copy"), workers)
    out: dict[bytes, bytes | str] = {}
    try:
        for snap in snapshots:
            try:
                out[snap.id] = copier.copy_content(snap, None, verify=verify)[0]
            except _SourceDamaged as err:
                out[snap.id] = str(err)
    finally:
        copier.close()
    return out


class _Copier:
    """Copies snapshots one by one, sharing one writer and one id map across them."""

    def __init__(self, src: Repository, dst: Repository, progress: Progress, workers: int) -> None:
        self.src = src
        self.dst = dst
        self.progress = progress
        self.workers = max(1, workers)
        self._scratch = threading.local()  # one decryption buffer per worker thread
        self.writer: BlobWriter = dst.writer()
        #: source data blob id -> target id (32 bytes) || BLAKE3 of the plaintext (32 bytes)
        self.data_map: dict[bytes, bytes] = {}
        #: source tree blob id -> target tree blob id
        self.tree_map: dict[bytes, bytes] = {}
        #: target data blob ids and target tree ids verified in this run
        self.verified: set[bytes] = set()
        self.verified_trees: set[bytes] = set()
        self.bytes_read = 0
        self._lock = threading.Lock()
        self._trees: dict[bytes, bytes] = {}
        self._tree_bytes = 0
        #: source data blob id -> element width, for pieces of float tensors: the
        #: target stores them with the float transform (and deltas) as well
        self.widths: dict[bytes, int] = {}

    def close(self) -> None:
        self.writer.close()

    def _buffer(self, repo: Repository) -> bytearray:
        """This thread's decryption buffer, large enough for any chunk of ``repo``."""
        size = repo.config.chunker.max_size + 1
        buf: bytearray | None = getattr(self._scratch, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._scratch.buf = bytearray(size)
        return buf

    # --- one snapshot ----------------------------------------------------------------------

    def copy_snapshot(
        self,
        snap: Snapshot,
        reference: tuple[Snapshot, Snapshot] | None,
        parent_copy: Snapshot | None,
        *,
        verify: bool,
    ) -> CopiedSnapshot:
        root, read, verified = self.copy_content(snap, reference, verify=verify)
        copy = Snapshot(
            time=snap.time,
            tree=root,
            paths=list(snap.paths),
            hostname=snap.hostname,
            username=snap.username,
            tags=list(snap.tags),
            parent=parent_copy.id if parent_copy else None,
            excludes=list(snap.excludes),
            program_version=snap.program_version,
            summary=dict(snap.summary),
            residency=snap.residency,
            original=_origin(snap),
            asset=dict(snap.asset),
        )
        self.dst.save_snapshot(copy)
        if self.dst.load_snapshot(copy.id).tree != root:
            raise IntegrityError(f"the copy of snapshot {snap.short_id} does not read back")
        return CopiedSnapshot(snap, copy, read, verified)

    def copy_content(
        self, snap: Snapshot, reference: tuple[Snapshot, Snapshot] | None, *, verify: bool
    ) -> tuple[bytes, int, int]:
        """Store every tree and data blob of ``snap`` the target lacks, flushed and
        (``verify``) read back: (the root tree's id in the target, data blobs read,
        bytes verified). No snapshot is written."""
        self.progress.start(f"copy {snap.short_id}")
        self._trees.clear()  # a snapshot that failed may have left some
        self._tree_bytes = 0
        if reference is not None:
            self._learn(reference[0].tree, reference[1].tree)
        needed: dict[bytes, None] = {}  # data blobs to read, in first-use order
        self._collect(snap.tree, needed)
        read = self._copy_data(list(needed))
        root = self._copy_tree(snap.tree)
        self.writer.flush()
        verified = self._verify(snap.tree, root) if verify else 0
        self._trees.clear()
        self._tree_bytes = 0
        return root, read, verified

    # --- phase 0: what earlier copies tell ----------------------------------------------------

    def _learn(self, src_tree: bytes, dst_tree: bytes) -> bool:
        """Pair a source tree with its copy in the target, recording the blob id
        pairs of every file under it, so that unchanged data and subtrees are
        neither read nor verified again. Only trees read back equal, with blobs
        of equal sizes in both indexes, are paired. Returns whether it paired."""
        if src_tree in self.tree_map:
            return self.tree_map[src_tree] == dst_tree
        try:
            src_raw = self._load_source_tree(src_tree)
            dst_raw = self.dst.load_blob(dst_tree)
            src_nodes, dst_nodes = decode_tree(src_raw), decode_tree(dst_raw)
        except _SourceDamaged:
            return False
        except SeawallError as err:
            _check_store_error(err)
            return False
        src_docs, dst_docs = json.loads(src_raw)["nodes"], json.loads(dst_raw)["nodes"]
        if len(src_docs) != len(dst_docs):
            return False
        pairs: dict[bytes, bytes] = {}
        for s, d, s_doc, d_doc in zip(src_nodes, dst_nodes, src_docs, dst_docs, strict=True):
            if _meta(s_doc) != _meta(d_doc):
                return False
            if s.type == FILE:
                if len(s.content) != len(d.content):
                    return False
                for sb, db in zip(s.content, d.content, strict=True):
                    s_loc, d_loc = self.src.index.lookup(sb), self.dst.index.lookup(db)
                    if s_loc is None or d_loc is None or s_loc.raw_length != d_loc.raw_length:
                        return False
                    pairs[sb] = db
            elif (
                s.type == DIR
                and s.subtree is not None
                and d.subtree is not None
                and not self._learn(s.subtree, d.subtree)
            ):
                return False
        for sb, db in pairs.items():
            self.data_map.setdefault(sb, db)  # target id alone: verified when it was copied
        self.tree_map[src_tree] = dst_tree
        self.verified_trees.add(dst_tree)
        return True

    # --- phase 1: trees ----------------------------------------------------------------------

    def _load_source_tree(self, tree_id: bytes) -> bytes:
        cached = self._trees.get(tree_id)
        if cached is not None:
            return cached
        try:
            raw = self.src.load_blob(tree_id)
            decode_tree(raw)  # validate before anything relies on it
        except SeawallError as err:
            _check_store_error(err)
            raise _SourceDamaged(f"tree {tree_id.hex()[:12]}: {err}") from None
        return raw

    def _collect(self, tree_id: bytes, needed: dict[bytes, None]) -> None:
        """The data blobs under a tree that were not copied yet, into ``needed``."""
        if tree_id in self.tree_map:
            return  # copied earlier in this run, with everything under it
        raw = self._load_source_tree(tree_id)
        if self._tree_bytes + len(raw) <= TREE_CACHE_BYTES and tree_id not in self._trees:
            self._trees[tree_id] = raw
            self._tree_bytes += len(raw)
        for node in decode_tree(raw):
            self.progress.check_cancelled()
            if node.type == FILE:
                for bid in node.content:
                    if bid not in self.data_map:
                        needed[bid] = None
                for i, width in float_widths(node).items():
                    self.widths[node.content[i]] = width
            elif node.type == DIR and node.subtree is not None:
                self._collect(node.subtree, needed)

    # --- phase 2: data, pack by pack -------------------------------------------------------------

    def _copy_data(self, needed: list[bytes]) -> int:
        by_pack: dict[tuple[bytes, bytes], list[PackedBlob]] = defaultdict(list)
        total = 0
        for bid in needed:
            loc = self.src.index.lookup(bid)
            if loc is None:
                raise _SourceDamaged(f"blob {bid.hex()[:12]} is missing from the source")
            by_pack[(loc.pack_id, loc.pack_salt)].append(loc.as_packed(bid))
            total += loc.raw_length
        self.progress.set_totals(None, total)
        damaged: list[str] = []

        def one_pack(item: tuple[tuple[bytes, bytes], list[PackedBlob]]) -> None:
            (pack_id, salt), blobs = item
            self.progress.check_cancelled()
            # Plaintexts are views of the thread's buffer: used (hashed and packed) at once.
            scratch = self._buffer(self.src)
            for blob, plain in self.src.read_pack_blobs(pack_id, salt, blobs, scratch=scratch):
                if isinstance(plain, SeawallError):
                    _check_store_error(plain)
                    with self._lock:
                        damaged.append(str(plain))
                    continue
                tid = self.dst.blob_id(plain)
                digest = blake3.blake3(plain).digest()
                width = self.widths.get(blob.id, 0)
                self.writer.add(DATA, plain, tid, width=width, base=self._base(blob, width))
                with self._lock:
                    self.data_map[blob.id] = tid + digest
                    self.bytes_read += len(plain)
                self.progress.add(nbytes=len(plain))

        with ThreadPoolExecutor(self.workers, thread_name_prefix="copy") as pool:
            for _ in pool.map(one_pack, sorted(by_pack.items())):
                pass
        if damaged:
            raise _SourceDamaged(damaged[0] + (f" (and {len(damaged) - 1} more)"))
        return len(needed)

    def _base(self, blob: PackedBlob, width: int) -> DeltaBase | None:
        """For a source delta whose base is already copied: that base in the target,
        so the target can store a delta too (a delta of the same bytes)."""
        src_base = self.src.index.bases.get(blob.id) if width and blob.type == DELTA else None
        with self._lock:
            mapped = self.data_map.get(src_base) if src_base else None
        if src_base is None or mapped is None:
            return None
        try:
            return DeltaBase(mapped[:32], self.src.load_blob(src_base))
        except SeawallError:
            return None  # stored whole instead; the copy is still verified

    # --- phase 3: trees, bottom-up -----------------------------------------------------------

    def _copy_tree(self, tree_id: bytes) -> bytes:
        """The target id of a source tree, storing it (and what is under it) in the target.

        The tree's JSON is edited in place rather than re-encoded from Nodes,
        so node fields this version does not know are copied too.
        """
        done = self.tree_map.get(tree_id)
        if done is not None:
            return done
        raw = self._load_source_tree(tree_id)
        doc: dict[str, Any] = json.loads(raw)
        for node, node_doc in zip(decode_tree(raw), doc["nodes"], strict=True):
            if node.type == DIR and node.subtree is not None:
                node_doc["subtree"] = self._copy_tree(node.subtree).hex()
            elif node.type == FILE and node.content:
                node_doc["content"] = [self.data_map[c][:32].hex() for c in node.content]
        new = json.dumps(doc, separators=(",", ":")).encode()
        tid = self.dst.blob_id(new)
        self.writer.add(TREE, new, tid)
        self.tree_map[tree_id] = tid
        return tid

    # --- phase 4: verification ----------------------------------------------------------------

    def _verify(self, src_root: bytes, dst_root: bytes) -> int:
        """Check the target's copy against the source (see the module docstring)."""
        self.progress.start("verify")
        expected: dict[bytes, bytes] = {}  # target data blob id -> BLAKE3 of the plaintext
        seen = self.verified_trees  # a tree verified once in this run holds for every snapshot

        def fail(what: str) -> IntegrityError:
            return IntegrityError(
                f"the copy does not match the source: {what}; the snapshot was not written "
                "to the target: run `seawall check --read-data` on the target"
            )

        def walk(src_tree: bytes, dst_tree: bytes, path: str) -> None:
            if dst_tree in seen:
                return
            seen.add(dst_tree)
            if self.tree_map.get(src_tree) != dst_tree:
                raise fail(f"{path or '/'}: directory listing differs")
            src_raw = self._load_source_tree(src_tree)
            try:
                dst_raw = self.dst.load_blob(dst_tree)
            except SeawallError as err:
                _check_store_error(err)
                raise fail(f"{path or '/'}: directory listing cannot be read back: {err}") from None
            src_docs, dst_docs = json.loads(src_raw)["nodes"], json.loads(dst_raw)["nodes"]
            if len(src_docs) != len(dst_docs):
                raise fail(f"{path or '/'}: {len(dst_docs)} entries, not {len(src_docs)}")
            pairs = zip(decode_tree(src_raw), decode_tree(dst_raw), src_docs, dst_docs, strict=True)
            for s, d, s_doc, d_doc in pairs:
                where = f"{path}/{s.display_name}"
                if _meta(s_doc) != _meta(d_doc):
                    raise fail(f"{where}: metadata differs")
                if s.type == FILE:
                    if len(s.content) != len(d.content):
                        raise fail(f"{where}: {len(d.content)} chunks, not {len(s.content)}")
                    for sb, db in zip(s.content, d.content, strict=True):
                        mapped = self.data_map.get(sb)
                        if mapped is None or mapped[:32] != db:
                            raise fail(f"{where}: chunk ids do not correspond")
                        expected[db] = mapped[32:]  # empty: paired from an earlier copy
                elif s.type == DIR and s.subtree is not None and d.subtree is not None:
                    walk(s.subtree, d.subtree, where)

        walk(src_root, dst_root, "")
        todo = {bid: d for bid, d in expected.items() if d and bid not in self.verified}
        for bid, digest in expected.items():
            if not digest and not self.dst.index.has(bid):
                raise fail(f"blob {bid.hex()[:12]} is not in the target's index")
        by_pack: dict[tuple[bytes, bytes], list[PackedBlob]] = defaultdict(list)
        for bid in todo:
            loc = self.dst.index.lookup(bid)
            if loc is None:
                raise fail(f"blob {bid.hex()[:12]} is not in the target's index")
            by_pack[(loc.pack_id, loc.pack_salt)].append(loc.as_packed(bid))
        self.progress.set_totals(None, sum(b.raw_length for v in by_pack.values() for b in v))
        verified = 0

        def one_pack(item: tuple[tuple[bytes, bytes], list[PackedBlob]]) -> int:
            (pack_id, salt), blobs = item
            nbytes = 0
            scratch = self._buffer(self.dst)
            for blob, plain in self.dst.read_pack_blobs(pack_id, salt, blobs, scratch=scratch):
                if isinstance(plain, SeawallError):
                    _check_store_error(plain)
                    raise fail(f"blob {blob.id.hex()[:12]} cannot be read back: {plain}")
                if blake3.blake3(plain).digest() != todo[blob.id]:
                    raise fail(f"blob {blob.id.hex()[:12]} holds other bytes than the source's")
                nbytes += len(plain)
                self.progress.add(nbytes=len(plain))
            return nbytes

        with ThreadPoolExecutor(self.workers, thread_name_prefix="verify") as pool:
            for nbytes in pool.map(one_pack, sorted(by_pack.items())):
                verified += nbytes
        self.verified.update(todo)
        return verified


__all__ = ["CopiedSnapshot", "CopyResult", "copy", "copy_contents"]
