"""The audit log: a hash chain of sealed records kept in the repository itself.

Every operation (from the CLI, the API or the scheduler) appends an entry: a
record of kind ``audit`` (``Repository.save_record``) holding who did what,
to which assets and snapshots, from where, when, and the outcome. Because
the entries are repository objects they are encrypted, authenticated,
retained under object lock and survive the loss of the host that wrote
them.

The chain: entry ``n`` carries ``seq = n`` and ``prev``, the SHA-256 of the
canonical JSON (sorted keys, no spaces, UTF-8) of entry ``n - 1`` as stored
(``prev`` of entry 1 is 64 zeros). :func:`verify` walks the entries in
``seq`` order and names the first bad one: a missing ``seq`` (an entry
removed or unreadable), two entries with one ``seq`` (a fork), an entry
whose ``prev`` is not the hash of the entry before it (that entry was
changed, or entries were reordered). An attacker without the repository key
cannot forge an entry at all (it would not authenticate); one with the key
can rewrite the chain from some entry on, which is why the control plane
remembers the newest entry it has seen (``anchor``) and why an immutable
repository (object lock) is the real protection of old entries: there, no
entry can be replaced or deleted before its retention ends.

Concurrent appenders: appending reads the head, then writes the next entry.
Two writers doing that at once would both write ``seq = n + 1`` and fork
the chain. So appending holds a repository lock of purpose ``audit``
(repository/lock.py: such locks exclude only each other, so an append never
waits for a backup or a prune), taken with retries for up to ``wait``
seconds; within a process a mutex serializes appenders first. After
writing, the appender re-reads the entries and raises AuditError if another
entry has its ``seq`` (possible only on a store whose listings lag, where
no lock is sound): a fork is never silent.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from seawall.errors import AuditError, RepositoryLocked, SeawallError
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository

KIND = "audit"
GENESIS = "0" * 64
LOCK_PURPOSE = "audit"
#: What an entry's outcome says.
OUTCOMES = ("started", "ok", "failed", "denied", "partial")


@dataclass(frozen=True)
class Entry:
    """One audit entry as stored, with its record id and hash."""

    seq: int
    prev: str
    time: str
    #: who: an API user, or ``user@host`` for the CLI, or ``scheduler``
    user: str
    #: through what: ``cli``, ``api`` or ``schedule``
    via: str
    #: the host that ran the operation
    host: str
    #: the API client's address, when through the API
    remote: str | None
    #: ``backup``, ``restore``, ``forget``, ``user.add``, ``key.add``...
    operation: str
    outcome: str
    assets: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    #: the error message of a failure or refusal, or a short summary
    detail: str = ""
    #: the parameters that matter (never a secret)
    params: dict[str, Any] = field(default_factory=dict)
    #: the record's id (hex): not part of the hashed content
    id: str = ""
    #: SHA-256 of the canonical JSON of the stored record
    digest: str = ""

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: the record as stored, without its id."""
    body = {k: v for k, v in doc.items() if k != "id"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(doc)).hexdigest()


def _entry(doc: dict[str, Any]) -> Entry:
    return Entry(
        seq=int(doc["seq"]),
        prev=str(doc["prev"]),
        time=str(doc["time"]),
        user=str(doc.get("user", "")),
        via=str(doc.get("via", "")),
        host=str(doc.get("host", "")),
        remote=doc.get("remote"),
        operation=str(doc.get("operation", "")),
        outcome=str(doc.get("outcome", "")),
        assets=list(doc.get("assets", [])),
        snapshots=list(doc.get("snapshots", [])),
        detail=str(doc.get("detail", "")),
        params=dict(doc.get("params", {})),
        id=str(doc["id"]),
        digest=digest(doc),
    )


@dataclass(frozen=True)
class Problem:
    #: the first bad entry's seq (None for a record that cannot be read at all)
    seq: int | None
    message: str
    record: str | None = None


@dataclass
class Verification:
    entries: int
    head: Entry | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> Problem | None:
        return self.problems[0] if self.problems else None


