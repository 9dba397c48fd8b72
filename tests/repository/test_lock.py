"""Locks: shared with shared, exclusive alone, stale locks of dead processes ignored."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from seawall.errors import RepositoryLocked
from seawall.repository.lock import STALE_AFTER, Lock, list_locks, remove_locks
from seawall.repository.repo import Repository


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant_lock(
    repo: Repository,
    *,
    pid: int,
    hostname: str | None = None,
    exclusive: bool = False,
    age: float = 0.0,
    username: str = "alice",
) -> str:
    doc = {
        "exclusive": exclusive,
        "hostname": hostname or socket.gethostname(),
        "pid": pid,
        "username": username,
        "time": time.time() - age,
    }
    return repo.save_object("locks", json.dumps(doc).encode()).hex()


def test_shared_locks_coexist(repo: Repository) -> None:
    with Lock(repo, exclusive=False) as a, Lock(repo, exclusive=False) as b:
        held = list_locks(repo)
        assert len(held) == 2
        assert not any(info.exclusive for info in held)
        assert a is not b
    assert list_locks(repo) == []


@pytest.mark.parametrize(("first", "second"), [(False, True), (True, False), (True, True)])
def test_exclusive_conflicts_name_the_holder(repo: Repository, first: bool, second: bool) -> None:
    with Lock(repo, exclusive=first):
        with pytest.raises(RepositoryLocked) as info:
            Lock(repo, exclusive=second)
        message = str(info.value)
        assert f"PID {os.getpid()}" in message
        assert socket.gethostname() in message
        assert ("exclusive" if first else "shared") in message
        assert "seawall unlock" in message
        assert info.value.exit_code == 11
        # The refused lock removed its own object.
        assert len(list_locks(repo)) == 1
    assert list_locks(repo) == []


def test_live_lock_elsewhere_blocks(repo: Repository) -> None:
    plant_lock(repo, pid=4242, hostname="other-host", exclusive=True, username="bob")
    with pytest.raises(RepositoryLocked, match="PID 4242 on other-host \\(bob\\)"):
        Lock(repo, exclusive=False)


def test_stale_lock_of_dead_process_is_ignored_and_removed(repo: Repository) -> None:
    stale = plant_lock(repo, pid=dead_pid(), exclusive=True)
    old = plant_lock(repo, pid=1, hostname="other-host", exclusive=True, age=STALE_AFTER + 60)
    live = plant_lock(repo, pid=os.getpid(), hostname="other-host")  # not provably dead
    assert {i.id for i in list_locks(repo) if i.is_stale()} == {stale, old}
    with Lock(repo, exclusive=False) as mine:
        assert mine is not None
        removed = remove_locks(repo)
        assert {i.id for i in removed} == {stale, old}
        remaining = {i.id for i in list_locks(repo)}
        assert live in remaining and len(remaining) == 2  # the live one and mine
    assert {i.id for i in list_locks(repo)} == {live}


def test_remove_all_locks(repo: Repository) -> None:
    ids = {plant_lock(repo, pid=os.getpid()), plant_lock(repo, pid=1, hostname="h", exclusive=True)}
    assert remove_locks(repo) == []  # none is stale
    assert {i.id for i in remove_locks(repo, all_locks=True)} == ids
    assert list_locks(repo) == []
    with Lock(repo, exclusive=True):
        pass
