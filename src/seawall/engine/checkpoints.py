"""Checkpoints in the backup pipeline: tensor-bounded pieces, and delta parents.

A file that codec/checkpoints.py recognises (safetensors, torch.save zips,
NumPy) is cut at its tensors' boundaries instead of by content-defined
chunking: each tensor is one blob, or several fixed-size pieces of a big
one, so a tensor that did not change between two checkpoints is stored once
whatever moved around it. What lies between tensors (headers, pickles, zip
records) is chunked as usual.

The file's node records which blobs hold which tensor (``Node.checkpoint``),
so a later checkpoint of the same model can find its *parent*: the same
path in the parent snapshot, else the newest earlier checkpoint with the same
tensor names, dtypes and shapes seen in this backup, else one in the parent
snapshot (or in the snapshot given with ``--delta-parent``). Each float
piece may then be stored as a delta of the parent's matching piece
(repository/repo.py decides whether that is smaller, and bounds the chain).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from seawall.codec.checkpoints import FLOATS, WIDTH, Layout, Tensor, detect
from seawall.engine.trees import load_tree
from seawall.errors import SeawallError
from seawall.repository.repo import DeltaBase, Repository
from seawall.repository.snapshot import DIR, FILE, Node

#: The largest piece of a tensor, as a multiple of every element width.
MAX_PIECE = 4 * 1024 * 1024


def piece_size(max_chunk: int) -> int:
    """Pieces no bigger than half the chunker's maximum, nor than MAX_PIECE."""
    return max(8, min(MAX_PIECE, max_chunk // 2) // 8 * 8)


@dataclass(frozen=True)
class Segment:
    """A stretch of the file: a tensor piece (``tensor`` set) or bytes between tensors."""

    offset: int
    length: int
    tensor: Tensor | None = None
    #: the piece's number within its tensor
    piece: int = 0


def segments(layout: Layout, size: int, piece: int) -> Iterator[Segment]:
    """The whole file [0, size) as consecutive segments."""
    pos = 0
    for t in layout.tensors:
        if t.offset > pos:
            yield Segment(pos, t.offset - pos)
        width = WIDTH.get(t.dtype, 1)
        step = max(width, piece // width * width)
        for i, start in enumerate(range(t.offset, t.offset + t.length, step)):
            yield Segment(start, min(step, t.offset + t.length - start), t, i)
        pos = t.offset + t.length
    if pos < size:
        yield Segment(pos, size - pos)


def float_width(tensor: Tensor) -> int:
    """The element width that the float transform applies to, or 0 (not a float)."""
    return WIDTH[tensor.dtype] if tensor.dtype in FLOATS else 0


def float_widths(node: Node) -> dict[int, int]:
    """Content index -> element width, for the blobs of a checkpoint node that hold
    float tensors (copy and stats use it; a malformed field gives nothing)."""
    out: dict[int, int] = {}
    tensors = _tensors_of(node.checkpoint, len(node.content)) if node.checkpoint else None
    for dtype, _shape, start, count in (tensors or {}).values():
        if dtype in FLOATS:
            out.update(dict.fromkeys(range(start, start + count), WIDTH[dtype]))
    return out


def describe(layout: Layout, counts: list[tuple[Tensor, int, int]]) -> dict[str, Any]:
    """``Node.checkpoint`` from the tensors' first content index and blob count."""
    return {
        "format": layout.format,
        "tensors": [[t.name, t.dtype, list(t.shape), start, n] for t, start, n in counts],
    }


Content = list[bytes] | list[Future[bytes]]


@dataclass(frozen=True)
class _Known:
    """A checkpoint that can serve as a parent: its blobs (ids, or futures of the
    ids while this backup still stores them), its tensors, and where it is on
    disk when this backup read it (its pieces are then read from disk)."""

    content: Content
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]]
    path: str | None
    #: tensor name -> offset in the file at ``path`` (None: not read yet)
    offsets: dict[str, int] | None

    def blob(self, index: int) -> bytes:
        item = self.content[index]
        # A future of an earlier file's chunk: the pool runs tasks in order, so
        # it is running or done, never queued behind the task waiting for it.
        return item.result() if isinstance(item, Future) else item


def _tensors_of(
    checkpoint: dict[str, Any] | None, n_blobs: int
) -> dict[str, tuple[str, tuple[int, ...], int, int]] | None:
    """name -> (dtype, shape, first index, count) from a node's field, None if malformed."""
    try:
        out = {}
        for name, dtype, shape, start, count in (checkpoint or {})["tensors"]:
            if not (int(start) >= 0 and int(start) + int(count) <= n_blobs):
                return None
            out[str(name)] = (str(dtype), tuple(int(d) for d in shape), int(start), int(count))
        return out
    except (KeyError, TypeError, ValueError):
        return None  # a field written by someone else: no parent, nothing worse


def _signature(tensors: dict[str, tuple[str, tuple[int, ...], int, int]]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        dtype, shape, _start, _count = tensors[name]
        h.update(repr((name, dtype, shape)).encode())
    return h.digest()


class Parents:
    """Finds the delta parent of each new checkpoint, and reads the parent's pieces."""

    def __init__(self, repo: Repository, hint_tree: bytes | None) -> None:
        self.repo = repo
        #: a snapshot tree to take parents from (``--delta-parent``), walked on first need
        self._hint_tree = hint_tree
        self._hint_walked = False
        self._by_signature: dict[bytes, list[tuple[int, _Known]]] = {}
        self._lock = threading.Lock()

    def fall_back_to(self, tree_id: bytes | None) -> None:
        """Take parents from this tree (the parent snapshot's) when no hint was given."""
        if self._hint_tree is None:
            self._hint_tree = tree_id

    def remember(
        self,
        checkpoint: dict[str, Any] | None,
        content: Content,
        mtime_ns: int,
        path: str | None = None,
        layout: Layout | None = None,
    ) -> None:
        """A checkpoint this backup stored or kept: a candidate parent for later ones.
        With ``path``, its pieces are read from that file (checked against their ids)
        rather than decoded from the repository."""
        tensors = _tensors_of(checkpoint, len(content))
        if not tensors:
            return
        # A kept file's offsets are read from its header only if it becomes a parent.
        offsets = {t.name: t.offset for t in layout.tensors} if layout else None
        known = _Known(content, tensors, path, offsets)
        with self._lock:
            self._by_signature.setdefault(_signature(tensors), []).append((mtime_ns, known))

    def find(self, layout: Layout, mtime_ns: int, same_path: Node | None) -> _Known | None:
        """The parent for a checkpoint with ``layout``: the node at the same path in
        the parent snapshot if it has the same tensors, else the newest one
        remembered with the same tensors and not newer than this file."""
        wanted = {t.name: (t.dtype, t.shape) for t in layout.tensors}
        if same_path is not None:
            tensors = _tensors_of(same_path.checkpoint, len(same_path.content))
            if tensors and {k: v[:2] for k, v in tensors.items()} == wanted:
                return _Known(same_path.content, tensors, None, None)
        if not self._hint_walked and self._hint_tree is not None:
            self._hint_walked = True
            self._walk(self._hint_tree)
        sig = _signature({k: (*v, 0, 0) for k, v in wanted.items()})
        with self._lock:
            candidates = self._by_signature.get(sig, [])
            older = [c for c in candidates if c[0] <= mtime_ns] or candidates
            found = max(older, key=lambda c: c[0])[1] if older else None
        if found is not None and found.path is not None and found.offsets is None:
            on_disk = _layout_of(found.path)
            offsets = {t.name: t.offset for t in on_disk.tensors} if on_disk else {}
            found = dataclasses.replace(found, offsets=offsets)
        return found

    def _walk(self, tree_id: bytes) -> None:
        stack = [tree_id]
        while stack:
            try:
                nodes = load_tree(self.repo, stack.pop())
            except SeawallError:
                continue  # a damaged hint only costs deltas
            for node in nodes:
                if node.type == DIR and node.subtree is not None:
                    stack.append(node.subtree)
                elif node.type == FILE and node.checkpoint is not None:
                    self.remember(node.checkpoint, node.content, node.mtime_ns)

    def base_for(
        self, parent: _Known, tensor: Tensor, piece: int, step: int
    ) -> Callable[[], DeltaBase | None] | None:
        """A loader of the parent's piece matching (tensor, piece), or None."""
        info = parent.tensors.get(tensor.name)
        if info is None or info[:2] != (tensor.dtype, tensor.shape) or piece >= info[3]:
            return None
        offset = (parent.offsets or {}).get(tensor.name)

        def load() -> DeltaBase | None:
            try:
                base_id = parent.blob(info[2] + piece)
            except Exception:  # the parent's own chunk failed: the backup reports that
                return None
            if parent.path is not None and offset is not None:
                start = piece * step
                data = _pread(parent.path, offset + start, min(step, tensor.length - start))
                if data is not None and self.repo.blob_id(data) == base_id:
                    return DeltaBase(base_id, data)
            if not self.repo.index.has(base_id):
                return None  # not stored yet (or lost): no delta, nothing worse
            try:
                return DeltaBase(base_id, self.repo.load_blob(base_id))
            except SeawallError:
                return None

        return load


def _layout_of(path: str) -> Layout | None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return detect(lambda offset, n: os.pread(fd, n, offset), os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError:
        return None


def _pread(path: str, offset: int, length: int) -> bytes | None:
    """The parent's piece from disk (None if the file went away; the caller checks
    the bytes against the blob id, in case it changed)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)
    except OSError:
        return None
