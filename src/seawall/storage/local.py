"""A store in a local directory.

Invariant: an object is visible under its name only once all of its bytes are
on disk: it is written to a temporary file in the same directory, fsynced,
then renamed into place, and the directory is fsynced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from seawall.errors import ObjectExists, ObjectNotFound, StorageError, StorageFull
from seawall.storage.base import Capabilities, ObjectInfo, check_name

_TMP_SUFFIX = ".seawall-tmp"


def _translate(err: OSError, name: str) -> StorageError:
    if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
        return StorageFull(
            f"no space left on the device holding the repository while writing {name}; "
            "free some space and run the command again (the repository is unchanged)"
        )
    if isinstance(err, FileNotFoundError):
        return ObjectNotFound(f"object {name} does not exist")
    return StorageError(f"cannot access {name}: {err.strerror or err}")


class LocalStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    @property
    def location(self) -> str:
        return str(self._root)

    def _path(self, name: str) -> Path:
        # A name ending like a temp file would be stored but never listed.
        if check_name(name).endswith(_TMP_SUFFIX):
            raise StorageError(f"invalid object name {name!r}")
        return self._root / name

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if if_absent:
                # link() fails if the name exists: an atomic put-if-absent.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(f"object {name} already exists") from None
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as err:
            with contextlib.suppress(OSError):  # e.g. a path component that is a file
                tmp.unlink(missing_ok=True)
            raise _translate(err, name) from None

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self._path(name), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except OSError as err:
            raise _translate(err, name) from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            return ObjectInfo(name, self._path(name).stat().st_size)
        except OSError as err:
            raise _translate(err, name) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory the prefix names, so listing "index/" does
        # not touch the (much larger) data/ tree.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._root / base if base else self._root
        if not start.is_dir():
            return
        for dirpath, _dirs, files in os.walk(start):
            rel = os.path.relpath(dirpath, self._root)
            for fname in files:
                if fname.endswith(_TMP_SUFFIX):
                    continue
                name = fname if rel == "." else f"{rel}/{fname}".replace(os.sep, "/")
                if not name.startswith(prefix):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, fname)).st_size
                except FileNotFoundError:
                    continue  # deleted while listing
                yield ObjectInfo(name, size)

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except OSError as err:
            raise _translate(err, name) from None

    def capabilities(self) -> Capabilities:
        return Capabilities(conditional_write=True)

    def close(self) -> None:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
