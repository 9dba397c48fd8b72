"""Operations on a faulty store: with 10% of requests failing transiently (errors,
timeouts, short reads), backup, restore and copy still complete with every byte
right; with the store gone for good, they stop with a clear error and the
repository stays valid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from seawall.errors import StorageError
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.copy import CopyResult, copy
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from seawall.storage import ChaosStorage, FaultPlan, MemoryStorage, RetryingStorage, Storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files
from tests.operations.helpers import new_repo, open_repo, random_bytes, restored_path, tree_state

OTHER_PASSWORD = "the target's own password"

#: 10% of requests fail: half as errors, half as timeouts; and 10% of ranged reads come back short.
TEN_PERCENT = FaultPlan(error_rate=0.05, timeout_rate=0.05, timeout=0.001, short_read_rate=0.1)


def flaky(inner: Storage, seed: int, plan: FaultPlan = TEN_PERCENT) -> tuple[Storage, ChaosStorage]:
    """``inner`` behind injected faults, behind retries with tiny delays."""
    chaos = ChaosStorage(inner, plan, seed=seed)
    return RetryingStorage(chaos, attempts=12, base_delay=0.0005), chaos


def build_tree(root: Path) -> Path:
    return make_files(
        root,
        {
            "models/a.bin": random_bytes(1_500_000, 1),
            "models/b.bin": random_bytes(700_000, 2),
            "data/rows.csv": b"id,value\n" + b"7,0.25\n" * 30_000,
            "data/empty": b"",
        },
    )


def new_target(storage: Storage) -> Repository:
    return Repository.init(
        storage, OTHER_PASSWORD, kdf=FAST_KDF, chunker=SMALL_CHUNKS, pack_size=SMALL_PACK
    )


def test_backup_restore_and_copy_complete_with_ten_percent_failures(tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    expected = tree_state(src)
    inner_a, inner_b = MemoryStorage(), MemoryStorage()
    new_repo(inner_a)
    new_target(inner_b)
    store_a, chaos_a = flaky(inner_a, seed=1)
    store_b, chaos_b = flaky(inner_b, seed=2)

    repo = Repository.open(store_a, PASSWORD)
    snap = backup(repo, [src]).snapshot
    restore(Repository.open(store_a, PASSWORD), snap, tmp_path / "out-a")
    assert tree_state(restored_path(tmp_path / "out-a", src)) == expected

    result = copy(Repository.open(store_a, PASSWORD), Repository.open(store_b, OTHER_PASSWORD))
    assert len(result.copied) == 1
    target = Repository.open(store_b, OTHER_PASSWORD)
    restore(target, target.list_snapshots()[0], tmp_path / "out-b")
    assert tree_state(restored_path(tmp_path / "out-b", src)) == expected

    for chaos in (chaos_a, chaos_b):
        assert chaos.injected["error"] and chaos.injected["timeout"], chaos.injected
    assert chaos_a.injected["short_read"] and chaos_b.injected["short_read"]
    assert check(open_repo(inner_a), read_data=True).ok
    target = Repository.open(inner_b, OTHER_PASSWORD)
    assert check(target, read_data=True).ok


# --- a store gone for good ----------------------------------------------------------------------


def calls_of(run: Callable[[Storage], object], inner: Storage) -> int:
    """How many store calls ``run`` makes when nothing fails."""
    chaos = ChaosStorage(inner)
    run(chaos)
    return chaos.calls


def gone_midway(inner: Storage, calls: int) -> tuple[Storage, ChaosStorage]:
    return flaky(inner, seed=0, plan=FaultPlan(gone_after=calls // 2))


def assert_clear(err: StorageError) -> None:
    assert "store unreachable" in str(err) and not err.transient


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, MemoryStorage]:
    """A tree and a repository (in memory) holding one snapshot of half of it."""
    src = build_tree(tmp_path / "src")
    storage = MemoryStorage()
    backup(new_repo(storage), [src / "data"])
    return src, storage


def fresh(storage: MemoryStorage) -> MemoryStorage:
    copy_ = MemoryStorage()
    copy_.objects = dict(storage.objects)
    return copy_


def test_backup_stops_clearly_and_the_repository_stays_valid(
    world: tuple[Path, MemoryStorage], tmp_path: Path
) -> None:
    src, storage = world
    calls = calls_of(lambda s: backup(Repository.open(s, PASSWORD), [src]), fresh(storage))
    store, chaos = gone_midway(storage, calls)
    with pytest.raises(StorageError) as err:
        backup(Repository.open(store, PASSWORD), [src])
    assert_clear(err.value)
    assert chaos.gone

    repo = open_repo(storage)
    result = check(repo, read_data=True)
    assert result.errors == [] and result.damaged == {}
    assert len(repo.list_snapshots()) == 1
    snap = backup(repo, [src]).snapshot  # the store is back: a rerun completes
    restore(open_repo(storage), snap, tmp_path / "out")
    assert tree_state(restored_path(tmp_path / "out", src)) == tree_state(src)


def test_restore_stops_clearly(world: tuple[Path, MemoryStorage], tmp_path: Path) -> None:
    src, storage = world
    snap = backup(open_repo(storage), [src]).snapshot
    calls = calls_of(
        lambda s: restore(Repository.open(s, PASSWORD), snap, tmp_path / "probe"), storage
    )
    store, _chaos = gone_midway(storage, calls)
    with pytest.raises(StorageError) as err:
        restore(Repository.open(store, PASSWORD), snap, tmp_path / "out")
    assert_clear(err.value)
    assert "restore stopped" in str(err.value) and "run the restore again" in str(err.value)

    repo = open_repo(storage)
    assert check(repo, read_data=True).ok
    restore(repo, snap, tmp_path / "out")  # the store is back: a rerun completes
    assert tree_state(restored_path(tmp_path / "out", src)) == tree_state(src)


@pytest.mark.parametrize("side", ["source", "target"])
def test_copy_stops_clearly_and_both_repositories_stay_valid(
    world: tuple[Path, MemoryStorage], tmp_path: Path, side: str
) -> None:
    src_tree, source = world
    backup(open_repo(source), [src_tree])
    target = MemoryStorage()
    new_target(target)

    def run(s: Storage, t: Storage) -> CopyResult:
        return copy(Repository.open(s, PASSWORD), Repository.open(t, OTHER_PASSWORD))

    if side == "source":
        calls = calls_of(lambda s: run(s, fresh(target)), fresh(source))
        store, _ = gone_midway(source, calls)
        args: tuple[Storage, Storage] = (store, target)
    else:
        calls = calls_of(lambda t: run(fresh(source), t), fresh(target))
        store, _ = gone_midway(target, calls)
        args = (source, store)
    with pytest.raises(StorageError) as err:
        run(*args)
    assert_clear(err.value)

    assert check(open_repo(source), read_data=True).ok
    dst = Repository.open(target, OTHER_PASSWORD)
    result = check(dst, read_data=True)
    assert result.errors == [] and result.damaged == {}
    done = run(source, target)  # both stores are back: a rerun completes
    assert len(done.copied) + len(done.skipped) == 2
    dst = open_repo_as(target, OTHER_PASSWORD)
    assert check(dst, read_data=True).ok
    latest = dst.list_snapshots()[-1]
    restore(dst, latest, tmp_path / "out")
    assert tree_state(restored_path(tmp_path / "out", src_tree)) == tree_state(src_tree)


def open_repo_as(storage: Storage, password: str) -> Repository:
    repo = Repository.open(storage, password)
    repo.load_index()
    return repo
