"""Where an MLflow tracking server keeps things: its backend store and its artifact store.

The backend store is a database named by an SQLAlchemy URI, as ``mlflow
server --backend-store-uri`` takes it: ``sqlite:///PATH`` or
``postgresql[+DRIVER]://USER[:PASSWORD]@HOST[:PORT]/DBNAME``. The artifact
store is a directory or an S3 prefix (``s3://BUCKET/PREFIX``; the endpoint
comes from ``MLFLOW_S3_ENDPOINT_URL`` as for MLflow, else from boto3's own
settings).

Artifact *locations* in the database take three forms: relative to the
server's artifact store (``mlflow-artifacts:/1/RUN/artifacts``, when the
server proxies artifacts), absolute under the store (``/srv/art/1/...``,
``file:///srv/art/1/...``, ``s3://bucket/prefix/1/...``), or somewhere else
entirely. :meth:`ArtifactStore.key` maps the first two to a path relative to
the store, and :func:`location_rewrites` says how absolute ones change when
the store moves.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import unquote, urlsplit

from seawall.errors import SourceError, UsageError

# --- the backend store ----------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A parsed backend store URI. ``dsn`` is a libpq connection string (PostgreSQL)."""

    uri: str
    kind: str  # "sqlite" | "postgresql"
    path: Path | None = None
    dsn: str = ""

    @property
    def display(self) -> str:
        """The URI without its password, for messages and facts."""
        if self.path is not None:
            return f"sqlite:///{self.path}"
        from seawall.sources.postgres import where

        return f"postgresql://{where(self.dsn)}"


def parse_backend(uri: str) -> Backend:
    """A :class:`Backend`, or UsageError naming what is wrong (never the password)."""
    scheme, sep, rest = uri.partition("://")
    dialect = scheme.split("+", 1)[0].lower()
    if sep and dialect == "sqlite":
        path = rest.removeprefix("/").split("?", 1)[0]
        if not path or path == ":memory:":
            raise UsageError("an MLflow SQLite backend store needs a file: sqlite:///PATH")
        return Backend(uri, "sqlite", path=Path(unquote(path)).absolute())
    if sep and dialect in ("postgresql", "postgres"):
        from psycopg.conninfo import conninfo_to_dict

        dsn = f"postgresql://{rest}"
        try:
            params = conninfo_to_dict(dsn)
        except Exception:  # psycopg's parse error quotes the string, password and all
            raise UsageError(
                "the PostgreSQL backend store URI cannot be parsed; expected "
                "postgresql://USER@HOST:PORT/DBNAME"
            ) from None
        if not params.get("dbname"):
            raise UsageError("the PostgreSQL backend store URI names no database (.../DBNAME)")
        return Backend(uri, "postgresql", dsn=dsn)
    raise UsageError(
        f"unsupported MLflow backend store {scheme or uri!r}: give sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DBNAME (file stores and other databases are not supported)"
    )


