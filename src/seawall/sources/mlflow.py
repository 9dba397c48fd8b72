"""MLflow tracking servers: the backend store and the artifact store, as one asset.

**Capture.** The backend database is fixed first, at one instant (SQLite:
the online backup API, into the stage; PostgreSQL: a REPEATABLE READ
transaction whose exported snapshot pg_dump dumps), then the artifact store
is listed and read. MLflow writes an artifact once and never changes it, so
the listing, taken after that instant, holds every artifact that existed at
it: each run and model version of the snapshot comes with every artifact it
had (a run finished by then, all of them). Files logged after the instant
are extra, and harmless. Each artifact's sha256 is taken while the archiver
reads it, and a manifest of the registry as captured (``registry.jsonl``,
see mlflow_registry) is written from the fixed database last, so a drill
can compare a restored server with the capture without the source server.
An artifact deleted between the listing and its reading (``mlflow gc``
running) fails the backup, which can simply run again.

The asset's tree::

    artifacts/...          the artifact store, file for file
    backend/NAME.db        the SQLite copy, or backend/mlflow.dump (pg_dump, custom format)
    registry.jsonl         the manifest

**Restore** builds a *new* backend store (a SQLite file or a PostgreSQL
database that must not exist) and a new artifact store (an absent or empty
directory, or an empty S3 prefix) from those files, rewrites absolute
artifact locations to the new store (``mlflow-artifacts:`` ones are
relative to the server's store and stay), and, when the MLflow installed
here is newer than the captured schema, upgrades the restored copy with
MLflow's own migrations. Identities survive because the database itself is
restored: experiment and run ids, version numbers, creation and update
times, stages, aliases and tags. It prints how to start a server on the new
stores, or starts one (option ``serve``).

:func:`restore_registered_model` and :func:`restore_run` bring one deleted
registered model (with its versions) or one deleted run back into a live
server's stores, inserting only its rows and any of its artifact files the
store lacks.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

from seawall.errors import SourceError, UsageError
from seawall.sources.base import Captured, Entry, PathEntry, StreamEntry, refuse_unknown_options
from seawall.sources.mlflow_registry import (
    DELETED_VERSION_STAGE,
    read_database,
    read_header,
    write_manifest,
)
from seawall.sources.mlflow_stores import (
    ArtifactStore,
    Backend,
    Db,
    HashingReader,
    artifact_store,
    copy_tree,
    files_below,
    key_under,
    location_rewrites,
    open_db,
    parse_backend,
    quote,
    sha256_of,
)

OPTIONS = {
    "backend_uri": "the new backend store: sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME "
    "(must not exist)",
    "artifacts": "the new artifact store: a directory (absent or empty) or s3://BUCKET/PREFIX "
    "(empty)",
    "serve": "HOST:PORT: start `mlflow server` on the restored stores (default: print the command)",
    "model": "bring back only this registered model (every version) into the LIVE stores named "
    "by backend_uri and artifacts, touching nothing else there",
    "run": "bring back only this run (by id) into the LIVE stores named by backend_uri and "
    "artifacts, touching nothing else there",
}
MANIFEST = "registry.jsonl"
ARTIFACTS = "artifacts"
BACKEND = "backend"
PG_DUMP = "mlflow.dump"

#: Where MLflow writes artifact locations: (table, column, only rows of this tag key).
LOCATION_COLUMNS = (
    ("experiments", "artifact_location", None),
    ("runs", "artifact_uri", None),
    ("model_versions", "source", None),
    ("model_versions", "storage_location", None),
    ("logged_models", "artifact_location", None),
    ("workspaces", "default_artifact_root", None),
    ("trace_tags", "value", "mlflow.artifactLocation"),
)


class MlflowSource:
    kind = "mlflow"

    def __init__(self, backend_uri: str, artifacts: str, name: str) -> None:
        self.backend = parse_backend(backend_uri)
        self.artifacts = artifact_store(artifacts)
        self.name = name

    # --- capture --------------------------------------------------------------------------

    @contextmanager
    def capture(self, stage: Path) -> Iterator[Captured]:
        """Fix the database, list the artifacts, and give them as entries with the facts:
        the schema revision (what a restore upgrades from; ``mlflow_version`` is the
        MLflow installed where the capture ran, which the server may not run), counts,
        and, as lineage, every model version with its run."""
        with self._fixed_database(stage) as (db, db_entry, db_facts):
            captured_at = datetime.now(UTC).isoformat()
            revision = db.schema_revision()
            if not revision:
                raise SourceError(
                    f"{self.backend.display} is not an MLflow database (no alembic_version table)"
                )
            # Listed after the database was fixed: it holds everything the database names.
            listing = self.artifacts.files()
            hashes: dict[str, str] = {}
            entries: list[Entry] = [db_entry]
            entries += [
                StreamEntry(f"{ARTIFACTS}/{rel}", self._reader(rel, hashes)) for rel, _ in listing
            ]
            versions = db.rows(
                "SELECT name, version, run_id FROM model_versions WHERE current_stage <> ? "
                "ORDER BY name, version",
                DELETED_VERSION_STAGE,
            )
            counts = {
                table: db.rows(f"SELECT count(*) FROM {table}")[0][0]
                for table in ("experiments", "runs", "registered_models")
            }
            header: dict[str, Any] = {
                "asset": self.name,
                "captured_at": captured_at,
                "mlflow_version": mlflow_version(),
                "schema_revision": revision,
                "backend": {"kind": self.backend.kind, "store": self.backend.display},
                "artifacts": {"kind": self.artifacts.kind, "store": self.artifacts.uri},
            }
            entries.append(
                StreamEntry(MANIFEST, lambda: self._manifest(db, header, listing, hashes, stage))
            )
            consistency = {
                "method": "backend database fixed at one instant, then the artifact store read",
                "captured_at": captured_at,
                "mlflow_version": header["mlflow_version"],
                "schema_revision": revision,
                "backend": {**header["backend"], **db_facts},
                "artifacts": {
                    **header["artifacts"],
                    "files": len(listing),
                    "bytes": sum(size for _, size in listing),
                },
                **counts,
                "model_versions": len(versions),
            }
            lineage = {
                "model_versions": [
                    {"name": name, "version": str(version), "run_id": run_id}
                    for name, version, run_id in versions
                ]
            }
            yield Captured(entries, consistency, lineage)

    @contextmanager
    def _fixed_database(self, stage: Path) -> Iterator[tuple[Db, Entry, dict[str, Any]]]:
        """The database at one instant: a reading connection, its entry, and facts."""
        if self.backend.kind == "sqlite":
            from seawall.sources.sqlite import SqliteSource

            assert self.backend.path is not None
            (stage / BACKEND).mkdir()
            with SqliteSource(self.backend.path).capture(stage / BACKEND) as cap:
                (entry,) = cap.entries
                assert isinstance(entry, PathEntry)
                copy = Backend(f"sqlite:///{entry.source}", "sqlite", path=entry.source)
                with open_db(copy, read_only=True) as db:
                    yield db, PathEntry(f"{BACKEND}/{entry.dest}", entry.source), cap.consistency
            return
        import psycopg

        from seawall.sources.postgres import PostgresSource, connect, where

        conn = connect(self.backend.dsn)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute(
                "SELECT pg_export_snapshot(), txid_current_snapshot()::text, "
                "current_setting('server_version'), now()"
            ).fetchone()
            assert row is not None
            snapshot, txids, version, at = row
            facts = {
                "method": "pg_dump at an exported snapshot (REPEATABLE READ)",
                "server": where(self.backend.dsn),
                "server_version": version,
                "txid_snapshot": txids,
                "snapshot_time": at.isoformat(),
            }
            # pg_dump imports the snapshot, which lives as long as this transaction: the
            # manifest, read in it too, describes the dump row for row.
            dumper = PostgresSource(self.backend.dsn)
            entry = StreamEntry(f"{BACKEND}/{PG_DUMP}", lambda: dumper.dump(snapshot, []))
            yield Db(conn, "postgresql"), entry, facts
        except psycopg.Error as err:
            raise SourceError(
                f"MLflow backend store {self.backend.display}: {str(err).splitlines()[0]}"
            ) from None
        finally:
            conn.close()

    def _reader(
        self, rel: str, hashes: dict[str, str]
    ) -> Callable[[], AbstractContextManager[BinaryIO]]:
        """An opener of the artifact ``rel`` that records its sha256 once read whole: the
        manifest then describes the very bytes stored, read once."""

        @contextmanager
        def open_hashed() -> Iterator[BinaryIO]:
            with self.artifacts.open(rel) as raw:
                yield cast(BinaryIO, HashingReader(raw, partial(hashes.__setitem__, rel)))

        return open_hashed

    @contextmanager
    def _manifest(
        self,
        db: Db,
        header: dict[str, Any],
        listing: list[tuple[str, int]],
        hashes: dict[str, str],
        stage: Path,
    ) -> Iterator[BinaryIO]:
        def artifacts_at(location: str) -> dict[str, str] | str:
            key = key_under(self.artifacts, location)
            if key is None:
                return f"not captured: {location} is outside the artifact store"
            out = {}
            for rel in files_below(listing, key):
                if rel not in hashes:  # not read by the archiver (yet): read it here
                    with self.artifacts.open(rel) as f:
                        hashes[rel] = sha256_of(f)
                out[rel[len(key) + 1 :] if key else rel] = hashes[rel]
            return out

        path = stage / MANIFEST
        with open(path, "wb") as out:
            write_manifest(header, read_database(db, artifacts_at), out)
        with open(path, "rb") as f:
            yield f

    # --- restore --------------------------------------------------------------------------

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """Build new stores from the restored files (options ``backend_uri`` and
        ``artifacts``; by default a SQLite backend and an artifact directory in
        ``restored/server/``); start a server on them with ``serve``."""
        refuse_unknown_options(options, OPTIONS, self.kind)
        if options.get("model") or options.get("run"):
            return self._restore_one(restored, options)
        given = [name for name in ("backend_uri", "artifacts") if options.get(name)]
        if len(given) == 1:
            raise UsageError(
                f"restoring the MLflow asset {self.name!r}: give both backend_uri and artifacts "
                "(where to build the new stores), or neither for new ones under the target"
            )
        default = restored / "server"
        target = parse_backend(options.get("backend_uri") or f"sqlite:///{default / 'mlflow.db'}")
        store = artifact_store(options.get("artifacts") or str(default / "artifacts"))
        if not given:
            default.mkdir(exist_ok=True)
        serve = parse_listen(options["serve"]) if options.get("serve") else None
        header = read_header(restored / MANIFEST)
        if not store.is_empty():
            raise SourceError(
                f"the artifact store {store.uri} is not empty: seawall restores a registry "
                "into a new artifact store only; choose an absent or empty one"
            )
        facts = materialize(restored, header, target, store, with_artifacts=True)
        command = server_command(target, store)
        facts |= {
            "backend_uri": redact_uri(target.uri),
            "artifacts": store.uri,
            "captured_mlflow_version": header.get("mlflow_version"),
            "server_command": command,
        }
        if serve is not None:
            host, port = serve
            log = restored / f"mlflow-server-{port}.log"
            server = MlflowServer(target.uri, store.uri, host=host, port=port, log=log)
            server.start()
            MlflowServer.serving[server.url] = server
            facts |= {"server_url": server.url, "server_pid": server.pid, "server_log": str(log)}
        return facts

    def _restore_one(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """One registered model or one run back into a live server's stores."""
        missing = [n for n in ("backend_uri", "artifacts") if not options.get(n)]
        if missing or (options.get("model") and options.get("run")):
            raise UsageError(
                f"restoring one model or run of the MLflow asset {self.name!r} needs the live "
                "server's backend_uri and artifacts, and either model or run (not both)"
            )
        live = {"backend_uri": options["backend_uri"], "artifacts": options["artifacts"]}
        if options.get("model"):
            return restore_registered_model(restored, options["model"], **live)
        return restore_run(restored, options["run"], **live)


