"""PostgreSQL databases: a dump and its facts, both at one exported snapshot.

The capture opens a REPEATABLE READ, READ ONLY transaction, exports its
snapshot (``pg_export_snapshot()``) and records, inside that transaction,
the server version, the WAL position, the transaction snapshot and every
dumped table's row count and checksum. ``pg_dump --snapshot`` then dumps
exactly what that transaction sees, so the facts describe the dump row for
row while writers carry on. The dump (custom format, uncompressed: the
repository deduplicates and compresses) streams from pg_dump's stdout into
the archiver; a pg_dump that exits with an error fails the backup, so a
truncated dump is never stored as if it were whole.

A restore creates a *new* database (never over an existing one) on the same
or another server, runs pg_restore into it in one transaction, and computes
the same facts on it; a restore that fails drops the database it created.

The password, when the connection string has one, is passed to pg_dump and
pg_restore in their environment (never on a command line) and appears in no
message or fact: ``where`` names a server as user@host:port/dbname.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from seawall.errors import SourceError, UsageError
from seawall.sources.base import Captured, StreamEntry, refuse_unknown_options

OPTIONS = {
    "database": "name of the new database to create (default: DBNAME_restored)",
    "dsn": "connection string of the server to restore to (default: the asset's)",
    "owners": "'keep' to restore owners and privileges (the roles must exist there)",
}

#: Settings that make a row's text the same on any server, for the checksums.
_STABLE_TEXT = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL bytea_output = 'hex'",
    "SET LOCAL lc_monetary = 'C'",
)

#: Ordinary tables that belong to the database (not to the system or an extension).
_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
"""


