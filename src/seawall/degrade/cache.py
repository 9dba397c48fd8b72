"""A prediction cache on disk: answers keyed by a stable hash of the input.

It is one SQLite file (WAL mode), shared safely by threads and processes,
holding at most ``max_entries`` answers: past that, the least recently used
are evicted. Answers are stored as JSON (never pickles: a cache file restored
from a backup must not be able to run code), so tuples come back as lists.

The file is an asset like any other: back it up with seawall. While the
service runs, back up a consistent copy made with ``copy_to``; a restored
file opens as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from seawall.degrade.chain import NoAnswer, Step
from seawall.errors import FormatError, UsageError

logger = logging.getLogger(__name__)

#: Seconds the writer waits for more answers before it writes a batch.
_LINGER = 0.05

#: PRAGMA application_id of a cache file ("SWPC"): a cache never writes to another database.
APPLICATION_ID = 0x53575043
SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS predictions (
    key BLOB PRIMARY KEY, value TEXT NOT NULL, used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_used ON predictions (used);
PRAGMA application_id = {APPLICATION_ID};
COMMIT;
"""


def stable_key(value: object) -> bytes:
    """SHA-256 of an unambiguous encoding of ``value``: the same input gives the same key
    in every process and on every machine (dict order does not matter; 1 and 1.0 differ).

    Takes None, bools, numbers, strings, bytes, lists, tuples, dicts with string keys,
    and arrays (numpy, or anything with ``__array__``, such as a torch tensor on the CPU).
    """
    h = hashlib.sha256()
    _feed(h, value)
    return h.digest()