# --- building stores from a capture ---------------------------------------------------------


def materialize(
    restored: Path,
    header: dict[str, Any],
    target: Backend,
    store: ArtifactStore,
    *,
    with_artifacts: bool,
) -> dict[str, Any]:
    """Create ``target`` from the captured database (it must not exist), put the captured
    artifacts into ``store`` (``with_artifacts``), point the locations at ``store`` and
    bring the schema up to this MLflow. On any failure, what it created is removed."""
    captured_kind = header["backend"]["kind"]
    if captured_kind != target.kind:
        raise UsageError(
            f"this registry was captured from {captured_kind}: restore it to {captured_kind} "
            f"too (a {target.kind} backend store was given)"
        )
    created = create_backend(restored / BACKEND, target)
    try:
        files = copy_tree(restored / ARTIFACTS, store, missing_only=False) if with_artifacts else 0
        old = artifact_store(header["artifacts"]["store"])
        with open_db(target) as db:
            moved = rewrite_locations(db, location_rewrites(old, store))
        return {**created, "artifact_files": files, "locations_rewritten": moved} | upgrade_schema(
            target
        )
    except BaseException:
        drop_backend(target)
        if with_artifacts:
            store.remove_all()
        raise


def create_backend(captured: Path, target: Backend) -> dict[str, Any]:
    """Create ``target`` from the captured database files (SourceError if it exists)."""
    if target.kind == "sqlite":
        from seawall.sources.sqlite import SqliteSource

        assert target.path is not None
        found = sorted(captured.glob("*")) if captured.is_dir() else []
        if len(found) != 1:
            raise SourceError(f"expected one SQLite database in {captured}, found {len(found)}")
        target.path.parent.mkdir(parents=True, exist_ok=True)
        facts = SqliteSource(Path(found[0].name)).restore(captured, {"path": str(target.path)})
        return {"database": facts["database"], "integrity": facts["integrity"]}
    from psycopg.conninfo import conninfo_to_dict

    from seawall.sources.postgres import PostgresSource, replace_dbname

    name = str(conninfo_to_dict(target.dsn)["dbname"])
    server = replace_dbname(target.dsn, "postgres")
    facts = PostgresSource(server).restore(captured, {"database": name, "dsn": server})
    return {"database": facts["database"], "server": facts["server"]}


