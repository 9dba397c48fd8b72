"""The SQLite source: an online backup that is consistent while another process writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seawall.errors import SourceError, UsageError
from seawall.repository.repo import Repository
from seawall.sources.sqlite import SqliteSource
from tests.sources.helpers import bring_back, capture_and_store

WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30)
i = 0
while True:
    i += 1
    conn.execute("INSERT INTO events (payload) VALUES (?)", ("x" * (i % 500),))
    conn.execute("UPDATE totals SET n = n + 1")
    conn.commit()
    time.sleep(0.001)  # a busy service, not a tight loop that starves every reader
"""


def _make_db(path: Path, journal: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT)")
        conn.execute("CREATE TABLE totals (n INTEGER)")
        conn.execute("INSERT INTO totals VALUES (0)")
        conn.executemany(
            "INSERT INTO events (payload) VALUES (?)", [(f"row {i}" * 20,) for i in range(5000)]
        )
    conn.close()


def _rows(path: Path) -> int:
    with sqlite3.connect(path, timeout=30) as conn:
        n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    return int(n)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_consistent_copy_while_another_process_writes(
    journal: str, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    db = tmp_path / "app.db"
    _make_db(db, journal)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)])
    try:
        deadline = time.monotonic() + 20
        while _rows(db) < 5100:
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.02)
        snap, captured = capture_and_store(repo, SqliteSource(db), tmp_path / "stage")
        captured_rows = captured.consistency["tables"]["events"]["rows"]
        deadline = time.monotonic() + 20
        while _rows(db) <= captured_rows:  # the writer went on after the copy
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        writer.kill()
        writer.wait()
    assert captured_rows > 5000
    assert captured.consistency["integrity"] == "ok"
    out = tmp_path / "out"
    restored = bring_back(repo, SqliteSource(db), snap, out, path=str(tmp_path / "back.db"))
    assert restored["integrity"] == "ok"
    assert restored["tables"] == captured.consistency["tables"]
    with sqlite3.connect(tmp_path / "back.db") as conn:
        # one instant: every committed insert and its matching update, or neither
        assert conn.execute("SELECT n FROM totals").fetchone()[0] == captured_rows - 5000
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert (out / "app.db").stat().st_mode & 0o777 == db.stat().st_mode & 0o777


def test_restore_refuses_an_existing_file_and_missing_database(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    db = tmp_path / "app.db"
    _make_db(db, "wal")
    snap, _ = capture_and_store(repo, SqliteSource(db), tmp_path / "stage")
    with pytest.raises(SourceError, match="does not overwrite"):
        bring_back(repo, SqliteSource(db), snap, tmp_path / "out", path=str(db))
    assert _rows(db) == 5000
    with pytest.raises(UsageError, match="takes no restore option 'to'"):
        SqliteSource(db).restore(tmp_path / "out", {"to": "x"})
    missing = tmp_path / "gone.db"
    with (
        pytest.raises(SourceError, match="does not exist"),
        SqliteSource(missing).capture(tmp_path),
    ):
        pass
    assert not missing.exists()  # not created empty


def test_a_damaged_restored_file_is_refused(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    _make_db(db, "delete")
    out = tmp_path / "out"
    out.mkdir()
    data = bytearray(db.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = b"\xff" * 200  # a b-tree page overwritten
    (out / "app.db").write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"integrity_check|cannot be read"):
        SqliteSource(db).restore(out, {})