def _feed(h: hashlib._Hash, value: object) -> None:
    # A type tag, and a length before anything variable, so no two inputs encode alike.
    if value is None or isinstance(value, bool):
        h.update(b"n" if value is None else b"t" if value else b"f")
    elif isinstance(value, int):
        h.update(b"i%d;" % value)
    elif isinstance(value, float):
        h.update(b"d" + struct.pack("<d", value))
    elif isinstance(value, str):
        _feed_bytes(h, b"s", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes | bytearray | memoryview):
        _feed_bytes(h, b"b", bytes(value))
    elif isinstance(value, list | tuple):
        h.update(b"l%d;" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise UsageError("a cached input's dicts must have string keys")
        h.update(b"m%d;" % len(value))
        for k in sorted(value):
            _feed(h, k)
            _feed(h, value[k])
    elif isinstance(value, np.generic):
        _feed(h, value.item())
    elif hasattr(value, "__array__"):
        array = np.ascontiguousarray(np.asarray(value))
        if array.dtype.hasobject:
            raise UsageError("cannot key a cache on an array of Python objects")
        h.update(b"a" + array.dtype.str.encode() + b"%r;" % (array.shape,))
        h.update(array.reshape(-1).view(np.uint8).data)  # bytes of any dtype, no copy
    else:
        raise UsageError(f"cannot key a prediction cache on a {type(value).__name__}")


def _feed_bytes(h: hashlib._Hash, tag: bytes, data: bytes) -> None:
    h.update(tag + b"%d;" % len(data))
    h.update(data)


class PredictionCache:
    """``put`` only queues the answer: a writer thread stores queued answers in batches
    (one transaction each), so that filling the cache from live traffic costs a request
    a hash and a dictionary entry, not a disk write. ``get`` sees queued answers at once.
    When the writer cannot keep up (``max_pending`` queued) or the file refuses a batch,
    answers are dropped, counted in ``dropped`` and logged: it is a cache."""

    def __init__(
        self, path: str | Path, *, max_entries: int = 100_000, max_pending: int = 10_000
    ) -> None:
        if max_entries < 1 or max_pending < 1:
            raise UsageError("a prediction cache needs max_entries and max_pending >= 1")
        self.path = Path(path).expanduser().absolute()
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.dropped = 0
        # Trim to 90% when full, so the count(*) of a trim is paid once per many inserts.
        self._low_water = max(1, max_entries * 9 // 10)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()  # the writer's
        try:
            self._open()
            self._reader = self._connect()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise FormatError(f"{self.path} is not a usable prediction cache: {err}") from None
        except BaseException:
            self._db.close()
            raise
        self._reader.execute("PRAGMA query_only = ON")
        self._read_lock = threading.Lock()
        self._cond = threading.Condition()
        # key -> (value JSON, or None: only mark it used; when, ns)
        self._pending: dict[bytes, tuple[str | None, int]] = {}
        self._writing: dict[bytes, tuple[str | None, int]] = {}
        self._closed = False
        self._flushing = 0  # threads waiting in flush: the writer stops lingering
        self._writer = threading.Thread(
            target=self._write_loop, name=f"prediction-cache-{self.path.name}", daemon=True
        )
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit; a short busy timeout: a cache that waits is no use to a degraded service.
        return sqlite3.connect(
            self.path, timeout=0.5, isolation_level=None, check_same_thread=False
        )

    def _open(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            if db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise UsageError(
                    f"{self.path} is a database but not a seawall prediction cache; "
                    "give the cache a file of its own"
                )
            db.executescript(SCHEMA)  # idempotent: two processes may create it at once
        db.execute("PRAGMA journal_mode = WAL")
        # A crash may lose the last answers cached, never corrupt the file: fine for a cache.
        db.execute("PRAGMA synchronous = NORMAL")
        self._count = db.execute("SELECT count(*) FROM predictions").fetchone()[0]

    def get(self, x: object, default: Any = None) -> Any:
        """The cached answer for input ``x``, or ``default``."""
        key = stable_key(x)
        with self._cond:
            self._check_open()
            queued = [self._pending.get(key), self._writing.get(key)]
        text = next((q[0] for q in queued if q is not None and q[0] is not None), None)
        if text is None:
            with self._read_lock:
                row = self._reader.execute(
                    "SELECT value FROM predictions WHERE key = ?", (key,)
                ).fetchone()
            if row is None:
                return default
            text = row[0]
        self._queue(key, None)  # used: evicted last
        return json.loads(text)

    def put(self, x: object, value: Any) -> None:
        """Store ``value`` (JSON: dicts, lists, strings, finite numbers) as the answer for ``x``."""
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise UsageError(f"a prediction cache stores JSON values only: {err}") from None
        self._queue(stable_key(x), text)

    def _queue(self, key: bytes, text: str | None) -> None:
        now = time.time_ns()
        with self._cond:
            self._check_open()
            queued = self._pending.get(key)
            if queued is None and len(self._pending) >= self.max_pending:
                self.dropped += text is not None
                return
            if not self._pending:
                self._cond.notify_all()  # a batch starts: wake the writer
            self._pending[key] = (text if text is not None or queued is None else queued[0], now)

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"the prediction cache {self.path} is closed")

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                # Let a batch gather: one transaction for many answers, few wake-ups (each
                # costs the serving threads a turn of the GIL).
                self._cond.wait_for(lambda: self._closed or self._flushing, timeout=_LINGER)
                if not self._pending:
                    return  # closed, and everything queued is written
                self._writing, self._pending = self._pending, {}
            try:
                self._write(self._writing)
            except sqlite3.Error as err:
                lost = sum(text is not None for text, _ in self._writing.values())
                logger.warning(
                    "prediction cache %s: %d answers not stored: %s", self.path, lost, err
                )
                with self._cond:
                    self.dropped += lost
            with self._cond:
                self._writing = {}
                self._cond.notify_all()

    def _write(self, batch: dict[bytes, tuple[str | None, int]]) -> None:
        db = self._db
        puts = [(key, text, used) for key, (text, used) in batch.items() if text is not None]
        used = [(used, key) for key, (text, used) in batch.items() if text is None]
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO predictions (key, value, used) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, used = excluded.used",
                puts,
            )
            db.executemany("UPDATE predictions SET used = max(used, ?) WHERE key = ?", used)
            # An estimate (replacing counts too, and other processes write): a trim recounts.
            self._count += len(puts)
            if self._count > self.max_entries:
                self._trim()
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _trim(self) -> None:
        self._count = self._db.execute("SELECT count(*) FROM predictions").fetchone()[0]
        if self._count > self.max_entries:
            excess = self._count - self._low_water
            self._db.execute(
                "DELETE FROM predictions WHERE key IN "
                "(SELECT key FROM predictions ORDER BY used LIMIT ?)",
                (excess,),
            )
            self._count = self._low_water

    def flush(self) -> None:
        """Wait until every answer queued so far is stored (or dropped)."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while (self._pending or self._writing) and self._writer.is_alive():
                    self._cond.wait()
            finally:
                self._flushing -= 1

    def __len__(self) -> int:
        self.flush()
        with self._read_lock:
            count: int = self._reader.execute("SELECT count(*) FROM predictions").fetchone()[0]
            return count

    def step(self, name: str = "cache") -> Step[Any, Any]:
        """A fallback-chain step answering from this cache, filled by the steps before it."""

        def lookup(x: Any) -> Any:
            value = self.get(x, _MISSING)
            if value is _MISSING:
                raise NoAnswer
            return value

        return Step(name, lookup, timeout=None, breaker=None, fill=self.put)

    def copy_to(self, dest: str | Path) -> Path:
        """A consistent copy of the cache in one file, with every answer queued so far
        (safe while the service runs), to back up. Replaces ``dest`` atomically."""
        dest = Path(dest).expanduser().absolute()
        if dest == self.path:
            raise UsageError("copy the prediction cache to another file than itself")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        partial.unlink(missing_ok=True)
        self.flush()
        copy = sqlite3.connect(partial)
        try:
            with self._read_lock:
                self._reader.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal beside it
        finally:
            copy.close()
        partial.replace(dest)
        return dest

    def close(self) -> None:
        """Store what is queued, and close the file."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._writer.join()
        with self._read_lock:
            self._reader.close()
        # Fold the WAL into the main file, so a backup of the file alone is complete.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def __enter__(self) -> PredictionCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MISSING = object()