def drop_backend(target: Backend) -> None:
    """Remove a backend store this process created (best effort: it is on the way out)."""
    if target.kind == "sqlite":
        assert target.path is not None
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{target.path}{suffix}")
        return
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    from seawall.sources.postgres import connect, replace_dbname

    name = str(conninfo_to_dict(target.dsn)["dbname"])
    with (
        contextlib.suppress(psycopg.Error, SourceError),
        connect(replace_dbname(target.dsn, "postgres"), autocommit=True) as conn,
    ):
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def rewrite_locations(db: Db, rewrites: list[tuple[str, str]]) -> int:
    """Replace each old prefix with its new one in every column MLflow keeps artifact
    locations in (whole path components only). Returns the rows changed."""
    changed = 0
    tables = db.tables()
    for table, column, tag in LOCATION_COLUMNS:
        if table not in tables or column not in db.columns(table):
            continue
        col = quote(column)
        for old, new in rewrites:
            sql = (
                f"UPDATE {quote(table)} SET {col} = ? || substr({col}, ?) WHERE "
                f"substr({col}, 1, ?) = ? AND (length({col}) = ? OR substr({col}, ?, 1) = '/')"
            )
            args: list[Any] = [new, len(old) + 1, len(old), old, len(old), len(old) + 1]
            if tag is not None:
                sql += " AND key = ?"
                args.append(tag)
            changed += db.execute(sql, *args)
    return changed


