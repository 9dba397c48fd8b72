"""The backup pipeline: files and directories to blobs and trees.

The calling thread walks the file system, reads files and cuts them into
chunks (reading and cutting release the GIL); a pool of worker threads
hashes, compresses and encrypts the chunks (all GIL-free in the libraries
used) into packs; upload threads store the packs. At most a bounded number of
chunks is in flight, so memory stays bounded whatever the size of the tree.

A file whose path, size, mtime and inode match the parent snapshot's node is
not read again: its content list is reused (the "files cache").
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard, cast

from seawall.codec.checkpoints import Layout, Tensor, detect
from seawall.engine.checkpoints import Parents, describe, float_width, piece_size, segments
from seawall.engine.progress import Progress
from seawall.engine.trees import load_tree
from seawall.errors import SeawallError
from seawall.repository.pack import DATA, TREE
from seawall.repository.repo import BlobWriter, DeltaBase, Repository
from seawall.repository.snapshot import DIR, FILE, SYMLINK, Node, encode_tree

#: Files up to this size are read whole and cut in memory (no stream buffer).
_WHOLE_READ = 16 * 1024 * 1024


@dataclass
class ArchiveStats:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    #: paths that could not be read, with the reason (the backup skipped them)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: things the user should know that lost nothing (changed while read, skipped specials)
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PathEntry:
    """A file or directory tree on disk, stored at ``dest`` (a relative POSIX path)."""

    dest: str
    source: Path


@dataclass(frozen=True)
class StreamEntry:
    """A file whose bytes come from a stream (a dump, a generated manifest), at ``dest``.

    ``open`` is called once, when the archiver gets to it, so a source can
    start its dump process lazily; the stream is read in chunks, never whole.
    """

    dest: str
    open: Callable[[], AbstractContextManager[BinaryIO]]
    mode: int = 0o600


Entry = PathEntry | StreamEntry


class Excluder:
    """restic-like patterns: one without "/" matches a name at any depth; one
    with "/" matches the whole path."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns

    def __call__(self, path: str) -> bool:
        name = os.path.basename(path)
        for pat in self.patterns:
            pat = pat.rstrip("/")  # "cache/" names a directory, as "cache" does
            target = path if "/" in pat else name
            if fnmatch.fnmatchcase(target, pat):
                return True
        return False


class _Pending:
    """A node whose file chunks or subtree may still be being stored."""

    def __init__(
        self, node: Node, futures: list[Future[bytes]] | None = None, tree: _Tree | None = None
    ) -> None:
        self.node = node
        self.futures = futures or []
        self.tree = tree

    def ready(self) -> bool:
        return all(f.done() for f in self.futures) and (self.tree is None or self.tree.stored)

    def resolve(self) -> Node:
        if self.futures:
            self.node.content = [f.result() for f in self.futures]
            self.futures = []
        if self.tree is not None:
            self.node.subtree = self.tree.resolve()
        return self.node


class _Tree:
    """A directory's tree blob, stored once everything in it is.

    The walk does not wait for a directory's chunks when it leaves the
    directory (that would drain the pipeline at every directory boundary):
    it stores the tree as soon as it is ready, or at the end.
    """

    def __init__(self, writer: BlobWriter, items: list[_Pending], same_as: bytes | None) -> None:
        self.writer = writer
        self.items = items
        #: the parent snapshot's tree id, when nothing in the directory changed
        self.same_as = same_as
        self.id: bytes | None = same_as

    @property
    def stored(self) -> bool:
        return self.id is not None

    def try_store(self) -> bool:
        if self.id is None and all(item.ready() for item in self.items):
            self.resolve()
        return self.stored

    def resolve(self) -> bytes:
        if self.id is None:
            self.id = self.writer.add(TREE, encode_tree([item.resolve() for item in self.items]))
            self.items = []
        return self.id


