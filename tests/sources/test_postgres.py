"""The PostgreSQL source against the real server: a dump consistent with the facts
recorded beside it while a writer process inserts rows, restored into a new database;
failed dumps fail the backup."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from seawall.errors import SourceError
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.repository.repo import Repository
from seawall.sources.base import StreamEntry
from seawall.sources.postgres import PostgresSource
from tests.conftest import reopen
from tests.postgres import PgDatabase, new_database
from tests.sources.helpers import bring_back, capture_and_store

SCHEMA = """
CREATE TABLE features (
    id bigserial PRIMARY KEY, score double precision, at timestamptz DEFAULT now(),
    raw bytea, doc jsonb, label text
);
CREATE SCHEMA other;
CREATE TABLE other.events (id int PRIMARY KEY, kind text);
CREATE VIEW recent AS SELECT id, score FROM features WHERE id > 10;
INSERT INTO features (score, raw, doc, label)
    SELECT random(), sha256(i::text::bytea), jsonb_build_object('i', i), 'row ' || i
    FROM generate_series(1, 2000) AS i;
INSERT INTO other.events SELECT i, 'kind' || (i % 7) FROM generate_series(1, 300) AS i;
"""

WRITER = """
import sys, time, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    while True:
        conn.execute("INSERT INTO features (score, label) VALUES (random(), 'live')")
        time.sleep(0.002)