def mlflow_version() -> str:
    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def upgrade_schema(backend: Backend) -> dict[str, Any]:
    """Bring a *restored* database's schema to the MLflow installed here, with MLflow's
    own migrations (what ``mlflow db upgrade`` runs). Never called on a source store."""
    with open_db(backend, read_only=True) as db:
        before = db.schema_revision()
    try:
        from alembic.script import ScriptDirectory
        from mlflow.store.db import utils as mlflow_db
    except ImportError:
        return {
            "schema_revision": before,
            "schema_note": "mlflow is not installed here: the "
            "schema was not checked; start the server with the captured MLflow version",
        }
    config = mlflow_db._get_alembic_config("")  # type: ignore[no-untyped-call]
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    if before == head:
        return {"schema_revision": before}
    if before not in {rev.revision for rev in script.walk_revisions()}:
        return {
            "schema_revision": before,
            "schema_note": f"the capture's schema {before} is newer than MLflow "
            f"{mlflow_version()} knows (up to {head}): run the server with the captured MLflow "
            "version or newer",
        }
    engine = _engine(backend)
    try:
        mlflow_db._upgrade_db(engine)  # type: ignore[no-untyped-call]
    except Exception as err:
        raise SourceError(
            f"upgrading the restored MLflow database {backend.display} from schema {before} "
            f"to {head} failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
        ) from None
    finally:
        engine.dispose()
    return {"schema_revision": head, "upgraded_from": before}


