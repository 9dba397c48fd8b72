"""The PostgreSQL server on this machine (127.0.0.1:5432, trust auth), for tests.

Each test gets a database of its own with a unique name; everything whose
name starts with it (the databases restores create) is dropped afterwards.
A server that is down is started once; if that fails, the test fails with
the reason (it is never skipped).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

SERVER = "host=127.0.0.1 port=5432 user=postgres"


def dsn(dbname: str) -> str:
    return f"{SERVER} dbname={dbname}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(dsn("postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        versions = [p.name for p in Path("/etc/postgresql").iterdir()]
        started = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *versions[:1], "main", "start"],
            capture_output=True,
            text=True,
        )
        try:
            return psycopg.connect(dsn("postgres"), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as err:
            pytest.fail(
                f"PostgreSQL at 127.0.0.1:5432 is not running and could not be started "
                f"({started.stderr.strip() or started.returncode}): {err}"
            )


@dataclass(frozen=True)
class PgDatabase:
    name: str

    @property
    def dsn(self) -> str:
        return dsn(self.name)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)

    def exists(self, name: str) -> bool:
        with _admin() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                is not None
            )


@contextmanager
def new_database() -> Iterator[PgDatabase]:
    db = PgDatabase(f"sw_{uuid.uuid4().hex[:12]}")
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db.name)))
    try:
        yield db
    finally:
        with _admin() as conn:
            names = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [db.name + "%"]
            ).fetchall()
            for (name,) in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(str(name))
                    )
                )