class AuditLog:
    """The audit log of one repository. Thread-safe; keeps the entries it has read, so
    each append reads only the records written since."""

    def __init__(self, repo: Repository, *, wait: float = 30.0) -> None:
        self.repo = repo
        self.wait = wait
        self._mutex = threading.Lock()
        #: record id -> its audit doc, or None for a record of another kind
        self._known: dict[str, dict[str, Any] | None] = {}

    def append(
        self,
        *,
        user: str,
        via: str,
        host: str,
        operation: str,
        outcome: str,
        assets: Iterable[str] = (),
        snapshots: Iterable[str] = (),
        remote: str | None = None,
        detail: str = "",
        params: dict[str, Any] | None = None,
    ) -> Entry:
        """Append an entry; AuditError if it cannot be (the log stays as it was)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        try:
            with self._mutex, self._locked():
                docs, _unreadable = self._scan()
                head = max(docs, key=lambda d: int(d["seq"])) if docs else None
                doc: dict[str, Any] = {
                    "seq": int(head["seq"]) + 1 if head else 1,
                    "prev": digest(head) if head else GENESIS,
                    "time": datetime.now(UTC).isoformat(),
                    "user": user,
                    "via": via,
                    "host": host,
                    "remote": remote,
                    "operation": operation,
                    "outcome": outcome,
                    "assets": sorted(set(assets)),
                    "snapshots": sorted(set(snapshots)),
                    "detail": detail[:2000],
                    "params": params or {},
                }
                record = self.repo.save_record(KIND, doc).hex()
                stored = {"kind": KIND, **doc, "id": record}
                self._known[record] = stored
                rivals = [d for d in self._scan()[0] if d["seq"] == doc["seq"] and d is not stored]
        except (SeawallError, OSError) as err:  # OSError: a store that broke its contract
            if isinstance(err, AuditError):
                raise
            raise AuditError(f"cannot append to the audit log: {err}") from err
        if rivals:
            raise AuditError(
                f"the audit log forked: entry {doc['seq']} was written twice (records "
                f"{record[:8]} and {rivals[0]['id'][:8]}) by concurrent writers; `seawall "
                "audit verify` reports it. The store's listings may lag behind its writes"
            )
        return _entry(stored)

    def entries(self) -> tuple[list[Entry], list[tuple[str, str]]]:
        """Every readable entry in chain order, and (record id, why) for each record
        that cannot be read (it may have been an entry)."""
        with self._mutex:
            docs, unreadable = self._scan()
        entries = sorted(map(_entry, docs), key=lambda e: (e.seq, e.time, e.id))
        return entries, unreadable

    @contextmanager
    def _locked(self) -> Iterator[None]:
        deadline = time.monotonic() + self.wait
        delay = 0.02
        while True:
            try:
                lock = Lock(self.repo, exclusive=True, purpose=LOCK_PURPOSE)
                break
            except RepositoryLocked as err:
                if time.monotonic() > deadline:
                    raise AuditError(
                        f"another process has been appending to the audit log for over "
                        f"{self.wait:.0f}s ({err}); if it died, `seawall unlock` removes its "
                        "lock once stale"
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        with lock:
            yield

    def _scan(self) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Read the records not read before; the audit docs of all, and the unreadable."""
        present = {rid.hex() for rid in self.repo.list_ids("records")}
        for gone in set(self._known) - present:
            del self._known[gone]
        unreadable = []
        for rid in sorted(present - set(self._known)):
            try:
                doc = json.loads(self.repo.load_object("records", bytes.fromhex(rid)))
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                if doc.get("kind") == KIND:
                    _entry({**doc, "id": rid})  # every field it needs, of the right type
            except (SeawallError, ValueError, KeyError, TypeError) as err:
                unreadable.append((rid, str(err) or type(err).__name__))
                continue  # not remembered: read again next time
            self._known[rid] = {**doc, "id": rid} if doc.get("kind") == KIND else None
        return [d for d in self._known.values() if d is not None], unreadable


