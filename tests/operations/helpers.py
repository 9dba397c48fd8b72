"""Helpers shared by the operation and engine tests: trees, repositories, faults, the CLI."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from seawall.engine.trees import find
from seawall.errors import StorageFull
from seawall.operations.restore import restore
from seawall.repository.index import BlobLocation
from seawall.repository.pack import DATA, pack_name
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Node, Snapshot
from seawall.storage import FaultyStorage, LocalStorage, MemoryStorage, Storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK

#: The ``seawall`` console script of the interpreter running the tests.
SEAWALL = str(Path(sys.executable).with_name("seawall"))

#: One entry of a tree's state: (kind, sha256 or link target, mode, mtime_ns).
Entry = tuple[str, str, int, int]


# --- trees --------------------------------------------------------------------------------------


def random_bytes(size: int, seed: int) -> bytes:
    """Incompressible bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


def tree_state(root: Path, *, meta: bool = True) -> dict[str, Entry]:
    """Everything under ``root`` (and root itself, as "."): kind, content, mode and mtime.

    Works on byte-level names: a non-UTF-8 name appears surrogate-escaped.
    With ``meta=False`` the mode and mtime are left out (zeroed), for trees
    whose metadata a test does not control.
    """
    out: dict[str, Entry] = {}

    def entry(path: Path) -> Entry:
        st = os.lstat(path)
        if path.is_symlink():
            kind, value = "link", os.readlink(path)
        elif path.is_dir():
            kind, value = "dir", ""
        else:
            kind, value = "file", hashlib.sha256(path.read_bytes()).hexdigest()
        if not meta:
            return kind, value, 0, 0
        return kind, value, st.st_mode, st.st_mtime_ns

    out["."] = entry(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = entry(path)
    return out


def restored_path(target: Path, source: Path) -> Path:
    """Where restore puts ``source``: snapshots keep absolute paths below the target."""
    return target / source.relative_to(source.anchor)


def restore_and_compare(
    repo: Repository,
    snap: Snapshot,
    target: Path,
    expected: dict[Path, dict[str, Entry]] | None = None,
    *,
    meta: bool = False,
) -> None:
    """Restore ``snap`` into ``target`` and assert each of its paths equals ``expected[path]``
    (default: the path's current state on disk, i.e. the source is unchanged)."""
    restore(repo, snap, target)
    for p in snap.paths:
        source = Path(p)
        want = expected[source] if expected is not None else tree_state(source, meta=meta)
        assert tree_state(restored_path(target, source), meta=meta) == want, f"{p} differs"


# --- repositories -------------------------------------------------------------------------------


def new_repo(storage: Storage | None = None, *, pack_size: int = SMALL_PACK) -> Repository:
    """A fresh repository with cheap keys and small chunks (memory unless a store is given)."""
    return Repository.init(
        storage if storage is not None else MemoryStorage(),
        PASSWORD,
        kdf=FAST_KDF,
        chunker=SMALL_CHUNKS,
        pack_size=pack_size,
    )


def open_repo(storage: Storage | Path) -> Repository:
    """The repository opened afresh, as a new process would (index loaded)."""
    repo = Repository.open(
        LocalStorage(storage) if isinstance(storage, Path) else storage, PASSWORD
    )
    repo.load_index()
    return repo


def copy_memory(storage: MemoryStorage) -> MemoryStorage:
    """An independent copy of a memory store, to break without touching the original."""
    copy = MemoryStorage()
    copy.objects = dict(storage.objects)
    return copy


def objects(storage: Storage, prefix: str = "") -> dict[str, bytes]:
    """Every object's bytes, by name."""
    return {info.name: storage.get(info.name) for info in storage.list(prefix)}


def names(storage: Storage, prefix: str) -> set[str]:
    return {info.name for info in storage.list(prefix)}


def flip_byte(storage: Storage, name: str, offset: int) -> None:
    """Corrupt one bit of a stored object, as a failing disk would."""
    data = bytearray(storage.get(name))
    data[offset] ^= 0x01
    storage.put(name, bytes(data))


def node_at(repo: Repository, snap: Snapshot, path: Path | str) -> Node:
    """The node at an absolute path in a snapshot."""
    node = find(repo, snap.tree, str(path))
    assert node is not None, f"{path} is not in snapshot {snap.short_id}"
    return node


def location(repo: Repository, blob: bytes) -> BlobLocation:
    loc = repo.index.lookup(blob)
    assert loc is not None, f"blob {blob.hex()[:12]} is not in the index"
    return loc


def pack_of(repo: Repository, blob: bytes) -> str:
    """The name of the pack holding a blob."""
    return pack_name(location(repo, blob).pack_id)


def corrupt_blob(repo: Repository, blob: bytes) -> None:
    """Flip a bit inside one blob's sealed bytes (its pack's other blobs stay intact)."""
    loc = location(repo, blob)
    flip_byte(repo.storage, pack_name(loc.pack_id), loc.offset + loc.length // 2)


def data_blob_ids(repo: Repository) -> set[bytes]:
    """Ids of every data (file content) blob the loaded index knows."""
    entries = repo.index.entries()
    return {bytes(e).ljust(32, b"\0") for e in entries["id"][entries["type"] == DATA]}


def pack_blob_ids(repo: Repository, pack_names: Iterable[str]) -> set[bytes]:
    """Ids of the blobs stored in the given packs, read from the packs' own headers."""
    ids: set[bytes] = set()
    for name in pack_names:
        pack_id = bytes.fromhex(name.rsplit("/", 1)[1])
        _salt, blobs = repo.read_pack_header(pack_id, repo.storage.stat(name).size)
        ids.update(b.id for b in blobs)
    return ids


# --- faults -------------------------------------------------------------------------------------


class SimulatedCrash(Exception):
    """Raised by a fault hook where the process would have died."""


class Recorder:
    """A FaultyStorage hook that records every call and, optionally, fails calls.

    From the ``fail_at``-th call of an operation in ``ops`` on (1-based), every
    such call raises ``SimulatedCrash``: a crashed process makes no more calls.
    Calls on names under ``spare`` are recorded but never failed or counted;
    only calls on names under ``only`` are counted.
    """

    def __init__(
        self,
        *,
        fail_at: int | None = None,
        ops: tuple[str, ...] = ("put",),
        spare: str = "\0",
        only: str = "",
    ) -> None:
        self.calls: list[tuple[str, str]] = []
        self.counted = 0
        self.fail_at = fail_at
        self.ops = ops
        self.spare = spare
        self.only = only

    def __call__(self, op: str, name: str) -> None:
        self.calls.append((op, name))
        if op not in self.ops or name.startswith(self.spare) or not name.startswith(self.only):
            return
        self.counted += 1
        if self.fail_at is not None and self.counted >= self.fail_at:
            raise SimulatedCrash(f"simulated crash at {op} #{self.counted} ({name})")

    def puts(self, prefix: str = "") -> list[str]:
        return [n for op, n in self.calls if op == "put" and n.startswith(prefix)]

    def wrap(self, storage: Storage) -> FaultyStorage:
        return FaultyStorage(storage, self)


def quota_storage(inner: MemoryStorage, quota: int) -> FaultyStorage:
    """A store that fills up: once it holds ``quota`` bytes, every put fails as a full disk does."""

    def hook(op: str, name: str) -> None:
        if op == "put" and sum(len(v) for v in inner.objects.values()) >= quota:
            raise StorageFull(f"no space left on the store while writing {name}")

    return FaultyStorage(inner, hook)


# --- the CLI ------------------------------------------------------------------------------------


def cli_env(repo: Path | str, password: str = PASSWORD) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    env.update(SEAWALL_REPOSITORY=str(repo), SEAWALL_PASSWORD=password)
    return env


def run_cli(
    repo: Path | str,
    *args: str,
    password: str = PASSWORD,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``seawall ARGS`` against ``repo`` and return the finished process (never raises)."""
    return subprocess.run(
        [SEAWALL, *args],
        env=cli_env(repo, password),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=preexec_fn,
    )


def start_cli(repo: Path | str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SEAWALL, *args],
        env=cli_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