def _engine(backend: Backend) -> Any:
    import sqlalchemy

    if backend.kind == "sqlite":
        return sqlalchemy.create_engine(f"sqlite:///{backend.path}")
    from seawall.sources.postgres import connect

    # The connection comes from psycopg and the libpq string: no URL dialect guessing,
    # and the password never goes through a URL SQLAlchemy might print.
    return sqlalchemy.create_engine("postgresql+psycopg://", creator=lambda: connect(backend.dsn))


# --- one registered model or run, back into a live server ------------------------------------


def restore_registered_model(
    restored: Path, name: str, *, backend_uri: str, artifacts: str
) -> dict[str, Any]:
    """Bring back the registered model ``name`` (every version, tag, alias, stage and time)
    from a restored capture into a live server's stores, touching nothing else.

    SourceError if the live server has a model of that name, or if its schema differs
    from the capture's once that is upgraded to the MLflow installed here."""
    live, store = parse_backend(backend_uri), artifact_store(artifacts)
    with open_db(live, read_only=True) as db:
        if db.rows("SELECT 1 FROM registered_models WHERE name = ?", name):
            raise SourceError(
                f"the live server already has a registered model {name!r}: nothing was changed "
                "(delete or rename it first)"
            )
    with _scratch(restored, live, store) as scratch, open_db(live) as target:
        if not scratch.rows("SELECT 1 FROM registered_models WHERE name = ?", name):
            raise SourceError(f"the capture has no registered model {name!r}")
        rows = sum(
            _copy_rows(scratch, target, table, "name = ?", name)
            for table in (
                "registered_models",
                "registered_model_tags",
                "model_versions",
                "model_version_tags",
                "registered_model_aliases",
            )
        )
        versions = scratch.rows(
            "SELECT version, storage_location, source FROM model_versions "
            "WHERE name = ? AND current_stage <> ? ORDER BY version",
            name,
            DELETED_VERSION_STAGE,
        )
        files = sum(_copy_artifacts(restored, store, loc or src) for _, loc, src in versions)
    return {
        "registered_model": name,
        "versions": [str(v) for v, _, _ in versions],
        "rows": rows,
        "artifact_files": files,
    }


def restore_run(restored: Path, run_id: str, *, backend_uri: str, artifacts: str) -> dict[str, Any]:
    """Bring back the run ``run_id`` (params, tags, metric histories, inputs, artifacts)
    from a restored capture into a live server's stores, touching nothing else.

    For a run that was only deleted (in the trash), MLflow's own ``mlflow runs restore``
    is the way; this is for a run that is gone (``mlflow gc``)."""
    live, store = parse_backend(backend_uri), artifact_store(artifacts)
    with open_db(live, read_only=True) as db:
        found = db.rows("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", run_id)
    if found:
        hint = (
            f"it is in the trash: `mlflow runs restore --run-id {run_id}` brings it back"
            if found[0][0] == "deleted"
            else "nothing was changed"
        )
        raise SourceError(f"the live server already has run {run_id}: {hint}")
    with _scratch(restored, live, store) as scratch, open_db(live) as target:
        run = scratch.rows(
            "SELECT experiment_id, artifact_uri FROM runs WHERE run_uuid = ?", run_id
        )
        if not run:
            raise SourceError(f"the capture has no run {run_id}")
        experiment, location = run[0]
        if not target.rows("SELECT 1 FROM experiments WHERE experiment_id = ?", experiment):
            raise SourceError(
                f"run {run_id} belongs to experiment {experiment}, which the live server no longer "
                "has: restore the whole registry to a new server instead (nothing was changed)"
            )
        rows = sum(
            _copy_rows(scratch, target, table, "run_uuid = ?", run_id)
            for table in ("runs", "params", "tags", "metrics", "latest_metrics")
        )
        tables = target.tables()
        if {"inputs", "input_tags", "datasets"} <= tables:
            inputs = scratch.rows(
                "SELECT input_uuid, source_type, source_id FROM inputs WHERE destination_id = ?",
                run_id,
            )
            for input_id, source_type, source_id in inputs:
                if source_type == "DATASET" and not target.rows(
                    "SELECT 1 FROM datasets WHERE dataset_uuid = ?", source_id
                ):
                    rows += _copy_rows(scratch, target, "datasets", "dataset_uuid = ?", source_id)
                rows += _copy_rows(scratch, target, "inputs", "input_uuid = ?", input_id)
                rows += _copy_rows(scratch, target, "input_tags", "input_uuid = ?", input_id)
        files = _copy_artifacts(restored, store, location)
    return {"run": run_id, "experiment_id": str(experiment), "rows": rows, "artifact_files": files}


