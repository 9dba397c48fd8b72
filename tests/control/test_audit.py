"""The audit log's hash chain: appended in order, even by racing writers; an entry
edited, removed, reordered or replaced is found, and the first bad one named."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from seawall.control.audit import GENESIS, AuditLog, Entry, digest, select, verify
from seawall.errors import AuditError, ObjectNotFound
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository
from seawall.storage import Storage
from tests.conftest import FAST_KDF, PASSWORD, reopen


@pytest.fixture
def repo(local_repo: tuple[Path, Repository]) -> Repository:
    """On local disk: the chain's logic does not depend on the store (the racing test
    runs on S3 too)."""
    return local_repo[1]


def _append(log: AuditLog, n: int, **kw: Any) -> list[Entry]:
    return [
        log.append(
            user=kw.get("user", "alice"),
            via="api",
            host="h",
            operation=kw.get("operation", "backup"),
            outcome="ok",
            assets=kw.get("assets", [f"asset{i}"]),
        )
        for i in range(n)
    ]


def _check(repo: Repository, anchor: tuple[int, str] | None = None) -> Any:
    entries, unreadable = AuditLog(reopen(repo)).entries()
    return verify(entries, unreadable, anchor=anchor)


def _rewrite(repo: Repository, entry: Entry, **changes: Any) -> None:
    """What an attacker with the key can do: replace an entry's record by another."""
    doc = json.loads(repo.load_object("records", bytes.fromhex(entry.id)))
    doc.update(changes)
    repo.delete_object("records", bytes.fromhex(entry.id))
    repo.save_object("records", json.dumps(doc).encode())


def test_entries_chain_in_order_and_verify(repo: Repository) -> None:
    written = _append(AuditLog(repo), 4)
    assert [e.seq for e in written] == [1, 2, 3, 4]
    assert written[0].prev == GENESIS
    assert all(b.prev == a.digest for a, b in itertools.pairwise(written))
    result = _check(repo, anchor=(4, written[-1].digest))
    assert result.ok and result.entries == 4 and result.head == written[-1]
    entries, _ = AuditLog(reopen(repo)).entries()
    assert entries == written  # what another process reads is what was written


def test_an_edited_entry_is_named(repo: Repository) -> None:
    written = _append(AuditLog(repo), 5)
    _rewrite(repo, written[2], outcome="failed", user="mallory")
    result = _check(repo)
    assert not result.ok
    assert result.first_bad is not None and result.first_bad.seq == 3
    assert "entry 3 was changed" in result.first_bad.message


def test_a_removed_entry_is_named(repo: Repository) -> None:
    written = _append(AuditLog(repo), 5)
    repo.delete_object("records", bytes.fromhex(written[1].id))
    result = _check(repo)
    assert result.first_bad is not None and result.first_bad.seq == 2
    assert "entry 2 is missing" in result.first_bad.message


def test_reordered_entries_are_named(repo: Repository) -> None:
    written = _append(AuditLog(repo), 5)
    _rewrite(repo, written[2], seq=4)
    _rewrite(repo, written[3], seq=3)
    result = _check(repo)
    assert result.first_bad is not None and result.first_bad.seq == 3
    assert "reordered" in result.first_bad.message


def test_a_replaced_record_object_is_found(repo: Repository) -> None:
    """Without the key: other bytes under an entry's name."""
    written = _append(AuditLog(repo), 3)
    name = f"records/{written[1].id}"
    data = bytearray(repo.storage.get(name))
    data[40] ^= 1
    repo.storage.delete(name)
    repo.storage.put(name, bytes(data))
    result = _check(repo)
    assert result.problems[0].record == written[1].id
    assert "cannot be read" in result.problems[0].message
    assert any(p.seq == 2 and "missing" in p.message for p in result.problems)


def test_entries_cut_off_the_end_are_found_with_an_anchor(repo: Repository) -> None:
    written = _append(AuditLog(repo), 4)
    anchor = (4, written[-1].digest)
    repo.delete_object("records", bytes.fromhex(written[-1].id))
    assert _check(repo).ok, "without an anchor, a shorter log is a valid log"
    result = _check(repo, anchor)
    assert result.first_bad is not None and result.first_bad.seq == 4
    assert "removed" in result.first_bad.message
    # the last entry rewritten (by someone with the key): only the anchor tells
    _append(AuditLog(reopen(repo)), 1)
    entries, _ = AuditLog(reopen(repo)).entries()
    _rewrite(repo, entries[-1], detail="nothing happened")
    assert _check(repo).ok
    assert not _check(repo, (4, entries[-1].digest)).ok


