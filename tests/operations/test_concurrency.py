"""Several processes on one repository: concurrent backups, prune's exclusive lock,
and stale locks of dead processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from seawall.errors import RepositoryLocked
from seawall.operations.backup import BackupResult, backup
from seawall.operations.check import check
from seawall.operations.prune import prune
from seawall.repository.lock import Lock, list_locks
from seawall.repository.repo import Repository
from seawall.storage import FaultyStorage, LocalStorage
from tests.conftest import PASSWORD, make_files
from tests.operations.helpers import (
    new_repo,
    open_repo,
    random_bytes,
    restore_and_compare,
    run_cli,
    start_cli,
)


def two_trees(root: Path) -> tuple[Path, Path]:
    """Two different trees that also share a file, so both writers race to store it."""
    shared = random_bytes(400_000, 10)
    a = make_files(root / "a", {"shared.bin": shared, "only-a.bin": random_bytes(700_000, 11)})
    b = make_files(root / "b", {"shared.bin": shared, "sub/only-b.bin": random_bytes(900_000, 12)})
    return a, b


def assert_all_restore(repo_dir: Path, out: Path, count: int) -> None:
    repo = open_repo(repo_dir)
    assert check(repo, read_data=True).ok
    snaps = repo.list_snapshots()
    assert len(snaps) == count
    for i, snap in enumerate(snaps):
        restore_and_compare(repo, snap, out / str(i))


def test_two_backups_at_once_in_threads(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    new_repo(LocalStorage(repo_dir))
    trees = two_trees(tmp_path)
    start = threading.Barrier(2)
    results: dict[Path, BackupResult] = {}

    def run(src: Path) -> None:
        repo = Repository.open(LocalStorage(repo_dir), PASSWORD)  # its own process, in effect
        start.wait()
        results[src] = backup(repo, [src])

    threads = [threading.Thread(target=run, args=(src,)) for src in trees]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(trees), "a backup failed"
    assert_all_restore(repo_dir, tmp_path / "out", count=2)
    # Both may have stored the shared blobs, in different packs: prune must cope.
    prune(open_repo(repo_dir))
    assert_all_restore(repo_dir, tmp_path / "after-prune", count=2)


def test_two_backup_processes_at_once(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    new_repo(LocalStorage(repo_dir))
    procs = [start_cli(repo_dir, "backup", str(src)) for src in two_trees(tmp_path)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert_all_restore(repo_dir, tmp_path / "out", count=2)


def test_prune_is_refused_while_a_backup_runs(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    new_repo(LocalStorage(repo_dir))
    src, _ = two_trees(tmp_path)
    storing, go_on = threading.Event(), threading.Event()

    def pause_at_first_pack(op: str, name: str) -> None:
        if op == "put" and name.startswith("data/") and not storing.is_set():
            storing.set()
            assert go_on.wait(60)

    writer = Repository.open(FaultyStorage(LocalStorage(repo_dir), pause_at_first_pack), PASSWORD)
    results: list[BackupResult] = []
    thread = threading.Thread(target=lambda: results.append(backup(writer, [src])))
    thread.start()
    try:
        assert storing.wait(60), "the backup never stored a pack"
        with pytest.raises(RepositoryLocked, match="shared lock"):
            prune(open_repo(repo_dir))
        done = run_cli(repo_dir, "prune")
        assert done.returncode == 11, done.stderr
        assert "locked" in done.stderr and "Traceback" not in done.stderr
    finally:
        go_on.set()
        thread.join()
    assert results, "the backup failed"
    assert list_locks(open_repo(repo_dir)) == [], "a refused prune must not leave its lock"
    assert_all_restore(repo_dir, tmp_path / "out", count=1)


def test_backup_is_refused_while_prune_holds_the_lock(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    src, _ = two_trees(tmp_path)
    with Lock(new_repo(LocalStorage(repo_dir)), exclusive=True):
        done = run_cli(repo_dir, "backup", str(src))
    assert done.returncode == 11, done.stderr
    assert "exclusive lock" in done.stderr
    assert open_repo(repo_dir).list_snapshots() == []


HOLD_LOCK = """
import sys, time
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
lock = Lock(Repository.open(LocalStorage(sys.argv[1]), sys.argv[2]), exclusive=True)
print("locked", flush=True)
time.sleep(600)
"""


def test_lock_of_a_killed_process_is_stale_and_unlock_removes_it(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    new_repo(LocalStorage(repo_dir))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(repo_dir), PASSWORD],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    repo = open_repo(repo_dir)
    with pytest.raises(RepositoryLocked):  # while it lives, its exclusive lock holds
        Lock(repo, exclusive=False)
    holder.kill()
    holder.communicate()

    [dead] = list_locks(repo)
    assert dead.pid == holder.pid and dead.is_stale()
    src, _ = two_trees(tmp_path)
    backup(repo, [src])  # the dead process's lock does not block
    prune(repo)

    with Lock(repo, exclusive=False):  # a live lock survives unlock
        done = run_cli(repo_dir, "unlock")
        assert done.returncode == 0, done.stderr
        remaining = list_locks(repo)
    assert [lock.pid for lock in remaining] == [os.getpid()]
    assert list_locks(repo) == []
    assert "removed 1 lock" in done.stdout
    assert_all_restore(repo_dir, tmp_path / "out", count=1)