@contextmanager
def _scratch(restored: Path, live: Backend, store: ArtifactStore) -> Iterator[Db]:
    """The captured database, built in a scratch store with its locations pointing at the
    live artifact store and its schema upgraded; SourceError unless its schema is then the
    live one's (rows could not be copied as they are)."""
    header = read_header(restored / MANIFEST)
    with tempfile.TemporaryDirectory(prefix="seawall-mlflow-") as tmp:
        if live.kind == "sqlite":
            scratch = Backend("", "sqlite", path=Path(tmp) / "scratch.db")
        else:
            from seawall.sources.postgres import replace_dbname

            name = f"seawall_scratch_{uuid.uuid4().hex[:12]}"
            scratch = Backend("", "postgresql", dsn=replace_dbname(live.dsn, name))
        materialize(restored, header, scratch, store, with_artifacts=False)
        try:
            with open_db(scratch, read_only=True) as db, open_db(live, read_only=True) as ldb:
                ours, theirs = db.schema_revision(), ldb.schema_revision()
                if ours != theirs:
                    raise SourceError(
                        f"the live server's schema is {theirs} and the capture's is {ours} "
                        f"with MLflow {mlflow_version()}: upgrade the live server (mlflow db "
                        "upgrade) or use the MLflow version it runs; nothing was changed"
                    )
                yield db
        finally:
            if live.kind == "postgresql":
                drop_backend(scratch)


def _copy_rows(src: Db, dst: Db, table: str, where: str, *args: Any) -> int:
    if table not in dst.tables():
        return 0
    columns = [c for c in dst.columns(table) if c in set(src.columns(table))]
    names = ", ".join(quote(c) for c in columns)
    rows = src.rows(f"SELECT {names} FROM {quote(table)} WHERE {where}", *args)
    marks = ", ".join("?" * len(columns))
    for row in rows:
        dst.execute(f"INSERT INTO {quote(table)} ({names}) VALUES ({marks})", *row)
    return len(rows)


def _copy_artifacts(restored: Path, store: ArtifactStore, location: str | None) -> int:
    """Put the captured files below ``location`` that ``store`` lacks back into it."""
    key = key_under(store, location or "")
    if key is None or not (restored / ARTIFACTS / key).is_dir():
        return 0
    return copy_tree(restored / ARTIFACTS / key, store, missing_only=True, under=key)


# --- a tracking server on the stores ---------------------------------------------------------


def redact_uri(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def server_command(backend: Backend, store: ArtifactStore) -> str:
    uri = redact_uri(backend.uri)
    if backend.kind == "sqlite":
        uri = f"sqlite:///{backend.path}"
    args = ["--backend-store-uri", uri, "--artifacts-destination", store.uri]
    return shlex.join(["mlflow", "server", *args, "--host", "127.0.0.1", "--port", "5000"])


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"serve takes HOST:PORT (e.g. 127.0.0.1:5000), not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MlflowServer:
    """``mlflow server`` on a backend and artifact store, in a session of its own (so
    :meth:`stop` ends its workers too). The backend URI, which may hold a password,
    goes in the environment (``MLFLOW_BACKEND_STORE_URI``), not on the command line."""

    #: servers a restore started and left running, by URL (their owner may stop them)
    serving: ClassVar[dict[str, MlflowServer]] = {}

    def __init__(
        self,
        backend_uri: str,
        artifacts: str,
        *,
        host: str = "127.0.0.1",
        port: int = 5000,
        log: Path,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.backend_uri, self.artifacts = backend_uri, artifacts
        self.host, self.port, self.log, self.workers = host, port, log, workers
        self.env = dict(env or {})
        self.url = f"http://{host}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 180.0) -> None:
        env = {**os.environ, **self.env, "MLFLOW_BACKEND_STORE_URI": self.backend_uri}
        args = [sys.executable, "-m", "mlflow", "server", "--artifacts-destination", self.artifacts]
        args += ["--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SourceError(
                    f"mlflow server exited with code {self.proc.returncode} before it was up: "
                    f"{_tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SourceError(f"mlflow server was not up within {timeout:.0f} s: {_tail(self.log)}")

    def stop(self, timeout: float = 15.0) -> None:
        """End the server and every process of its session."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        # Workers may outlive the parent a moment: the group goes, whatever is left of it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.proc = None


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-5:]) or "(empty log)"