def verify(
    entries: Sequence[Entry],
    unreadable: Sequence[tuple[str, str]] = (),
    *,
    anchor: tuple[int, str] | None = None,
) -> Verification:
    """Check the chain (see the module docstring); problems in chain order, the first
    one naming the first bad entry. ``anchor`` (seq, hash) is an entry known to have
    been in the log (the control plane's memory): a log that ends before it, or holds
    another entry at its place, was cut or rewritten."""
    problems: list[Problem] = []
    hashes = {e.digest: e for e in entries}
    previous: Entry | None = None
    for entry in entries:
        expected = previous.seq + 1 if previous else 1
        base = previous.digest if previous else GENESIS
        if previous is not None and entry.seq == previous.seq:
            problems.append(
                Problem(
                    entry.seq,
                    f"entry {entry.seq} exists twice (records {previous.id[:8]} and "
                    f"{entry.id[:8]}): the log forked, or an entry was inserted",
                    entry.id,
                )
            )
            continue
        if entry.seq != expected:
            gap = f"{expected}" if entry.seq == expected + 1 else f"{expected} to {entry.seq - 1}"
            problems.append(
                Problem(
                    expected,
                    f"entry {gap} is missing (removed"
                    + (", or in a record that cannot be read" if unreadable else "")
                    + f"): entry {entry.seq} follows entry {expected - 1}",
                )
            )
        elif entry.prev != base:
            problems.append(_broken_link(entry, previous, entries, hashes))
        previous = entry
    if anchor is not None:
        seq, expected_hash = anchor
        at = [e for e in entries if e.seq == seq]
        last = entries[-1].seq if entries else 0
        if last < seq:
            problems.append(
                Problem(
                    last + 1,
                    f"the log ends at entry {last}, but the control plane saw entry {seq}: "
                    f"entries {last + 1} to {seq} were removed",
                )
            )
        elif at and all(e.digest != expected_hash for e in at):
            problems.append(
                Problem(
                    seq,
                    f"entry {seq} is not the one the control plane saw: the log was "
                    "rewritten up to there",
                    at[0].id,
                )
            )
    problems.sort(key=lambda p: p.seq if p.seq is not None else 0)
    problems[:0] = [
        Problem(None, f"record {rid[:8]} cannot be read ({why}): damaged or replaced", rid)
        for rid, why in unreadable
    ]
    return Verification(len(entries), entries[-1] if entries else None, problems)


def _broken_link(
    entry: Entry, previous: Entry | None, entries: Sequence[Entry], hashes: dict[str, Entry]
) -> Problem:
    """Entry ``n`` does not chain to entry ``n - 1``: say which is bad, and how."""
    moved_from = hashes.get(entry.prev)
    if moved_from is not None:
        return Problem(
            entry.seq,
            f"entry {entry.seq} was written right after entry {moved_from.seq}: "
            "the log was reordered",
            entry.id,
        )
    base = previous.digest if previous else GENESIS
    successor = next((e for e in entries if e.prev == base and e is not entry), None)
    if successor is not None:
        return Problem(
            entry.seq,
            f"entry {entry.seq} is out of place: entry {successor.seq} was written right "
            f"after entry {entry.seq - 1}; the log was reordered",
            entry.id,
        )
    if previous is None:
        return Problem(entry.seq, "entry 1 does not start the chain: it was changed", entry.id)
    return Problem(
        previous.seq,
        f"entry {previous.seq} was changed after entry {entry.seq} was written "
        f"(entry {entry.seq} records another hash for it)",
        previous.id,
    )


def select(
    entries: Iterable[Entry],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    user: str | None = None,
    asset: str | None = None,
    operation: str | None = None,
    outcome: str | None = None,
) -> list[Entry]:
    """The entries matching every filter given. ``operation`` matches itself and its
    sub-operations (``user`` matches ``user.add``)."""
    out = []
    for e in entries:
        if since and e.when < since:
            continue
        if until and e.when > until:
            continue
        if user and e.user != user:
            continue
        if asset and asset not in e.assets:
            continue
        if operation and not (e.operation == operation or e.operation.startswith(operation + ".")):
            continue
        if outcome and e.outcome != outcome:
            continue
        out.append(e)
    return out


def copy_audit_log(src: Repository, dst: Repository) -> int:
    """Give ``dst`` (a replica) the audit entries of ``src`` it lacks, unchanged: an
    entry's hash covers the record without its id, so the chain verifies there too, and
    the log survives the loss of the primary repository. Returns how many were copied.
    An unreadable entry is not copied (``audit verify`` on the source names it)."""
    have = {digest(doc) for doc in dst.list_records(KIND)}
    copied = 0
    for doc in src.list_records(KIND):
        if digest(doc) not in have:
            dst.save_record(KIND, {k: v for k, v in doc.items() if k not in ("id", "kind")})
            copied += 1
    return copied
