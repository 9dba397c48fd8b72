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
from tests.postgres import PgDatabase, new_database
from tests.rest_server import RestServer, self_signed_cert
from tests.s3_server import CLEARED_AWS_ENV, FAKE_AWS_ENV, MotoServer

#: Argon2id at its cheapest: tests open repositories hundreds of times.
FAST_KDF = KdfParams(time_cost=1, memory_cost_kib=1024, parallelism=1)
#: Small chunks and packs, so small test files still make many chunks and packs.
SMALL_CHUNKS = ChunkerParams(min_size=4 * 1024, avg_size=16 * 1024, max_size=64 * 1024)
SMALL_PACK = 256 * 1024
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A real S3 API server (moto) on loopback, one per test process; fake AWS
    credentials in this process's environment while it runs."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        for name in CLEARED_AWS_ENV:
            mp.delenv(name, raising=False)
        server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> Iterator[str]:
    """A fresh, empty bucket of this test's own on the S3 server; removed afterwards."""
    bucket = s3_server.new_bucket()
    yield bucket
    s3_server.remove_bucket(bucket)


@pytest.fixture
def s3_lock_bucket(s3_server: MotoServer) -> Iterator[str]:
    """A fresh bucket with S3 Object Lock (so versioning) enabled; removed afterwards
    with every version (tests/s3_lock.py)."""
    from tests.s3_lock import new_lock_bucket, remove_lock_bucket

    bucket = new_lock_bucket(s3_server)
    yield bucket
    remove_lock_bucket(s3_server, bucket)


@pytest.fixture(scope="session")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    """A read-write ``seawall repo-server`` on loopback, one per test process;
    ``reset()`` it for an empty store (tests/rest_server.py)."""
    server = RestServer(tmp_path_factory.mktemp("rest") / "root")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rest_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    """The same over HTTPS, with a self-signed certificate its clients verify against."""
    base = tmp_path_factory.mktemp("rest-tls")
    server = RestServer(base / "root", tls=self_signed_cert(base / "tls"))
    yield server
    server.stop()


@pytest.fixture(params=["memory", "local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Every backend the repository must work on."""
    if request.param == "memory":
        yield MemoryStorage()
    elif request.param == "local":
        yield LocalStorage(tmp_path / "repo")
    else:
        from seawall.storage.s3 import S3Storage

        server: MotoServer = request.getfixturevalue("s3_server")
        store = S3Storage(
            request.getfixturevalue("s3_bucket"), "repo", endpoint_url=server.endpoint
        )
        yield store
        store.close()


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


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    """A new database of this test's own on the local PostgreSQL (tests/postgres.py);
    it and every database whose name starts with its name are dropped afterwards."""
    with new_database() as db:
        yield db