class Archiver:
    def __init__(
        self,
        repo: Repository,
        writer: BlobWriter,
        *,
        excludes: list[str] | None = None,
        progress: Progress | None = None,
        workers: int | None = None,
        tensors: bool = True,
        delta_hint: bytes | None = None,
    ) -> None:
        """``tensors``: store recognised checkpoints tensor by tensor (else as any
        file). ``delta_hint``: a snapshot tree to take delta parents from."""
        self.repo = repo
        self.writer = writer
        self._tensors = tensors
        self._parents = Parents(repo, delta_hint)
        self._piece = piece_size(repo.config.chunker.max_size)
        self.stats = ArchiveStats()
        self.progress = progress or Progress("backup")
        self._exclude = Excluder(excludes or [])
        self._chunker = repo.chunker()
        self._workers = workers or max(2, os.cpu_count() or 2)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="chunk")
        # Bounds chunks in flight: at most this many max-size chunks are in memory.
        self._inflight = threading.BoundedSemaphore(self._workers * 3)
        self._deferred: list[_Tree] = []  # trees waiting for their chunks

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- entry point ------------------------------------------------------------

    def archive(self, paths: list[Path], parent_tree: bytes | None) -> bytes:
        """Store ``paths`` (absolute) as one tree rooted at "/"; return its id."""
        self._parents.fall_back_to(parent_tree)
        virtual: dict[str, dict] = {}  # type: ignore[type-arg]
        for path in paths:
            level = virtual
            parts = path.parts[1:]
            for i, part in enumerate(parts):
                if i == len(parts) - 1:
                    level[part] = {"": None}  # marks "back up everything below"
                else:
                    level = level.setdefault(part, {})
        return self._save_virtual("/", virtual, parent_tree).resolve()

    def archive_entries(self, entries: list[Entry], parent_tree: bytes | None) -> bytes:
        """Store ``entries`` as one tree rooted at the entries' common root; return its id.

        Directories that no entry names itself (``a`` for ``a/b.sql``) get
        owner-only permissions. ``parent_tree`` (the same asset's previous
        tree) lets unchanged files on disk be reused without reading them.
        """
        self._parents.fall_back_to(parent_tree)
        root: dict[str, Any] = {}
        for entry in entries:
            parts = [p for p in entry.dest.split("/") if p]
            if not parts or any(p in (".", "..") for p in parts):
                raise SeawallError(f"invalid entry path {entry.dest!r}")
            level = root
            for part in parts[:-1]:
                level = level.setdefault(part, {})
                if not isinstance(level, dict):
                    raise SeawallError(f"entry {entry.dest!r} is below a file entry")
            if parts[-1] in level:
                raise SeawallError(f"two entries at {entry.dest!r}")
            level[parts[-1]] = entry
        return self._save_entries(root, parent_tree).resolve()

    def _save_entries(self, level: dict[str, Any], parent_tree: bytes | None) -> _Tree:
        parent = self._parent_nodes(parent_tree)
        items: list[_Pending] = []
        for name, sub in sorted(level.items()):
            pnode = parent.get(os.fsencode(name))
            item: _Pending | None
            if isinstance(sub, dict):
                tree = self._save_entries(sub, pnode.subtree if pnode else None)
                item = _Pending(_synthetic_node(name, DIR, 0o700), tree=tree)
            elif isinstance(sub, PathEntry):
                item = self._save_path(str(sub.source), pnode)
                if item is not None:
                    item.node = dataclasses.replace(item.node, name=os.fsencode(name))
            else:
                item = self._save_stream(name, sub)
            if item is not None:
                items.append(item)
        tree = _Tree(self.writer, items, None)
        self._deferred.append(tree)
        return tree

    def _save_stream(self, name: str, entry: StreamEntry) -> _Pending:
        node = _synthetic_node(name, FILE, entry.mode)
        futures: list[Future[bytes]] = []
        with entry.open() as stream:
            for view in self._chunker.stream(stream):
                self.progress.check_cancelled()
                futures.append(self._submit(bytes(view)))
                node.size += len(view)
        self.stats.files_new += 1
        self.stats.bytes_read += node.size
        self.stats.bytes_total += node.size
        self.progress.add(files=1)
        return _Pending(node, futures)

    def _save_virtual(self, prefix: str, vtree: dict, parent_tree: bytes | None) -> _Tree:  # type: ignore[type-arg]
        parent = self._parent_nodes(parent_tree)
        items: list[_Pending] = []
        for name, sub in sorted(vtree.items()):
            path = os.path.join(prefix, name)
            pnode = parent.get(os.fsencode(name))
            if "" in sub:
                item = self._save_path(path, pnode)
                if item is not None:
                    items.append(item)
                continue
            st = self._lstat(path)
            if st is None:
                continue
            tree = self._save_virtual(path, sub, pnode.subtree if pnode else None)
            items.append(_Pending(_node_from_stat(os.fsencode(name), DIR, st), tree=tree))
        return _Tree(self.writer, items, None)

    # --- the walk --------------------------------------------------------------------
    # Paths are plain strings here: pathlib costs more than the syscalls on big trees.

    def _lstat(self, path: str) -> os.stat_result | None:
        try:
            return os.lstat(path)
        except OSError as err:
            self.stats.unreadable.append((path, err.strerror or str(err)))
            return None

    def _parent_nodes(self, tree_id: bytes | None) -> dict[bytes, Node]:
        if tree_id is None:
            return {}
        try:
            return {n.name: n for n in load_tree(self.repo, tree_id)}
        except SeawallError:
            return {}  # a damaged parent only costs re-reading files

    def _save_path(
        self, path: str, pnode: Node | None, st: os.stat_result | None = None
    ) -> _Pending | None:
        """Store whatever is at ``path``; None if it was skipped (and recorded why)."""
        self.progress.check_cancelled()
        st = st or self._lstat(path)
        if st is None:
            return None
        name = os.fsencode(os.path.basename(path))
        if stat.S_ISDIR(st.st_mode):
            tree = self._save_dir(path, pnode.subtree if pnode and pnode.type == DIR else None)
            if tree is None:
                return None
            self.stats.dirs += 1
            if pnode is not None and tree.same_as is not None and _same_meta(pnode, st):
                return _Pending(pnode)
            return _Pending(_node_from_stat(name, DIR, st), tree=tree)
        if stat.S_ISREG(st.st_mode):
            return self._save_file(path, st, pnode)
        if stat.S_ISLNK(st.st_mode):
            node = _node_from_stat(name, SYMLINK, st)
            try:
                node.target = os.fsencode(os.readlink(path))
            except OSError as err:
                self.stats.unreadable.append((path, err.strerror or str(err)))
                return None
            return _Pending(node)
        self.stats.notes.append((path, "skipped: not a file, directory or symlink"))
        return None

    def _save_dir(self, path: str, parent_tree: bytes | None) -> _Tree | None:
        try:
            with os.scandir(path) as it:
                entries = sorted((e.name, e.path) for e in it)
        except OSError as err:
            self.stats.unreadable.append((path, err.strerror or str(err)))
            return None
        parent = self._parent_nodes(parent_tree)
        listed: list[tuple[str, os.stat_result, Node | None]] = []
        for name, child in entries:
            if self._exclude(child):
                continue
            st = self._lstat(child)
            if st is not None:
                listed.append((child, st, parent.get(os.fsencode(name))))
        # One vectorized index lookup for every file that looks unchanged.
        reusable = self.repo.index.has_all(
            [c for _c, st, pnode in listed if _looks_unchanged(pnode, st) for c in pnode.content]
        )
        items: list[_Pending] = []
        for child, st, pnode in listed:
            if stat.S_ISREG(st.st_mode):
                item = self._save_file(child, st, pnode, reusable)
            else:
                item = self._save_path(child, pnode, st)
            if item is not None:
                items.append(item)
        if (
            parent_tree is not None
            and len(items) == len(parent)
            and all(item.node is parent.get(item.node.name) for item in items)
        ):
            return _Tree(self.writer, [], same_as=parent_tree)  # nothing in it changed
        tree = _Tree(self.writer, items, None)
        self._deferred.append(tree)
        # Store whichever trees are complete by now, this one included, without waiting.
        self._deferred = [t for t in self._deferred if not t.try_store()]
        return tree

    def _save_file(
        self, path: str, st: os.stat_result, pnode: Node | None, known_stored: bool = False
    ) -> _Pending | None:
        """Store a regular file, or reuse the parent's node if it is unchanged.

        ``known_stored``: the caller checked that the parent's chunks are indexed.
        """
        self.stats.bytes_total += st.st_size
        if _looks_unchanged(pnode, st) and (known_stored or self.repo.index.has_all(pnode.content)):
            self.stats.files_unmodified += 1
            self.progress.add(files=1, nbytes=st.st_size)
            if _same_meta(pnode, st):
                if pnode.checkpoint is not None:
                    self._parents.remember(pnode.checkpoint, pnode.content, st.st_mtime_ns, path)
                return _Pending(pnode)
            node = _node_from_stat(pnode.name, FILE, st)
            node.size, node.inode, node.content = st.st_size, st.st_ino, pnode.content
            node.checkpoint = pnode.checkpoint
            if node.checkpoint is not None:
                self._parents.remember(node.checkpoint, node.content, st.st_mtime_ns, path)
            return _Pending(node)
        node = _node_from_stat(os.fsencode(os.path.basename(path)), FILE, st)
        node.size = st.st_size
        node.inode = st.st_ino
        try:
            futures, size, after = self._read_file(path, node, pnode)
        except OSError as err:
            self.stats.unreadable.append((path, err.strerror or str(err)))
            return None
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns) or size != st.st_size:
            self.stats.notes.append(
                (
                    path,
                    "changed while it was read: stored as read; "
                    "back it up again for a settled copy",
                )
            )
        # Keep the mtime seen before reading: if the file changed, the next
        # backup sees a different mtime and reads it again.
        node.size = size
        if pnode is None:
            self.stats.files_new += 1
        else:
            self.stats.files_changed += 1
        self.stats.bytes_read += size
        self.progress.add(files=1)
        return _Pending(node, futures)

    def _read_file(
        self, path: str, node: Node, pnode: Node | None
    ) -> tuple[list[Future[bytes]], int, os.stat_result]:
        futures: list[Future[bytes]] = []
        size = 0
        grew = False
        with open(path, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            # One read, sized by fstat (+1 reveals growth); chunks are views of it, no copies.
            data = f.read(st.st_size + 1) if st.st_size <= _WHOLE_READ else None
            layout = self._layout(f.fileno(), st.st_size, data) if self._tensors else None
            if layout is not None:
                futures, size = self._read_checkpoint(f, layout, st, node, pnode)
                grew = True  # whatever follows the layout's end, read below
            elif data is not None:
                for view in self._chunker.chunks(data) if data else ():
                    futures.append(self._submit(view))
                    size += len(view)
                grew = len(data) > st.st_size
            if st.st_size > _WHOLE_READ or grew:
                # The stream chunker reuses its buffer: each chunk is copied out.
                f.seek(size)
                for view in self._chunker.stream(f):
                    self.progress.check_cancelled()
                    futures.append(self._submit(bytes(view)))
                    size += len(view)
            after = os.fstat(f.fileno())
        return futures, size, after

    def _layout(self, fd: int, size: int, data: bytes | None) -> Layout | None:
        """The file's checkpoint layout, if it is one; from ``data`` (the whole file,
        already read) when given, else from the file's header."""
        if data is not None:
            return detect(lambda offset, n: data[offset : offset + n], size)
        try:
            return detect(lambda offset, n: os.pread(fd, n, offset), size)
        except OSError:
            return None  # read as any file, which reports the error

    def _read_checkpoint(
        self, f: BinaryIO, layout: Layout, st: os.stat_result, node: Node, pnode: Node | None
    ) -> tuple[list[Future[bytes]], int]:
        """Store a checkpoint's bytes tensor by tensor; returns the chunk futures and
        how many bytes were read. Stops early if the file shrank (the caller notes it)."""
        parent = self._parents.find(layout, st.st_mtime_ns, pnode)
        fd = f.fileno()
        futures: list[Future[bytes]] = []
        counts: list[tuple[Tensor, int, int]] = []
        size = 0
        for seg in segments(layout, st.st_size, self._piece):
            self.progress.check_cancelled()
            if seg.tensor is None and seg.length > _WHOLE_READ:
                f.seek(seg.offset)  # a big stretch between tensors: streamed
                for view in self._chunker.stream(cast(BinaryIO, _Window(f, seg.length))):
                    futures.append(self._submit(bytes(view)))
                    size += len(view)
                if f.tell() != seg.offset + seg.length:
                    return futures, size
                continue
            data = os.pread(fd, seg.length, seg.offset)
            if seg.tensor is None:
                for view in self._chunker.chunks(data) if data else ():
                    futures.append(self._submit(view))
            else:
                if seg.piece == 0:
                    counts.append((seg.tensor, len(futures), 0))
                tensor, start, n = counts[-1]
                counts[-1] = (tensor, start, n + 1)
                base = None
                if parent is not None and len(data) == seg.length:
                    base = self._parents.base_for(parent, tensor, seg.piece, self._piece)
                futures.append(self._submit(data, float_width(tensor), base))
            size += len(data)
            if len(data) != seg.length:
                return futures, size
        node.checkpoint = describe(layout, counts)
        self._parents.remember(node.checkpoint, futures, st.st_mtime_ns, f.name, layout)
        return futures, size

    def _submit(
        self,
        chunk: bytes | memoryview,
        width: int = 0,
        base: Callable[[], DeltaBase | None] | None = None,
    ) -> Future[bytes]:
        self._inflight.acquire()
        try:
            future = self._pool.submit(self._store_chunk, chunk, width, base)
        except BaseException:
            self._inflight.release()
            raise
        return future

    def _store_chunk(
        self,
        chunk: bytes | memoryview,
        width: int,
        base: Callable[[], DeltaBase | None] | None,
    ) -> bytes:
        try:
            return self.writer.add(DATA, chunk, width=width, base=base() if base else None)
        finally:
            self.progress.add(nbytes=len(chunk))
            self._inflight.release()


class _Window(io.RawIOBase):
    """The next ``length`` bytes of a file, as a stream."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f = f
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)[: self._left]
        n = self._f.readinto(view)  # type: ignore[attr-defined]
        self._left -= n or 0
        return n or 0


def _looks_unchanged(pnode: Node | None, st: os.stat_result) -> TypeGuard[Node]:
    """The files cache test: same size, mtime and inode as in the parent snapshot."""
    return (
        pnode is not None
        and pnode.type == FILE
        and (pnode.size, pnode.mtime_ns, pnode.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
    )


def _same_meta(node: Node, st: os.stat_result) -> bool:
    return (node.mode, node.mtime_ns, node.uid, node.gid) == (
        stat.S_IMODE(st.st_mode),
        st.st_mtime_ns,
        st.st_uid,
        st.st_gid,
    )


def _synthetic_node(name: str, kind: str, mode: int) -> Node:
    """A node for something that is not on disk: owned by us, timed now."""
    return Node(
        name=os.fsencode(name),
        type=kind,
        mode=mode,
        mtime_ns=time.time_ns(),
        uid=os.getuid(),
        gid=os.getgid(),
    )


def _node_from_stat(name: bytes, kind: str, st: os.stat_result) -> Node:
    return Node(
        name=name,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
    )


def scan_totals(
    paths: list[Path], excludes: list[str], progress: Progress, stop: Callable[[], bool]
) -> None:
    """Count files and bytes under ``paths`` so progress can show an ETA."""
    exclude = Excluder(excludes)
    files = nbytes = 0
    for root in paths:
        if root.is_file():
            files += 1
            nbytes += root.stat().st_size
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            if stop():
                return
            dirnames[:] = [d for d in dirnames if not exclude(os.path.join(dirpath, d))]
            for fname in filenames:
                full = os.path.join(dirpath, fname)
                if exclude(full):
                    continue
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files += 1
                    nbytes += st.st_size
    progress.set_totals(files, nbytes)