def test_a_fork_is_reported(repo: Repository) -> None:
    written = _append(AuditLog(repo), 2)
    twin = {"kind": "audit", "seq": 2, "prev": written[0].digest, "time": written[1].time}
    repo.save_object("records", json.dumps(twin).encode())
    result = _check(repo)
    assert result.first_bad is not None and result.first_bad.seq == 2
    assert "exists twice" in result.first_bad.message


@pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)
def test_racing_appenders_never_fork_the_chain(storage: Storage) -> None:
    """Writers each with its own Repository object (as separate processes)."""
    repo = Repository.init(storage, PASSWORD, kdf=FAST_KDF)
    logs = [AuditLog(reopen(repo)) for _ in range(5)]
    errors: list[BaseException] = []

    def work(log: AuditLog) -> None:
        try:
            _append(log, 3)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = _check(repo)
    assert result.ok, result.problems
    assert result.entries == 15


def test_appending_waits_for_another_appender_not_for_repository_locks(repo: Repository) -> None:
    log = AuditLog(repo, wait=0.5)
    with Lock(repo, exclusive=True):  # a prune: the audit log does not wait for it
        _append(log, 1)
    with Lock(repo, exclusive=False, purpose="audit"), pytest.raises(AuditError, match="appending"):
        _append(log, 1)
    with Lock(repo, exclusive=False, purpose="audit"):
        Lock(repo, exclusive=True).release()  # and a prune does not wait for it
    assert _check(repo).entries == 1


def test_append_failure_is_an_audit_error_and_leaves_the_log_valid(repo: Repository) -> None:
    log = AuditLog(repo)
    _append(log, 1)

    def broken(*args: Any, **kw: Any) -> None:
        raise ObjectNotFound("the store went away")

    repo.save_object = broken  # type: ignore[method-assign]
    with pytest.raises(AuditError, match="cannot append"):
        _append(log, 1)
    assert _check(repo).ok


def test_canonical_hash_covers_everything_but_the_id() -> None:
    doc = {"seq": 1, "prev": GENESIS, "time": "t", "id": "x"}
    assert digest(doc) == digest({**doc, "id": "y"})
    assert digest(doc) != digest({**doc, "time": "u"})


def test_select_filters_by_time_user_asset_and_operation(repo: Repository) -> None:
    log = AuditLog(repo)
    _append(log, 1, user="alice", operation="backup", assets=["data"])
    _append(log, 1, user="bob", operation="user.add", assets=[])
    _append(log, 1, user="bob", operation="restore", assets=["data", "models"])
    entries, _ = log.entries()
    assert [e.seq for e in select(entries, user="bob")] == [2, 3]
    assert [e.seq for e in select(entries, asset="data")] == [1, 3]
    assert [e.seq for e in select(entries, operation="user")] == [2]
    assert [e.seq for e in select(entries, operation="us")] == []
    now = datetime.now(UTC)
    assert len(select(entries, since=now - timedelta(minutes=1), until=now)) == 3
    assert select(entries, since=now + timedelta(seconds=5)) == []


def test_a_replica_gets_the_log_and_it_verifies_there(repo: Repository, tmp_path: Path) -> None:
    from seawall.control.audit import copy_audit_log
    from seawall.storage import LocalStorage

    written = _append(AuditLog(repo), 3)
    replica = Repository.init(LocalStorage(tmp_path / "replica"), PASSWORD, kdf=FAST_KDF)
    assert copy_audit_log(reopen(repo), replica) == 3
    _append(AuditLog(repo), 2)
    assert copy_audit_log(reopen(repo), replica) == 2  # only what it lacks
    assert copy_audit_log(reopen(repo), replica) == 0
    result = _check(replica)
    assert result.ok and result.entries == 5, result
    assert result.head is not None and result.head.seq == 5
    # The same entries, the same hashes: the chain is the primary's.
    copies, _ = AuditLog(reopen(replica)).entries()
    assert [e.digest for e in copies[:3]] == [e.digest for e in written]
