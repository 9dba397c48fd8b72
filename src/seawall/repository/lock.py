"""Repository locks.

A lock is a sealed JSON object under ``locks/``. Backups, restores and checks
take shared locks; prune takes an exclusive one. To lock, a process writes
its lock, then lists the others: if a conflicting live lock exists it removes
its own and fails, so two racing processes can both fail but never both win.
A holder refreshes its lock every few minutes; a lock not refreshed for
``STALE_AFTER`` seconds, or held by a dead process on this host, is stale.

A lock may name a ``purpose`` (e.g. ``audit``): such locks exclude only each
other, whatever ``exclusive`` says, and are ignored by the repository's own
locks (and they ignore them), so a short critical section such as appending
to the audit log never blocks a backup or a prune, nor is blocked by one.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seawall.errors import ObjectNotFound, RepositoryLocked, SeawallError

if TYPE_CHECKING:
    from seawall.repository.repo import Repository

LOCK_AAD = b"seawall lock"
REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0


@dataclass(frozen=True)
class LockInfo:
    id: str
    exclusive: bool
    hostname: str
    pid: int
    username: str
    time: float
    #: "" for the repository's locks; else a lock that excludes only its own purpose
    purpose: str = ""

    def describe(self) -> str:
        kind = self.purpose or ("exclusive" if self.exclusive else "shared")
        age = time.time() - self.time
        return (
            f"{kind} lock {self.id[:8]} held by PID {self.pid} on {self.hostname} "
            f"({self.username}), refreshed {age:.0f}s ago"
        )

    def is_stale(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - self.time > STALE_AFTER:
            return True
        if self.hostname == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False


def _doc(exclusive: bool, purpose: str) -> dict[str, Any]:
    doc = {
        "exclusive": exclusive,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "username": getpass.getuser(),
        "time": time.time(),
    }
    return {**doc, "purpose": purpose} if purpose else doc


def list_locks(repo: Repository) -> list[LockInfo]:
    locks = []
    for lock_id in repo.list_ids("locks"):
        try:
            doc = json.loads(repo.load_object("locks", lock_id))
            info = LockInfo(
                lock_id.hex(),
                bool(doc["exclusive"]),
                str(doc["hostname"]),
                int(doc["pid"]),
                str(doc["username"]),
                float(doc["time"]),
                str(doc.get("purpose", "")),
            )
        except ObjectNotFound:
            continue  # released while we listed
        except (SeawallError, ValueError, KeyError, TypeError):
            # Unreadable (damaged, or junk): stale, so it cannot lock everyone out,
            # and `unlock` removes it.
            info = LockInfo(lock_id.hex(), False, "?", 0, "?", 0.0)
        locks.append(info)
    return locks


class Lock:
    """A held lock; use as a context manager. Refreshes itself in a thread."""

    def __init__(self, repo: Repository, exclusive: bool, *, purpose: str = "") -> None:
        self.repo = repo
        self.exclusive = exclusive
        self.purpose = purpose
        self._id = repo.save_object("locks", json.dumps(_doc(exclusive, purpose)).encode())
        try:
            self._check_conflicts()
        except BaseException:
            self._delete(self._id)
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True, name="lock-refresh")
        self._thread.start()

    def _check_conflicts(self) -> None:
        for other in list_locks(self.repo):
            if other.id == self._id.hex() or other.is_stale() or other.purpose != self.purpose:
                continue
            if self.exclusive or other.exclusive or self.purpose:
                raise RepositoryLocked(
                    f"the repository is locked: {other.describe()}. Wait for it to finish; "
                    "if that process is gone, run `seawall unlock`"
                )

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                doc = _doc(self.exclusive, self.purpose)
                new_id = self.repo.save_object("locks", json.dumps(doc).encode())
                self._delete(self._id)
                self._id = new_id
            except SeawallError:
                continue  # try again next round; the lock only goes stale after 30 minutes

    def _delete(self, lock_id: bytes) -> None:
        with contextlib.suppress(ObjectNotFound):
            self.repo.storage.delete(f"locks/{lock_id.hex()}")

    def release(self) -> None:
        self._stop.set()
        # A refresh in progress finishes first, so the lock it writes is the one removed.
        self._thread.join()
        self._delete(self._id)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.release()
            return
        # Keep the error that ended the work (a store that is gone fails the release
        # too); a lock left behind goes stale and `unlock` removes it.
        with contextlib.suppress(SeawallError):
            self.release()


def remove_locks(repo: Repository, *, all_locks: bool = False) -> list[LockInfo]:
    """Remove stale locks (or every lock); return what was removed."""
    removed = []
    for info in list_locks(repo):
        if all_locks or info.is_stale():
            try:
                repo.storage.delete(f"locks/{info.id}")
            except ObjectNotFound:
                continue
            removed.append(info)
    return removed
