"""The restore pipeline: trees and blobs back to files.

Restore is planned by pack, not by file: every file is created at its final
size first, then worker threads each take a pack, read the blobs it needs in
one ranged request, verify them against their ids, and write each one at its
offsets in every file that uses it (``pwrite``, out of order). A large file
whose chunks spread over many packs is therefore written by all workers at
once. Metadata (mode, times, owner) is applied once the data is in place.

A blob that cannot be read (missing pack, failed authentication) damages only
the files that use it: every other file is restored, the damaged ones are
removed and reported. A store that fails (unreachable, or transient errors
beyond the retries) is not damage: the restore stops with its StorageError.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from seawall.engine.progress import Progress
from seawall.engine.trees import load_tree, safe_name
from seawall.errors import ObjectNotFound, SeawallError, StorageError
from seawall.repository.pack import PackedBlob
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, FILE, SYMLINK, Node


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    #: files that could not be restored, with the reason (they were removed)
    damaged: list[tuple[str, str]] = field(default_factory=list)
    #: non-fatal problems (metadata that could not be applied)
    notes: list[tuple[str, str]] = field(default_factory=list)


def _included(path: str, includes: list[str]) -> tuple[bool, bool]:
    """(restore this node, descend into it) for a snapshot path like "/a/b"."""
    if not includes:
        return True, True
    for inc in includes:
        inc = "/" + inc.strip("/")
        if path == inc or path.startswith(inc + "/"):
            return True, True
        if inc.startswith(path + "/"):
            return False, True  # an ancestor of what was asked for
    return False, False


class Restorer:
    def __init__(
        self,
        repo: Repository,
        *,
        progress: Progress | None = None,
        workers: int | None = None,
        owners: bool | None = None,
    ) -> None:
        self.repo = repo
        self.progress = progress or Progress("restore")
        self.stats = RestoreStats()
        self._workers = workers or max(4, 2 * (os.cpu_count() or 2))
        self._scratch = threading.local()
        self._owners = os.geteuid() == 0 if owners is None else owners
        self._lock = threading.Lock()
        self._files: list[tuple[Path, Node, str]] = []
        self._dirs: list[tuple[Path, Node]] = []
        self._damaged: dict[int, str] = {}

    def restore(
        self, tree_id: bytes, target: Path, includes: list[str] | None = None
    ) -> RestoreStats:
        target.mkdir(parents=True, exist_ok=True)
        self._create(tree_id, target, "", includes or [])
        by_pack = self._plan()
        total = sum(n.size for _p, n, _s in self._files)
        self.progress.set_totals(len(self._files), total)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="restore") as pool:
            for future in [pool.submit(self._restore_pack, *item) for item in by_pack.items()]:
                future.result()
        self._finish()
        return self.stats

    # --- phase 1: directories, symlinks, empty files at final size ----------------------------

    def _create(self, tree_id: bytes, dest: Path, prefix: str, includes: list[str]) -> None:
        try:
            nodes = load_tree(self.repo, tree_id)
        except SeawallError as err:
            _raise_store_failure(err)
            self.stats.damaged.append((prefix or "/", f"directory listing unreadable: {err}"))
            return
        for node in nodes:
            name = safe_name(node)
            spath = f"{prefix}/{name.decode('utf-8', 'surrogateescape')}"
            want, descend = _included(spath, includes)
            path = dest / os.fsdecode(name)
            if node.type == DIR and descend and node.subtree is not None:
                _remove_if_link(path)  # else the files below would land where it points
                path.mkdir(exist_ok=True)
                self._create(node.subtree, path, spath, includes)
                self._dirs.append((path, node))
                if want:
                    self.stats.dirs += 1
            elif not want:
                continue
            elif node.type == FILE:
                _create_file(path, node.size)
                self._files.append((path, node, spath))
            elif node.type == SYMLINK and node.target is not None:
                _remove_if_link(path)
                if path.exists():
                    path.unlink()
                os.symlink(node.target, path)
                self._symlink_meta(path, node)
                self.stats.symlinks += 1

    # --- phase 2: data, pack by pack ----------------------------------------------------------

    def _plan(
        self,
    ) -> dict[tuple[bytes, bytes], dict[bytes, tuple[PackedBlob, list[tuple[int, int]]]]]:
        """pack (id, salt) -> blob id -> (blob, [(file number, offset in file)])."""
        plan: dict[tuple[bytes, bytes], dict[bytes, tuple[PackedBlob, list[tuple[int, int]]]]] = (
            defaultdict(dict)
        )
        for fno, (_path, node, spath) in enumerate(self._files):
            offset = 0
            for bid in node.content:
                loc = self.repo.index.lookup(bid)
                if loc is None:
                    self._damage(fno, f"blob {bid.hex()[:12]} is missing from the repository")
                    break
                entry = plan[(loc.pack_id, loc.pack_salt)].setdefault(bid, (loc.as_packed(bid), []))
                entry[1].append((fno, offset))
                offset += loc.raw_length
            else:
                if offset != node.size:
                    self._damage(
                        fno, f"{spath}: its chunks hold {offset} bytes, the tree says {node.size}"
                    )
        return plan

    def _restore_pack(
        self,
        pack: tuple[bytes, bytes],
        blobs: dict[bytes, tuple[PackedBlob, list[tuple[int, int]]]],
    ) -> None:
        self.progress.check_cancelled()
        pack_id, salt = pack
        # One decryption buffer per worker thread, reused for every blob: no
        # allocation (and page faults) per chunk on the way to the file.
        scratch: bytearray | None = getattr(self._scratch, "buf", None)
        if scratch is None:
            scratch = self._scratch.buf = bytearray(self.repo.config.chunker.max_size + 1)
        for blob, result in self.repo.read_pack_blobs(
            pack_id, salt, [b for b, _ in blobs.values()], scratch=scratch
        ):
            targets = blobs[blob.id][1]
            if isinstance(result, SeawallError):
                _raise_store_failure(result)
                for fno, _off in targets:
                    self._damage(fno, str(result))
                continue
            for fno, off in targets:
                if fno in self._damaged:
                    continue
                path = self._files[fno][0]
                fd = os.open(path, os.O_WRONLY)
                try:
                    view = memoryview(result)
                    while view:
                        n = os.pwrite(fd, view, off)
                        view, off = view[n:], off + n
                finally:
                    os.close(fd)
                self.progress.add(nbytes=len(result))

    def _damage(self, fno: int, reason: str) -> None:
        with self._lock:
            self._damaged.setdefault(fno, reason)

    # --- phase 3: metadata, and removing what could not be restored ---------------------------

    def _finish(self) -> None:
        for fno, (path, node, spath) in enumerate(self._files):
            if fno in self._damaged:
                path.unlink(missing_ok=True)
                self.stats.damaged.append((spath, self._damaged[fno]))
                continue
            self._apply_meta(path, node)
            self.stats.files += 1
            self.stats.bytes += node.size
            self.progress.add(files=1)
        # Deepest first, so setting a child's times does not change its parent's afterwards.
        for path, node in sorted(self._dirs, key=lambda d: len(d[0].parts), reverse=True):
            self._apply_meta(path, node)

    def _apply_meta(self, path: Path, node: Node) -> None:
        try:
            if self._owners:
                os.chown(path, node.uid, node.gid)
            os.chmod(path, node.mode)
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns))
        except OSError as err:
            self.stats.notes.append((str(path), f"metadata not restored: {err.strerror}"))

    def _symlink_meta(self, path: Path, node: Node) -> None:
        try:
            if self._owners:
                os.lchown(path, node.uid, node.gid)
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
        except OSError as err:
            self.stats.notes.append((str(path), f"metadata not restored: {err.strerror}"))


def _raise_store_failure(err: SeawallError) -> None:
    """Raise ``err`` if the store failed, rather than the data being missing or damaged."""
    if isinstance(err, StorageError) and not isinstance(err, ObjectNotFound):
        raise err


def _create_file(path: Path, size: int) -> None:
    """Create (or truncate) a regular file at its final size, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        _remove_if_link(path)
        fd = os.open(path, flags, 0o600)
    try:
        if size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _remove_if_link(path: Path) -> None:
    # Never write through a symlink that already sits at the destination.
    if path.is_symlink():
        path.unlink()
