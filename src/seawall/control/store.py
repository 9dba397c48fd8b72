"""The control plane's state: one SQLite database and one secret key in a state directory.

What is here is what ``seawall serve`` must remember across restarts and
what is not the repository's business: users and their hashed tokens and
sealed TOTP secrets, the record of every job run, the last cron slot each
scheduled job ran for, and the newest audit entry seen per repository (an
anchor that lets ``audit verify`` notice entries cut off the end of the log).
The audit log itself lives in the repository, so losing this directory loses
no evidence.

``secret.key`` (32 random bytes, owner-only) keys the token digests and
seals the TOTP secrets: a copy of ``state.db`` alone neither checks a
guessed token nor yields a second factor.

The database is opened in WAL mode with a busy timeout, so the server and a
``seawall user ...`` command on the same host can use it at once. One
connection per StateStore, serialized by a lock: every statement is tiny.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seawall.errors import IntegrityError, UsageError

SCHEMA_VERSION = 1
DB_NAME = "state.db"
KEY_NAME = "secret.key"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    totp_sealed BLOB NOT NULL,
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    digest BLOB NOT NULL,
    created TEXT NOT NULL,
    expires TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    assets TEXT NOT NULL,
    trigger TEXT NOT NULL,
    user TEXT NOT NULL,
    slot TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    state TEXT NOT NULL,
    error TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created);
CREATE TABLE IF NOT EXISTS slots (job TEXT PRIMARY KEY, done TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_heads (
    repo TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL
);
"""


@dataclass
class RunRow:
    """One run of a job, as recorded (see jobs.py for the live view)."""

    id: str
    kind: str
    assets: list[str]
    trigger: str
    user: str
    slot: str | None
    created: str
    started: str | None
    finished: str | None
    state: str
    error: str | None
    result: dict[str, Any] | None


class StateStore:
    """The state directory: ``state.db`` and ``secret.key``, created on first use."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser().absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._secret = _secret_key(self.directory / KEY_NAME)
            self._db = sqlite3.connect(
                self.directory / DB_NAME, check_same_thread=False, isolation_level=None
            )
            os.chmod(self.directory / DB_NAME, 0o600)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(tokens)")}
            if "expires" not in columns:  # a state directory of before token expiry
                self._db.execute("ALTER TABLE tokens ADD COLUMN expires TEXT")
        except (OSError, sqlite3.Error) as err:
            raise UsageError(f"cannot use {self.directory} as the state directory: {err}") from None
        self._lock = threading.Lock()
        version = self.scalar("SELECT value FROM meta WHERE key = 'schema'")
        if version is None:
            self.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(version) > SCHEMA_VERSION:
            raise UsageError(
                f"the state directory {self.directory} was written by a newer seawall "
                f"(schema {version}); upgrade seawall"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- statements -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Statements that must hold together (BEGIN IMMEDIATE: writers queue up)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    # --- secrets ------------------------------------------------------------------------------

    def digest(self, token: str) -> bytes:
        """A keyed digest of an API token. Tokens are 256-bit random strings, so a
        fast keyed hash is as strong as a slow password hash here (nothing to brute
        force), and costs microseconds per request instead of tens of milliseconds."""
        return hmac.new(self._subkey(b"token"), token.encode(), hashlib.sha256).digest()

    def seal(self, plaintext: bytes, label: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._subkey(b"seal")).encrypt(nonce, plaintext, label.encode())

    def unseal(self, sealed: bytes, label: str) -> bytes:
        try:
            return AESGCM(self._subkey(b"seal")).decrypt(sealed[:12], sealed[12:], label.encode())
        except InvalidTag:
            raise IntegrityError(
                f"a secret in {self.directory / DB_NAME} does not open with {KEY_NAME}: "
                "the two files do not belong together"
            ) from None

    def _subkey(self, purpose: bytes) -> bytes:
        return hmac.new(self._secret, b"seawall control " + purpose, hashlib.sha256).digest()

    # --- runs -------------------------------------------------------------------------------

    def insert_run(self, run: RunRow) -> None:
        self.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.id,
                run.kind,
                json.dumps(run.assets),
                run.trigger,
                run.user,
                run.slot,
                run.created,
                run.started,
                run.finished,
                run.state,
                run.error,
                json.dumps(run.result) if run.result is not None else None,
            ),
        )

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"], default=str)
        assigns = ", ".join(f"{name} = ?" for name in fields)  # names are ours, never input
        self.execute(f"UPDATE runs SET {assigns} WHERE id = ?", (*fields.values(), run_id))

    def run(self, run_id: str) -> RunRow | None:
        found = self.rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run_row(found[0]) if found else None

    def runs(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[RunRow]:
        """The newest ``limit`` runs, newest first."""
        where, params = [], []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if state:
            where.append("state = ?")
            params.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        found = self.rows(
            f"SELECT * FROM runs {clause} ORDER BY created DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [_run_row(r) for r in found]

    # --- schedule slots -----------------------------------------------------------------------

    def slot_done(self, job: str) -> datetime | None:
        value = self.scalar("SELECT done FROM slots WHERE job = ?", (job,))
        return datetime.fromisoformat(value) if value else None

    def set_slot_done(self, job: str, slot: datetime) -> None:
        self.execute(
            "INSERT INTO slots VALUES (?, ?) ON CONFLICT (job) DO UPDATE SET done = excluded.done",
            (job, slot.isoformat()),
        )

    # --- audit anchors -----------------------------------------------------------------------

    def audit_head(self, repo_id: str) -> tuple[int, str] | None:
        found = self.rows("SELECT seq, hash FROM audit_heads WHERE repo = ?", (repo_id,))
        return (int(found[0][0]), str(found[0][1])) if found else None

    def raise_audit_head(self, repo_id: str, seq: int, digest: str) -> None:
        """Remember the newest entry seen (never moves back)."""
        self.execute(
            "INSERT INTO audit_heads VALUES (?, ?, ?) ON CONFLICT (repo) DO UPDATE SET "
            "seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > audit_heads.seq",
            (repo_id, seq, digest),
        )


def _run_row(row: tuple[Any, ...]) -> RunRow:
    values = list(row)
    values[2] = json.loads(values[2])
    values[11] = json.loads(values[11]) if values[11] else None
    return RunRow(*values)


def _secret_key(path: Path) -> bytes:
    """The state directory's key: made once, owner-only, never shown."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != 32:
            raise UsageError(f"{path} is not a seawall state key (32 bytes)") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key
