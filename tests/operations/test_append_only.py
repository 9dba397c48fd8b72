"""Repositories behind ``seawall repo-server --append-only``: backups go in, nothing comes out.

The attacker owns the production host: the backup client's token and the
repository password. Against an append-only server they can add objects but
cannot delete or change one, so every snapshot still restores bit-identical
(after ``repair index`` if they used the password to add an index hiding data).
Forget and prune, which must delete, refuse up front and change nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seawall.errors import ObjectExists, StorageError
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.forget import KeepPolicy, forget, forget_ids
from seawall.operations.prune import prune
from seawall.operations.repair import repair_index
from seawall.repository.index import IndexObject
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage, RetryingStorage, Storage
from tests.conftest import FAST_KDF, PASSWORD, make_files
from tests.operations.helpers import (
    Entry,
    new_repo,
    open_repo,
    random_bytes,
    restore_and_compare,
    tree_state,
)
from tests.rest_server import RestServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    server = RestServer(tmp_path_factory.mktemp("append-only") / "root", append_only=True)
    yield server
    server.stop()


@pytest.fixture
def client(server: RestServer) -> Iterator[Callable[[], Storage]]:
    """Makes stores as ``open_storage("rest:...")`` does (retries around the client),
    all closed after the test."""
    made: list[Storage] = []

    def make() -> Storage:
        made.append(RetryingStorage(server.storage(), base_delay=0.01))
        return made[-1]

    yield make
    for store in made:
        store.close()


def on_disk(root: Path) -> dict[str, bytes]:
    """Every object the server holds, outside locks/ (which clients may remove)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith("locks/")
    }


@pytest.fixture
def two_snapshots(
    server: RestServer, client: Callable[[], Storage], tmp_path: Path
) -> tuple[Repository, list[tuple[Path, dict[str, Entry]]]]:
    """A repository on the append-only server with two snapshots of a changing tree,
    and what each snapshot must restore to."""
    server.reset().close()
    repo = new_repo(client())
    src = make_files(
        tmp_path / "src",
        {
            "model.safetensors": random_bytes(600_000, 1),
            "data/train.csv": b"id,label\n"
            + b"".join(b"%d,%d\n" % (i, i % 3) for i in range(9000)),
            "notes.txt": b"v1\n",
        },
    )
    expected = []
    for version in (1, 2):
        if version == 2:
            make_files(src, {"notes.txt": b"v2\n", "new.bin": random_bytes(300_000, 2)})
            (src / "data" / "train.csv").unlink()
        backup(repo, [src])
        expected.append((src, tree_state(src, meta=False)))
    return repo, expected


def restores_exactly(
    storage: Storage, expected: list[tuple[Path, dict[str, Entry]]], target: Path
) -> None:
    """Every snapshot, opened afresh, restores to what was backed up; check finds nothing."""
    repo = open_repo(storage)
    snaps = repo.list_snapshots()
    assert len(snaps) == len(expected)
    for i, (snap, (src, state)) in enumerate(zip(snaps, expected, strict=True)):
        restore_and_compare(repo, snap, target / str(i), {src: state})
    result = check(repo, read_data=True)
    assert result.ok, result.errors


