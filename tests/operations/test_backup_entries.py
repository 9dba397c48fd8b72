"""Backups of entries (what sources produce): files on disk and streams laid out
as an asset's tree, recorded with the asset's facts, and restored byte for byte."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest

from seawall.engine.archiver import PathEntry, StreamEntry
from seawall.errors import SeawallError, UsageError
from seawall.operations.backup import backup
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from tests.conftest import make_files, reopen, tree_digest
from tests.operations.helpers import random_bytes


def _stream(data: bytes) -> StreamEntry:
    @contextmanager
    def opener() -> Iterator[BinaryIO]:
        yield io.BytesIO(data)

    return StreamEntry("dump/db.sql", opener)


def test_entries_round_trip_and_asset_is_recorded(repo: Repository, tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"a.txt": b"alpha", "sub/b.bin": random_bytes(200_000, 3)})
    dump = random_bytes(300_000, seed=7)
    asset = {"name": "features", "kind": "postgres", "consistency": {"lsn": "0/16B3748"}}
    entries = [PathEntry("files", src), PathEntry("one.txt", src / "a.txt"), _stream(dump)]
    result = backup(repo, [], entries=entries, asset=asset)
    snap = reopen(repo).load_snapshot(result.snapshot.id)
    assert snap.asset == asset
    assert snap.paths == ["asset:features"]
    out = tmp_path / "out"
    restore(reopen(repo), snap, out)
    assert (out / "dump/db.sql").read_bytes() == dump
    assert os.stat(out / "dump/db.sql").st_mode & 0o777 == 0o600
    assert (out / "one.txt").read_bytes() == b"alpha"
    assert tree_digest(out / "files") == tree_digest(src)
    # The second backup of the asset finds the first as its parent.
    again = backup(repo, [], entries=entries, asset=asset)
    assert again.parent is not None and again.parent.id == snap.id
    assert again.stats.files_unmodified == 3  # the files on disk were not read again


def test_bad_entries_are_refused(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="asset name"):
        backup(repo, [], entries=[_stream(b"x")])
    with pytest.raises(SeawallError, match="invalid entry path"):
        backup(repo, [], entries=[StreamEntry("../x", _stream(b"").open)], asset={"name": "a"})
    assert repo.list_snapshots() == []


def test_records_are_sealed_and_listed_by_kind(repo: Repository) -> None:
    first = repo.save_record("drill", {"passed": True, "assets": {}})
    repo.save_record("audit", {"op": "backup"})
    repo.save_record("drill", {"passed": False, "time": "2999-01-01T00:00:00+00:00"})
    drills = reopen(repo).list_records("drill")
    assert [d["passed"] for d in drills] == [True, False]
    assert drills[0]["id"] == first.hex() and drills[0]["kind"] == "drill"
    # Sealed: the plaintext is nowhere in the store.
    for info in repo.storage.list("records/"):
        assert b"passed" not in repo.storage.get(info.name)
    with pytest.raises(UsageError):
        repo.save_record("../x", {})