class PostgresSource:
    kind = "postgres"

    def __init__(
        self, dsn: str, schemas: list[str] | None = None, tables: list[str] | None = None
    ) -> None:
        self.dsn = dsn
        self.schemas = schemas or []
        self.tables = tables or []
        self.where = where(dsn)

    @property
    def has_password(self) -> bool:
        return "password" in conninfo_to_dict(self.dsn)

    def describe(self) -> dict[str, Any]:
        """What a capture would dump, without dumping: tables, their size, the server."""
        with connect(self.dsn) as conn:
            try:
                _selection, tables = self._selected(conn)
                row = conn.execute(
                    "SELECT current_setting('server_version'), coalesce(sum("
                    "pg_total_relation_size(format('%%I.%%I', s, t)::regclass)), 0) "
                    "FROM unnest(%s::text[], %s::text[]) AS x(s, t)",
                    [[s for s, _ in tables], [t for _, t in tables]],
                ).fetchone()
            except psycopg.Error as err:
                raise SourceError(
                    f"PostgreSQL {self.where}: {_first_line(err, self.dsn)}"
                ) from None
        assert row is not None
        return {"server_version": row[0], "tables": len(tables), "bytes": int(row[1])}

    # --- capture --------------------------------------------------------------------------

    @contextmanager
    def capture(self, stage: Path) -> Iterator[Captured]:
        conn = connect(self.dsn)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute(
                "SELECT pg_export_snapshot(), current_database(), "
                "current_setting('server_version'), txid_current_snapshot()::text, "
                "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_lsn() END::text, now()"
            ).fetchone()
            assert row is not None
            snapshot, database, version, txids, lsn, at = row
            selection, tables = self._selected(conn)
            consistency = {
                "method": "pg_dump at an exported snapshot (REPEATABLE READ)",
                "server": self.where,
                "database": database,
                "server_version": version,
                "pg_dump_version": _tool_version("pg_dump"),
                "wal_lsn": lsn,
                "txid_snapshot": txids,
                "snapshot_time": at.isoformat(),
                **({"schemas": self.schemas} if self.schemas else {}),
                **({"tables_selected": self.tables} if self.tables else {}),
                "tables": table_facts(conn, tables),
            }
            # The transaction stays open while pg_dump runs: the exported snapshot
            # can be imported only while the transaction that exported it lives.
            entry = StreamEntry(f"{database}.dump", lambda: self.dump(snapshot, selection))
            yield Captured([entry], consistency)
        except psycopg.Error as err:
            raise SourceError(f"PostgreSQL {self.where}: {_first_line(err, self.dsn)}") from None
        finally:
            conn.close()

    def _selected(self, conn: psycopg.Connection[Any]) -> tuple[list[str], list[tuple[str, str]]]:
        """pg_dump's selection arguments, and (schema, table) of every ordinary table
        the dump holds. SourceError if a schema or table the plan names does not exist."""
        if self.tables:
            found = []
            for name in self.tables:
                schema, _, table = name.rpartition(".")
                if schema:
                    cond, args = "n.nspname = %s AND c.relname = %s", [schema, table]
                else:  # as pg_dump would: a table of the search path
                    cond, args = "c.relname = %s AND pg_table_is_visible(c.oid)", [table]
                row = conn.execute(
                    "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {cond}",
                    args,
                ).fetchone()
                if row is None:
                    raise SourceError(f"PostgreSQL {self.where} has no table {name!r}")
                found.append(row)
            selection = [f"--table={_quote(s)}.{_quote(t)}" for s, t, _kind in found]
            return selection, sorted((s, t) for s, t, kind in found if kind == "r")
        if not self.schemas:
            return [], sorted(conn.execute(_USER_TABLES).fetchall())
        present = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", [self.schemas]
            )
        }
        missing = [s for s in self.schemas if s not in present]
        if missing:
            raise SourceError(
                f"PostgreSQL {self.where} has no schema {', '.join(map(repr, missing))}"
            )
        tables = conn.execute(_USER_TABLES + " AND n.nspname = ANY(%s)", [self.schemas])
        return [f"--schema={_quote(s)}" for s in self.schemas], sorted(tables.fetchall())

    @contextmanager
    def dump(self, snapshot: str, selection: list[str]) -> Iterator[BinaryIO]:
        args = ["pg_dump", "--format=custom", "--compress=0", f"--snapshot={snapshot}"]
        args += ["--no-password", *selection, f"--dbname={_without_password(self.dsn)}"]
        with _run(args, self.dsn, "pg_dump", self.where, stdout=True) as stream:
            assert stream is not None
            yield stream

    # --- restore --------------------------------------------------------------------------

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """Create a new database (option ``database``) on the asset's server or on the
        one option ``dsn`` names, and restore the dump into it."""
        refuse_unknown_options(options, OPTIONS, self.kind)
        dumps = sorted(restored.glob("*.dump"))
        if len(dumps) != 1:
            raise SourceError(f"expected one .dump file in {restored}, found {len(dumps)}")
        dump = dumps[0]
        server_dsn = options.get("dsn", self.dsn)
        name = options.get("database") or f"{dump.stem}_restored"
        if options.get("owners", "keep") != "keep":
            raise UsageError("the owners option takes one value: keep")
        target = replace_dbname(server_dsn, name)
        server = where(server_dsn)
        with connect(server_dsn, autocommit=True) as conn:
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
                )
            except psycopg.errors.DuplicateDatabase:
                raise SourceError(
                    f"database {name!r} already exists on {server}: seawall never restores "
                    "over a database; choose a new name with the database option"
                ) from None
            except psycopg.Error as err:
                raise SourceError(
                    f"cannot create database {name!r} on {server}: {_first_line(err, server_dsn)}"
                ) from None
            try:
                _create_schemas(target, dump)
                args = ["pg_restore", "--clean", "--if-exists", "--single-transaction"]
                args += ["--exit-on-error", "--no-password"]
                if "owners" not in options:
                    args += ["--no-owner", "--no-privileges"]
                with _run(
                    [*args, f"--dbname={_without_password(target)}", str(dump)],
                    target,
                    "pg_restore",
                    where(target),
                ):
                    pass
                with connect(target) as restored_conn:
                    tables = table_facts(
                        restored_conn, sorted(restored_conn.execute(_USER_TABLES).fetchall())
                    )
            except BaseException:
                # Ours and incomplete: drop it, so a retry can use the same name.
                with contextlib.suppress(psycopg.Error):
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                raise
        return {"database": name, "server": where(target), "tables": tables}