"""


def _count(db: PgDatabase, table: str = "features") -> int:
    with db.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])  # type: ignore[call-overload]


@contextmanager
def _writer(db: PgDatabase) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db.dsn])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def db(pg_database: PgDatabase) -> PgDatabase:
    with pg_database.connect() as conn:
        conn.execute(SCHEMA)
    return pg_database


def _wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_dump_matches_its_facts_while_a_writer_inserts(
    db: PgDatabase, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    source = PostgresSource(db.dsn)
    with _writer(db):
        _wait_for(lambda: _count(db) > 2050, "the writer to start")
        with source.capture(tmp_path / "stage") as captured:
            recorded = captured.consistency["tables"]["public.features"]["rows"]
            # The writer goes on after the snapshot and before the dump starts: the dump
            # must still be the snapshot's, row for row.
            _wait_for(lambda: _count(db) > recorded + 100, "rows written after the snapshot")
            result = backup(
                repo,
                [],
                entries=captured.entries,
                asset={"name": "features", "kind": "postgres"},
            )
        assert _count(db) > recorded + 100
    facts = captured.consistency
    assert set(facts["tables"]) == {"public.features", "other.events"}
    assert facts["tables"]["other.events"]["rows"] == 300
    assert facts["server_version"].startswith(("1", "9"))
    assert facts["wal_lsn"].count("/") == 1 and ":" in facts["txid_snapshot"]
    assert facts["database"] == db.name
    restored = bring_back(repo, source, result.snapshot, tmp_path / "out", database=db.name + "_r")
    assert restored["database"] == db.name + "_r"
    assert restored["tables"] == facts["tables"]  # counts and checksums of every table
    copy = PgDatabase(db.name + "_r")
    assert _count(copy) == recorded
    with copy.connect() as conn:  # the view came back too, and the rows' values
        assert conn.execute("SELECT count(*) FROM recent").fetchone() == (recorded - 10,)
        row = conn.execute("SELECT doc->>'i', label FROM features WHERE id = 7").fetchone()
        assert row == ("7", "row 7")


def test_checksums_see_a_changed_value(
    db: PgDatabase, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    source = PostgresSource(db.dsn, schemas=["other"])
    snap, captured = capture_and_store(repo, source, tmp_path / "stage")
    restored = bring_back(repo, source, snap, tmp_path / "out", database=db.name + "_r")
    assert restored["tables"] == captured.consistency["tables"]
    with PgDatabase(db.name + "_r").connect() as conn:
        conn.execute("UPDATE other.events SET kind = 'changed' WHERE id = 5")
        from seawall.sources.postgres import table_facts

        with conn.transaction():
            after = table_facts(conn, [("other", "events")])
    assert after["other.events"]["rows"] == 300
    assert after["other.events"]["checksum"] != restored["tables"]["other.events"]["checksum"]


def test_selected_schemas_and_tables(
    db: PgDatabase, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    source = PostgresSource(db.dsn, schemas=["other"])
    snap, captured = capture_and_store(repo, source, tmp_path / "s")
    assert set(captured.consistency["tables"]) == {"other.events"}
    restored = bring_back(repo, source, snap, tmp_path / "s-out", database=db.name + "_s")
    assert set(restored["tables"]) == {"other.events"}

    source = PostgresSource(db.dsn, tables=["features", "recent"])  # unqualified: search path
    snap, captured = capture_and_store(repo, source, tmp_path / "t")
    assert set(captured.consistency["tables"]) == {"public.features"}
    restored = bring_back(repo, source, snap, tmp_path / "t-out", database=db.name + "_t")
    assert restored["tables"] == captured.consistency["tables"]
    with PgDatabase(db.name + "_t").connect() as conn:
        assert conn.execute("SELECT count(*) FROM recent").fetchone() == (1990,)

    for bad, word in [
        (PostgresSource(db.dsn, schemas=["nope"]), "schema 'nope'"),
        (PostgresSource(db.dsn, tables=["other.nope"]), "table 'other.nope'"),
    ]:
        with pytest.raises(SourceError, match=word), bad.capture(tmp_path / "x"):
            pass


def test_restore_never_overwrites_a_database(
    db: PgDatabase, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    # A password in the connection string (trust auth ignores it) must appear nowhere.
    secret_dsn = f"postgresql://postgres:Pw-4f9a2c@127.0.0.1:5432/{db.name}"
    source = PostgresSource(secret_dsn, tables=["other.events"])
    snap, captured = capture_and_store(repo, source, tmp_path / "stage")
    assert "Pw-4f9a2c" not in json.dumps(captured.consistency)
    with db.connect() as conn:
        conn.execute("INSERT INTO other.events VALUES (1000, 'after')")
    with pytest.raises(SourceError, match="already exists") as err:
        bring_back(repo, source, snap, tmp_path / "out", database=db.name)
    assert "Pw-4f9a2c" not in str(err.value)
    assert _count(db, "other.events") == 301  # untouched
    # Into another server's database (here the same server, named by the dsn option).
    other = bring_back(
        repo,
        source,
        snap,
        tmp_path / "out2",
        dsn=f"host=127.0.0.1 port=5432 user=postgres dbname={db.name}",
        database=db.name + "_x",
    )
    assert other["tables"] == captured.consistency["tables"]


def test_a_dump_cut_short_fails_the_backup(
    db: PgDatabase, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    """pg_dump's server session is killed while its output is being stored: the backup
    fails, no snapshot refers to the partial dump, and the repository checks clean."""
    repo = local_repo[1]
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO features (label) SELECT repeat(md5(i::text), 8) "
            "FROM generate_series(1, 40000) AS i"
        )
    source = PostgresSource(db.dsn)

    def terminate_dump() -> None:
        with db.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'pg_dump'",
                [db.name],
            )

    with source.capture(tmp_path / "stage") as captured:
        entry = captured.entries[0]
        assert isinstance(entry, StreamEntry)
        cut = StreamEntry(entry.dest, _on_first_read(entry, terminate_dump))
        with pytest.raises(SourceError, match=r"pg_dump .* failed"):
            backup(repo, [], entries=[cut], asset={"name": "db", "kind": "postgres"})
    assert reopen(repo).list_snapshots() == []
    assert check(reopen(repo)).ok


def test_a_dropped_database_fails_the_backup(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    with new_database() as db:
        with db.connect() as conn:
            conn.execute(SCHEMA)
        source = PostgresSource(db.dsn)
        with pytest.raises(SourceError), source.capture(tmp_path / "stage") as captured:
            with psycopg_admin() as admin:
                admin.execute(f'DROP DATABASE "{db.name}" WITH (FORCE)')
            backup(repo, [], entries=captured.entries, asset={"name": "db", "kind": "postgres"})
    assert reopen(repo).list_snapshots() == []
    assert check(reopen(repo)).ok


def test_unreachable_server(tmp_path: Path) -> None:
    source = PostgresSource("postgresql://postgres:Pw-77@127.0.0.1:1/nowhere")
    with (
        pytest.raises(
            SourceError, match=r"cannot connect to PostgreSQL postgres@127\.0\.0\.1:1/nowhere"
        ) as err,
        source.capture(tmp_path),
    ):
        pass
    assert "Pw-77" not in str(err.value)


def test_missing_pg_dump(
    pg_database: PgDatabase,
    local_repo: tuple[Path, Repository],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = local_repo[1]
    monkeypatch.setenv("PATH", str(tmp_path))
    source = PostgresSource(pg_database.dsn)
    with (
        source.capture(tmp_path / "stage") as captured,
        pytest.raises(SourceError, match=r"cannot run pg_dump.*install"),
    ):
        backup(repo, [], entries=captured.entries, asset={"name": "db", "kind": "postgres"})
    assert repo.list_snapshots() == []


def psycopg_admin() -> Any:
    import psycopg

    return psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True
    )


def _on_first_read(entry: StreamEntry, hook: Any) -> Any:
    """The entry's opener, calling ``hook`` once the first bytes have been read."""

    class Reader:
        def __init__(self, stream: BinaryIO) -> None:
            self.stream, self.called = stream, False

        def _after(self) -> None:
            if not self.called:
                self.called = True
                hook()

        def read(self, n: int = -1) -> bytes:
            data = self.stream.read(n)
            self._after()
            return data

        def readinto(self, buf: Any) -> int:
            n = self.stream.readinto(buf)  # type: ignore[attr-defined]
            self._after()
            return int(n)

    @contextmanager
    def opener() -> Iterator[Any]:
        with entry.open() as stream:
            yield Reader(stream)

    return opener
