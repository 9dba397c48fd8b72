"""Repository: init/open, passwords, sealed objects, and that nothing but the config is readable."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
from pathlib import Path

import blake3
import pytest
import zstandard

from seawall.codec.ids import storage_id
from seawall.errors import (
    IntegrityError,
    RepositoryExists,
    RepositoryNotFound,
    UsageError,
    WrongPassword,
)
from seawall.operations.backup import backup
from seawall.repository.pack import DATA
from seawall.repository.repo import Repository
from seawall.storage import Storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files, reopen

DATA_KINDS = ("data/", "index/", "snapshots/")


def object_digests(storage: Storage, prefixes: tuple[str, ...] = DATA_KINDS) -> dict[str, str]:
    return {
        info.name: hashlib.sha256(storage.get(info.name)).hexdigest()
        for prefix in prefixes
        for info in storage.list(prefix)
    }


def test_init_twice_is_refused(storage: Storage) -> None:
    Repository.init(storage, PASSWORD, kdf=FAST_KDF)
    before = object_digests(storage, ("",))
    with pytest.raises(RepositoryExists) as info:
        Repository.init(storage, "other password", kdf=FAST_KDF)
    assert storage.location in str(info.value)
    assert object_digests(storage, ("",)) == before  # nothing written by the refused init


def test_open_missing_repository(storage: Storage) -> None:
    with pytest.raises(RepositoryNotFound) as info:
        Repository.open(storage, PASSWORD)
    assert info.value.exit_code == 10
    assert "seawall init" in str(info.value)


def test_wrong_password(repo: Repository) -> None:
    with pytest.raises(WrongPassword) as info:
        Repository.open(repo.storage, "not the password")
    assert info.value.exit_code == 12
    assert "not the password" not in str(info.value)
    assert reopen(repo).key.secret == repo.key.secret


def small_tree(root: Path) -> Path:
    rng = random.Random(5)
    return make_files(
        root,
        {
            "a.bin": rng.randbytes(100_000),
            "sub/b.txt": b"hello\n" * 5000,
            "sub/empty": b"",
        },
    )


def test_several_passwords_open_the_same_repository(repo: Repository, tmp_path: Path) -> None:
    second = repo.add_key("second password", kdf=FAST_KDF)
    third = repo.add_key("third password", kdf=FAST_KDF)
    assert {k.id for k in repo.list_keys()} == {repo.key_id, second, third}
    result = backup(repo, [small_tree(tmp_path / "src")])

    views = [
        Repository.open(repo.storage, pw) for pw in (PASSWORD, "second password", "third password")
    ]
    assert [v.key_id for v in views] == [repo.key_id, second, third]
    for view in views:
        assert view.key.secret == repo.key.secret
        assert [s.id for s in view.list_snapshots()] == [result.snapshot.id]
        view.load_index()
        assert view.load_blob(result.snapshot.tree) == views[0].load_blob(result.snapshot.tree)


def test_remove_key(repo: Repository) -> None:
    other = repo.add_key("second password", kdf=FAST_KDF)
    with pytest.raises(UsageError, match="in use"):
        repo.remove_key(repo.key_id)
    with pytest.raises(UsageError):
        repo.remove_key("")  # ambiguous: matches both
    assert repo.remove_key(other[:10]) == other
    assert [k.id for k in repo.list_keys()] == [repo.key_id]
    with pytest.raises(WrongPassword):
        Repository.open(repo.storage, "second password")
    reopen(repo)


def test_changing_the_password_rewrites_no_data(repo: Repository, tmp_path: Path) -> None:
    result = backup(repo, [small_tree(tmp_path / "src")])
    before = object_digests(repo.storage)
    assert any(n.startswith("data/") for n in before)
    assert any(n.startswith("index/") for n in before)
    assert any(n.startswith("snapshots/") for n in before)

    # key passwd: add a key for the new password, then remove the old one through it.
    repo.add_key("new password", kdf=FAST_KDF)
    new = Repository.open(repo.storage, "new password")
    new.remove_key(repo.key_id)

    assert object_digests(repo.storage) == before
    with pytest.raises(WrongPassword):
        Repository.open(repo.storage, PASSWORD)
    assert new.key.secret == repo.key.secret
    assert new.load_snapshot(result.snapshot.id).tree == result.snapshot.tree


@pytest.mark.parametrize("kind", ["snapshots", "index", "locks"])
def test_object_round_trip(repo: Repository, kind: str) -> None:
    plaintext = b'{"hello": "world"}' * 50
    object_id = repo.save_object(kind, plaintext)
    name = f"{kind}/{object_id.hex()}"
    stored = repo.storage.get(name)
    assert storage_id(stored) == object_id
    assert b"hello" not in stored
    assert repo.load_object(kind, object_id) == plaintext
    assert reopen(repo).load_object(kind, object_id) == plaintext
    assert object_id in repo.list_ids(kind)


def test_tampered_object_is_detected(repo: Repository) -> None:
    object_id = repo.save_object("snapshots", b'{"x": 1}' * 20)
    name = f"snapshots/{object_id.hex()}"
    stored = repo.storage.get(name)
    for pos in (0, 16, 30, len(stored) // 2, len(stored) - 1):
        bad = bytearray(stored)
        bad[pos] ^= 0x40
        # Modified in place: the name no longer matches.
        repo.storage.put(name, bytes(bad))
        with pytest.raises(IntegrityError):
            repo.load_object("snapshots", object_id)
        # Modified and renamed to match: authentication still fails.
        forged = storage_id(bytes(bad))
        repo.storage.put(f"snapshots/{forged.hex()}", bytes(bad))
        with pytest.raises(IntegrityError):
            repo.load_object("snapshots", forged)
        repo.storage.delete(f"snapshots/{forged.hex()}")
    repo.storage.put(name, stored)
    assert repo.load_object("snapshots", object_id) == b'{"x": 1}' * 20


def test_object_cannot_pose_as_another_kind(repo: Repository) -> None:
    index_id = repo.save_object("index", b"payload")
    repo.storage.put(f"snapshots/{index_id.hex()}", repo.storage.get(f"index/{index_id.hex()}"))
    with pytest.raises(IntegrityError):
        repo.load_object("snapshots", index_id)


def test_another_repository_key_cannot_read(storage: Storage, tmp_path: Path) -> None:
    from seawall.storage import MemoryStorage

    a = Repository.init(storage, PASSWORD, kdf=FAST_KDF)
    b = Repository.init(MemoryStorage(), PASSWORD, kdf=FAST_KDF)
    object_id = a.save_object("snapshots", b"{}")
    b.storage.put(f"snapshots/{object_id.hex()}", a.storage.get(f"snapshots/{object_id.hex()}"))
    with pytest.raises(IntegrityError):
        b.load_object("snapshots", object_id)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def readable_without_key(stored: bytes) -> bytes:
    """Everything anyone can read from stored bytes without a key: the bytes
    themselves plus every zstd frame in them, decompressed (zstd codes its
    literals, so compressed plaintext would not show up as raw bytes)."""
    out = [stored]
    pos = stored.find(ZSTD_MAGIC)
    while pos >= 0:
        with contextlib.suppress(zstandard.ZstdError):  # random bytes that look like a frame
            out.append(zstandard.ZstdDecompressor().decompressobj().decompress(stored[pos:]))
        pos = stored.find(ZSTD_MAGIC, pos + 1)
    return b"".join(out)


MARKER = b"SEAWALL-PLAINTEXT-MARKER"
NAME_MARKER = "secret-filename-QX7Z"


def test_nothing_but_the_config_is_plaintext(repo: Repository, tmp_path: Path) -> None:
    rng = random.Random(9)
    src = tmp_path / "src-tree"
    files = {
        "compressible.txt": MARKER * 100,
        f"{NAME_MARKER}.csv": b"id,label\n" + MARKER + b"\n" * 10,
        # incompressible, so stored raw (uncompressed) inside its encrypted blob
        "weights.bin": rng.randbytes(50_000) + MARKER + rng.randbytes(50_000),
        f"dir-{NAME_MARKER}/nested.txt": MARKER,
    }
    make_files(src, files)
    os.symlink(f"/target-{NAME_MARKER}", src / "link")
    result = backup(repo, [src])
    assert not result.partial
    backup(repo, [src])  # a second snapshot, with a parent

    secret_values = [repo.key.secret, repo.key.encryption_key, repo.key.id_key]
    needles = [
        MARKER,
        MARKER[:12],
        NAME_MARKER.encode(),
        str(src).encode(),
        *(hashlib.sha256(d).digest() for d in files.values()),
        *(blake3.blake3(d).digest() for d in files.values()),
    ]
    for secret in secret_values:
        needles += [secret, secret.hex().encode(), base64.b64encode(secret)]

    names = [info.name for info in repo.storage.list()]
    kinds = {n.split("/", 1)[0] for n in names}
    assert kinds <= {"config", "keys", "data", "index", "snapshots", "locks"}
    assert {"config", "keys", "data", "index", "snapshots"} <= kinds
    for name in names:
        stored = repo.storage.get(name)
        readable = readable_without_key(stored)
        assert NAME_MARKER not in name
        for needle in needles:
            assert needle not in readable, f"{needle!r} readable in {name}"
            assert needle.hex() not in name
        if name == "config" or name.startswith("keys/"):
            continue  # public by design (checked below)
        # Sealed objects are named by their hash and are not JSON or text.
        assert name.rsplit("/", 1)[1] == storage_id(stored).hex()
        with pytest.raises(ValueError):
            json.loads(stored)
    # And it all reads back with the key.
    fresh = reopen(repo)
    assert [s.id for s in fresh.list_snapshots()] == [s.id for s in repo.list_snapshots()]


def test_config_is_public_json_without_secrets(repo: Repository) -> None:
    doc = json.loads(repo.storage.get("config"))
    assert set(doc) == {
        "format",
        "version",
        "id",
        "created",
        "chunker",
        "pack_size",
        "compression",
        "encryption",
    }
    assert doc["format"] == "seawall-repository"
    assert doc["id"] == repo.config.id
    assert doc["chunker"]["min_size"] == SMALL_CHUNKS.min_size
    assert doc["pack_size"] == SMALL_PACK
    text = repo.storage.get("config").decode()
    for secret in (repo.key.secret, repo.key.encryption_key, repo.key.id_key):
        assert secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text
    assert str(repo.key.chunker_seed) not in text
    for word in ("key", "secret", "password", "salt", "seed"):
        assert word not in json.dumps(list(doc) + list(doc["chunker"])).lower()
    assert PASSWORD not in text


def test_key_files_are_tied_to_their_name(repo: Repository) -> None:
    """A key file whose bytes no longer match its name opens nothing."""
    name = f"keys/{repo.key_id}"
    doc = json.loads(repo.storage.get(name))
    doc["hostname"] = "elsewhere"
    repo.storage.put(name, json.dumps(doc).encode())
    with pytest.raises(WrongPassword):
        Repository.open(repo.storage, PASSWORD)


def test_weakened_key_file_does_not_open_the_repository(repo: Repository) -> None:
    data = repo.storage.get(f"keys/{repo.key_id}")
    doc = json.loads(data)
    doc["kdf"]["memory_cost_kib"] = 8  # an attacker's cheaper guessing
    forged = json.dumps(doc).encode()
    repo.storage.delete(f"keys/{repo.key_id}")
    repo.storage.put(f"keys/{storage_id(forged).hex()}", forged)  # renamed to match
    with pytest.raises(WrongPassword):
        Repository.open(repo.storage, PASSWORD)


def test_key_cannot_open_another_repository(storage: Storage) -> None:
    from seawall.storage import MemoryStorage

    a = Repository.init(storage, PASSWORD, kdf=FAST_KDF)
    other = MemoryStorage()
    Repository.init(other, "other", kdf=FAST_KDF)
    for old in list(other.list("keys/")):
        other.delete(old.name)
    other.put(f"keys/{a.key_id}", storage.get(f"keys/{a.key_id}"))  # same password, moved key
    with pytest.raises(WrongPassword):
        Repository.open(other, PASSWORD)


def test_a_delta_chain_longer_than_the_format_allows_is_refused(
    local_repo: tuple[Path, Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from seawall.errors import SeawallError
    from seawall.repository import repo as repo_module
    from seawall.repository.repo import MAX_READ_CHAIN, DeltaBase

    # A writer that ignores the bounds (seawall never writes a chain it would refuse).
    monkeypatch.setattr(repo_module, "MAX_DELTA_DEPTH", 40)
    monkeypatch.setattr(repo_module, "MAX_READ_CHAIN", 40)
    _path, repo = local_repo
    rng = np.random.default_rng(0)
    data = rng.standard_normal(4096).astype(np.float32)
    chain = []
    writer = repo.writer()
    prev: DeltaBase | None = None
    for _ in range(MAX_READ_CHAIN + 2):
        data = (data * (1 + 0.01 * rng.standard_normal(4096))).astype(np.float32)
        raw = data.tobytes()
        bid = writer.add(DATA, raw, width=4, base=prev)
        writer.flush()
        chain.append((bid, raw))
        prev = DeltaBase(bid, raw)
    writer.close()
    monkeypatch.setattr(repo_module, "MAX_READ_CHAIN", MAX_READ_CHAIN)  # the reader's bound
    assert len(repo.index.bases) == MAX_READ_CHAIN + 1
    bid, raw = chain[MAX_READ_CHAIN - 1]
    assert repo.load_blob(bid) == raw  # 16 blobs decoded: allowed
    with pytest.raises(SeawallError, match="chain of more than 16"):
        repo.load_blob(chain[MAX_READ_CHAIN][0])