def test_attacker_with_the_clients_token_cannot_destroy_backups(
    server: RestServer,
    client: Callable[[], Storage],
    two_snapshots: tuple[Repository, list[tuple[Path, dict[str, Entry]]]],
    tmp_path: Path,
) -> None:
    repo, expected = two_snapshots
    before = on_disk(server.root)
    kinds = {name.split("/", 1)[0] for name in before}
    assert {"config", "keys", "data", "index", "snapshots"} <= kinds
    attacker = client()  # the very token the backup client uses
    for name, data in before.items():
        with pytest.raises(StorageError, match="append-only"):
            attacker.delete(name)
        for garbage in (b"", b"ransom", os.urandom(len(data)), data[: len(data) // 2]):
            with pytest.raises(StorageError, match="append-only"):
                attacker.put(name, garbage)
            with pytest.raises(ObjectExists):
                attacker.put(name, garbage, if_absent=True)
    # With the password too, seawall's own verbs cannot delete anything either.
    with pytest.raises(StorageError, match="append-only"):
        forget(repo, KeepPolicy(last=1))
    with pytest.raises(StorageError, match="append-only"):
        forget_ids(repo, [s.id.hex() for s in repo.list_snapshots()])
    # A password change adds a key (appending is allowed), then cannot delete the old one.
    with pytest.raises(StorageError, match="append-only"):
        repo.change_password("the attacker's password", FAST_KDF)
    # Nothing the attacker touched changed; all they could do was add a key.
    after = on_disk(server.root)
    assert {n: d for n, d in after.items() if n in before} == before
    assert [n.split("/", 1)[0] for n in set(after) - set(before)] == ["keys"]
    Repository.open(client(), PASSWORD)  # the old password still opens it
    restores_exactly(client(), expected, tmp_path / "restored")

    # With the password the attacker can hide data, not destroy it: an index object that
    # claims to supersede every real one. check sees the damage, and repair index (which
    # only adds objects, so it works through the server) brings every snapshot back.
    repo.save_index(IndexObject.from_packs([], repo.list_ids("index")))
    assert not check(open_repo(client())).ok
    assert repair_index(open_repo(client())).packs_indexed == len(
        [n for n in before if n.startswith("data/")]
    )
    restores_exactly(client(), expected, tmp_path / "repaired")


def test_forget_and_prune_refuse_up_front_and_change_nothing(
    server: RestServer,
    client: Callable[[], Storage],
    two_snapshots: tuple[Repository, list[tuple[Path, dict[str, Entry]]]],
    tmp_path: Path,
) -> None:
    repo, expected = two_snapshots
    before = on_disk(server.root)
    with pytest.raises(StorageError) as info:
        forget(repo, KeepPolicy(last=1))
    message = str(info.value)
    assert "forget would remove 1 snapshot" in message
    assert (
        "append-only" in message and "server host" in message and "Nothing was changed" in message
    )
    assert not info.value.transient
    # A dry run deletes nothing, so it works through the server.
    groups = forget(repo, KeepPolicy(last=1), dry_run=True)
    assert sum(len(g.remove) for g in groups) == 1
    assert on_disk(server.root) == before
    assert list((server.root / "locks").iterdir()) == []  # the locks were released
    restores_exactly(client(), expected, tmp_path / "r1")

    # On the server host, against the directory itself, the admin may forget ...
    admin = LocalStorage(server.root)
    forget(open_repo(admin), KeepPolicy(last=1))
    before = on_disk(server.root)
    # ... and then prune has work to do (a dry run says so), which the server cannot allow.
    plan = prune(open_repo(client()), dry_run=True)
    assert plan.packs_deleted + plan.packs_repacked > 0
    with pytest.raises(StorageError) as info:
        prune(open_repo(client()))
    assert "prune would delete" in str(info.value) and "append-only" in str(info.value)
    assert on_disk(server.root) == before  # not even a repacked pack or a new index
    restores_exactly(client(), expected[1:], tmp_path / "r2")
    # The admin's prune on the host works, and the repository stays whole for clients.
    done = prune(open_repo(admin))
    assert (done.packs_deleted, done.packs_repacked) == (plan.packs_deleted, plan.packs_repacked)
    assert on_disk(server.root) != before
    restores_exactly(client(), expected[1:], tmp_path / "r3")


def test_key_add_and_snapshots_work_through_the_server(
    client: Callable[[], Storage],
    two_snapshots: tuple[Repository, list[tuple[Path, dict[str, Entry]]]],
) -> None:
    repo, _expected = two_snapshots
    key_id = repo.add_key("second password", FAST_KDF)
    fresh = Repository.open(client(), "second password")
    assert fresh.key_id == key_id
    assert [s.id for s in fresh.list_snapshots()] == [s.id for s in repo.list_snapshots()]
    assert {k.id for k in Repository.open(client(), PASSWORD).list_keys()} == {
        repo.key_id,
        key_id,
    }
    # Removing a key is a delete: refused, and both passwords still open the repository.
    with pytest.raises(StorageError, match="append-only"):
        fresh.remove_key(repo.key_id)
    Repository.open(client(), PASSWORD)
    Repository.open(client(), "second password")