# --- helpers shared by capture, restore and the plan's survey ---------------------------------


def where(dsn: str) -> str:
    """user@host:port/dbname of a connection string, without its password."""
    p = conninfo_to_dict(dsn)
    user = f"{p['user']}@" if p.get("user") else ""
    host = str(p.get("host") or "localhost")
    port = f":{p['port']}" if p.get("port") else ""
    return f"{user}{host}{port}/{p.get('dbname') or p.get('user') or ''}"


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection, or SourceError saying which server refused (no password)."""
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)
    except psycopg.Error as err:
        raise SourceError(
            f"cannot connect to PostgreSQL {where(dsn)}: {_first_line(err, dsn)}"
        ) from None


def replace_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo("", **{**conninfo_to_dict(dsn), "dbname": dbname})


def table_facts(
    conn: psycopg.Connection[Any], tables: list[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """``schema.table`` -> rows and an order-independent checksum of the rows' text
    (the sum of each row's md5 as a 64-bit number), read in ``conn``'s transaction."""
    for setting in _STABLE_TEXT:
        conn.execute(setting)
    out: dict[str, dict[str, Any]] = {}
    for schema, table in tables:
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || substr(md5(ROW(t.*)::text), 1, 16))::bit(64)"
            "::bigint), 0)::text FROM {}.{} AS t"
        ).format(sql.Identifier(schema), sql.Identifier(table))
        row = conn.execute(query).fetchone()
        assert row is not None  # an aggregate always gives one row
        out[f"{schema}.{table}"] = {"rows": row[0], "checksum": row[1]}
    return out


def _without_password(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo("", **params)


@contextmanager
def _run(
    args: list[str], dsn: str, tool: str, server: str, *, stdout: bool = False
) -> Iterator[BinaryIO | None]:
    """Run a PostgreSQL client tool; yield its stdout (when asked). SourceError, with the
    end of its stderr, if it cannot start or exits with an error."""
    env = dict(os.environ)
    password = conninfo_to_dict(dsn).get("password")
    if password:
        env["PGPASSWORD"] = str(password)
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=errors,
                env=env,
            )
        except OSError as err:
            raise SourceError(
                f"cannot run {tool}: {err.strerror}; install the PostgreSQL client tools "
                "(the server's major version or newer)"
            ) from None
        try:
            yield cast(BinaryIO | None, proc.stdout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        code = proc.wait()
        if code != 0:
            errors.seek(0)
            text = _scrub(errors.read()[-4000:].decode(errors="replace"), dsn)
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            # The tools' own "error:" lines say why; what follows is the SQL involved.
            lines = [line for line in lines if "error:" in line] or lines[-3:]
            raise SourceError(
                f"{tool} for PostgreSQL {server} failed (exit {code}): "
                + ("; ".join(lines[:3]) or "no message")
            )


#: A relation in pg_restore's table of contents: "ID; CATALOG OID TYPE SCHEMA NAME OWNER".
_TOC_RELATION = re.compile(
    r"\d+; \d+ \d+ (?:TABLE|VIEW|SEQUENCE|MATERIALIZED VIEW|FOREIGN TABLE) (\S+) \S+ \S+"
)


def _create_schemas(dsn: str, dump: Path) -> None:
    """Create the schemas the dump's tables live in: a dump of selected tables holds
    the tables but not their schemas."""
    listing = subprocess.run(
        ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=False
    )
    schemas = {m[1] for m in map(_TOC_RELATION.fullmatch, listing.stdout.splitlines()) if m}
    if schemas:
        with connect(dsn, autocommit=True) as conn:
            for schema in sorted(schemas):
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )


def _tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _quote(identifier: str) -> str:
    """A name as a pg_dump pattern that matches only that name (quoted: exact case)."""
    return '"' + identifier.replace('"', '""') + '"'


def _scrub(text: str, dsn: str) -> str:
    password = conninfo_to_dict(dsn).get("password")
    return text.replace(str(password), "***") if password else text


def _first_line(err: Exception, dsn: str) -> str:
    return _scrub(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__, dsn)