class Db:
    """A DB-API connection with one parameter style (``?``) on SQLite and PostgreSQL,
    and the few catalog questions the MLflow source asks."""

    def __init__(self, conn: Any, kind: str) -> None:
        self.conn = conn
        self.kind = kind

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(self._sql(sql), params)
        return list(cur.fetchall())

    def execute(self, sql: str, *params: Any) -> int:
        return int(self.conn.execute(self._sql(sql), params).rowcount)

    def _sql(self, sql: str) -> str:
        # psycopg takes %s; a literal % must then be doubled (no query here has one).
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    def tables(self) -> set[str]:
        if self.kind == "sqlite":
            return {r[0] for r in self.rows("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        return {
            r[0]
            for r in self.rows(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        }

    def columns(self, table: str) -> list[str]:
        if self.kind == "sqlite":
            return [r[1] for r in self.rows(f"PRAGMA table_info({quote(table)})")]
        return [
            r[0]
            for r in self.rows(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = ? ORDER BY ordinal_position",
                table,
            )
        ]

    def schema_revision(self) -> str:
        """The alembic revision MLflow's migrations left (``""`` if none)."""
        if "alembic_version" not in self.tables():
            return ""
        found = self.rows("SELECT version_num FROM alembic_version")
        return str(found[0][0]) if found else ""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def open_db(backend: Backend, *, read_only: bool = False) -> Iterator[Db]:
    """A connection to the backend store, committed when the block ends without error."""
    if backend.kind == "sqlite":
        assert backend.path is not None
        if not backend.path.is_file():
            raise SourceError(f"there is no MLflow database at {backend.display}")
        mode = "ro" if read_only else "rw"  # never create an empty database by mistake
        try:
            conn: Any = sqlite3.connect(f"{backend.path.as_uri()}?mode={mode}", uri=True)
        except sqlite3.Error as err:
            raise SourceError(f"cannot open the MLflow database {backend.display}: {err}") from None
    else:
        from seawall.sources.postgres import connect

        conn = connect(backend.dsn)
    with closing(conn):
        yield Db(conn, backend.kind)
        conn.commit()


# --- the artifact store ---------------------------------------------------------------------


class ArtifactStore(Protocol):
    """A directory or an S3 prefix holding a tracking server's artifacts."""

    kind: str
    #: the store's root as the database would write it: ``/abs/dir`` or ``s3://bucket/prefix``
    uri: str

    def prefixes(self) -> list[str]:
        """Every form an absolute location under this store may start with."""
        ...

    def files(self) -> list[tuple[str, int]]:
        """(relative path, size) of every file, sorted by path."""
        ...

    def open(self, rel: str) -> AbstractContextManager[BinaryIO]: ...

    def exists(self, rel: str) -> bool: ...

    def is_empty(self) -> bool: ...

    def put_file(self, rel: str, source: Path) -> None:
        """Write ``source`` at ``rel`` (a new object or file; callers check it is absent)."""
        ...

    def remove_all(self) -> None:
        """Delete the whole store (only a store this process has just created)."""
        ...


def artifact_store(spec: str) -> ArtifactStore:
    """The store a spec names: ``s3://BUCKET[/PREFIX]``, or a directory (``file://`` or a path)."""
    parts = urlsplit(spec)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UsageError(
                f"an S3 artifact store needs a bucket: s3://BUCKET/PREFIX, not {spec!r}"
            )
        return S3Artifacts(parts.netloc, parts.path.strip("/"))
    if parts.scheme == "file":
        return LocalArtifacts(Path(unquote(parts.path)))
    if parts.scheme and len(parts.scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise UsageError(
            f"unsupported artifact store {spec!r}: give a directory or s3://BUCKET/PREFIX"
        )
    return LocalArtifacts(Path(spec).expanduser())


def key_under(store: ArtifactStore, location: str) -> str | None:
    """``location`` as a path relative to ``store`` (``""`` for the root), or None when
    it is elsewhere. ``mlflow-artifacts:`` locations are relative to the server's store."""
    if location.startswith("mlflow-artifacts:"):
        return _clean(urlsplit(location).path)
    for prefix in store.prefixes():
        if location == prefix:
            return ""
        if location.startswith(prefix + "/"):
            return _clean(location[len(prefix) + 1 :])
    return None


def _clean(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    return None if any(p in (".", "..") for p in parts) else "/".join(parts)


def location_rewrites(old: ArtifactStore, new: ArtifactStore) -> list[tuple[str, str]]:
    """(old prefix, new prefix) pairs that move absolute locations from ``old`` to ``new``,
    keeping a ``file:`` form a ``file:`` URI."""
    out = []
    for prefix in old.prefixes():
        if new.kind == "directory" and prefix.startswith("file:"):
            out.append((prefix, Path(new.uri).as_uri()))
        else:
            out.append((prefix, new.uri))
    return [(a, b) for a, b in out if a != b]


class LocalArtifacts:
    kind = "directory"

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.uri = str(self.root)

    def prefixes(self) -> list[str]:
        return [self.root.as_uri(), f"file:{self.root}", str(self.root)]

    def files(self) -> list[tuple[str, int]]:
        out = []
        for top, dirs, names in os.walk(self.root):
            dirs.sort()
            rel_top = os.path.relpath(top, self.root)
            for name in names:
                path = os.path.join(top, name)
                st = os.lstat(path)
                if os.path.isfile(path) and not os.path.islink(path):
                    rel = name if rel_top == "." else f"{rel_top}/{name}"
                    out.append((rel.replace(os.sep, "/"), st.st_size))
        return sorted(out)

    @contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        try:
            f = open(self.root / rel, "rb")  # noqa: SIM115 (closed below; only open() is guarded)
        except OSError as err:
            raise SourceError(
                f"cannot read the artifact {rel} in {self.root}: {err.strerror} (was it deleted "
                "while the backup ran? run the backup again)"
            ) from None
        with f:
            yield f

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def is_empty(self) -> bool:
        return not self.root.exists() or (self.root.is_dir() and not any(self.root.iterdir()))

    def put_file(self, rel: str, source: Path) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class S3Artifacts:
    kind = "s3"

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        """One boto3 client, made on first use (an old store named in a capture is never
        contacted). The endpoint is MLflow's: ``MLFLOW_S3_ENDPOINT_URL``."""
        if self._client is None:
            from seawall.storage.s3 import S3Storage

            endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
            self._client = S3Storage(self.bucket, self.prefix, endpoint_url=endpoint).client
        return self._client

    def prefixes(self) -> list[str]:
        return [self.uri]

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _call(self, action: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except (BotoCoreError, ClientError) as err:
            raise SourceError(f"S3 artifact store {self.uri}: cannot {action}: {err}") from None

    def files(self) -> list[tuple[str, int]]:
        start = f"{self.prefix}/" if self.prefix else ""

        def listing() -> list[tuple[str, int]]:
            out = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    rel = item["Key"][len(start) :]
                    if rel and not rel.endswith("/"):  # "dir/" markers are not files
                        out.append((rel, int(item["Size"])))
            return out

        return sorted(self._call("list the artifacts", listing))

    @contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        body = self._call(
            f"read {rel}",
            lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"],
        )
        with closing(body):
            yield cast(BinaryIO, body)

    def exists(self, rel: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise SourceError(f"S3 artifact store {self.uri}: cannot check {rel}: {err}") from None
        return True

    def is_empty(self) -> bool:
        start = f"{self.prefix}/" if self.prefix else ""
        found = self._call(
            "list the artifacts",
            lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=start, MaxKeys=1),
        )
        return not found.get("Contents")

    def put_file(self, rel: str, source: Path) -> None:
        # upload_file streams, in parts for a large file: memory stays bounded.
        self._call(
            f"write {rel}",
            lambda: self.client.upload_file(str(source), self.bucket, self._key(rel)),
        )

    def remove_all(self) -> None:
        for rel, _size in self.files():
            key = self._key(rel)
            self._call(
                f"delete {rel}", partial(self.client.delete_object, Bucket=self.bucket, Key=key)
            )


def copy_tree(source: Path, store: ArtifactStore, *, missing_only: bool, under: str = "") -> int:
    """Put the files below ``source`` into ``store`` under ``under``; with
    ``missing_only``, leave every file the store already has alone. Returns files written."""
    written = 0
    for top, dirs, names in os.walk(source):
        dirs.sort()
        for name in sorted(names):
            path = Path(top) / name
            rel = PurePosixPath(under, path.relative_to(source).as_posix()).as_posix()
            if missing_only and store.exists(rel):
                continue
            store.put_file(rel, path)
            written += 1
    return written


class HashingReader(io.RawIOBase):
    """A stream that computes the sha256 of what is read through it; ``done(hexdigest)``
    is called once the stream has been read to its end."""

    def __init__(self, source: BinaryIO, done: Callable[[str], None]) -> None:
        super().__init__()
        self._source = source
        self._done = done
        self._hash = hashlib.sha256()
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        n = len(data)
        view[:n] = data
        if n:
            self._hash.update(data)
        elif not self._finished:
            self._finished = True
            self._done(self._hash.hexdigest())
        return n


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := stream.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def files_below(files: Sequence[tuple[str, int]], rel: str) -> Iterator[str]:
    """The paths in sorted ``files`` below the directory ``rel`` ("" for all)."""
    import bisect

    start = f"{rel}/" if rel else ""
    i = bisect.bisect_left(files, (start, -1))
    while i < len(files) and files[i][0].startswith(start):
        yield files[i][0]
        i += 1
