"""SQLite databases, captured with the online backup API.

The backup copies every page in one step under one read transaction, so the
copy is the database as of one instant even while another process writes
(in WAL mode writers carry on; in rollback-journal mode they wait for the
copy, as they would for any reader). The copy is written into the stage
directory, its tables counted, and stored under the database's file name.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from seawall.errors import SourceError
from seawall.sources.base import Captured, PathEntry, refuse_unknown_options

OPTIONS = {"path": "write the restored database to this file (which must not exist)"}


class SqliteSource:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def capture(self, stage: Path) -> Iterator[Captured]:
        if not self.path.is_file():
            raise SourceError(f"the SQLite database {self.path} does not exist")
        copy = stage / self.path.name
        try:
            # mode=rw: never create an empty database where the real one is missing.
            source = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=rw", uri=True)
            with closing(source), closing(sqlite3.connect(copy)) as dest:
                source.backup(dest)  # all pages in one step: one read transaction
                facts = {
                    "method": "sqlite online backup",
                    "sqlite_version": sqlite3.sqlite_version,
                    "page_size": _pragma(dest, "page_size"),
                    "pages": _pragma(dest, "page_count"),
                    "integrity": _pragma(dest, "quick_check"),
                    "tables": table_counts(dest),
                }
        except sqlite3.Error as err:
            raise SourceError(f"cannot back up the SQLite database {self.path}: {err}") from None
        os.chmod(copy, self.path.stat().st_mode & 0o777)
        yield Captured([PathEntry(self.path.name, copy)], facts)

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """Check the restored file (``PRAGMA integrity_check``) and count its rows; with
        the ``path`` option, copy it there (never over an existing file)."""
        refuse_unknown_options(options, OPTIONS, self.kind)
        database = restored / self.path.name
        try:
            # immutable: read the file as it is, leaving no -wal or -shm beside it
            uri = f"{database.as_uri()}?mode=ro&immutable=1"
            with closing(sqlite3.connect(uri, uri=True)) as conn:
                integrity = _pragma(conn, "integrity_check")
                tables = table_counts(conn)
        except sqlite3.Error as err:
            raise SourceError(f"the restored database {database} cannot be read: {err}") from None
        if integrity != "ok":
            raise SourceError(
                f"the restored database {database} fails PRAGMA integrity_check: {integrity}"
            )
        if "path" in options:
            target = Path(options["path"]).expanduser()
            try:
                with open(database, "rb") as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except FileExistsError:
                raise SourceError(
                    f"{target} exists: seawall does not overwrite a database; choose another path"
                ) from None
            os.chmod(target, database.stat().st_mode & 0o777)
            database = target
        return {"database": str(database), "integrity": integrity, "tables": tables}


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def table_counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Rows per table (``{"rows": n}``), for comparing a restored copy with the capture."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    out = {}
    for name in sorted(names):
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            out[name] = {"rows": conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]}
        except sqlite3.Error:
            continue  # a virtual table whose module this Python lacks: not countable here
    return out
