"""Shared fixtures: repositories on every backend, fast keys, tree helpers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.codec.chunker import ChunkerParams
from seawall.repository.keys import KdfParams
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage, MemoryStorage, Storage

#: Argon2id at its cheapest: tests open repositories hundreds of times.
FAST_KDF = KdfParams(time_cost=1, memory_cost_kib=1024, parallelism=1)
#: Small chunks and packs, so small test files still make many chunks and packs.
SMALL_CHUNKS = ChunkerParams(min_size=4 * 1024, avg_size=16 * 1024, max_size=64 * 1024)
SMALL_PACK = 256 * 1024
PASSWORD = "correct horse battery staple"


@pytest.fixture(params=["memory", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Every backend the repository must work on."""
    if request.param == "memory":
        yield MemoryStorage()
    else:
        yield LocalStorage(tmp_path / "repo")


@pytest.fixture
def repo(storage: Storage) -> Repository:
    """A fresh repository with small chunks and packs, on each backend."""
    return Repository.init(
        storage, PASSWORD, kdf=FAST_KDF, chunker=SMALL_CHUNKS, pack_size=SMALL_PACK
    )


@pytest.fixture
def local_repo(tmp_path: Path) -> tuple[Path, Repository]:
    path = tmp_path / "repo"
    return path, Repository.init(
        LocalStorage(path), PASSWORD, kdf=FAST_KDF, chunker=SMALL_CHUNKS, pack_size=SMALL_PACK
    )


def reopen(repo: Repository) -> Repository:
    """The same repository opened afresh (a new process would see this)."""
    return Repository.open(repo.storage, PASSWORD)


def tree_digest(root: Path) -> dict[str, tuple[str, str]]:
    """Relative path -> (kind, sha256 or link target) for everything under root."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", "")
            else:
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def make_files(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
