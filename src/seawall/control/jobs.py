"""Jobs: long operations run in the background, with progress, recorded when they end.

A :class:`Job` is one run of an operation (a backup of some assets, a
restore, a drill, a copy, forget and prune), started from the API or by the
scheduler. :class:`Jobs` runs each in a worker thread and keeps:

- **no overlap**: a job holds *keys* (``backup:ASSET``...); a job whose keys
  a running or queued job holds is refused with JobConflict, so one job
  never runs twice at once;
- **an order between jobs that exclude each other**: an ``exclusive`` job
  (forget, prune: they take the repository's exclusive lock) waits until the
  running shared jobs end, and shared jobs queued after it wait for it, so
  a scheduled prune does not fail on a backup's lock, nor a backup on
  prune's;
- **a record of every run** in the state store (``runs``), written when the
  job is queued and when it ends: outcome, error, result. A server killed
  mid-run leaves rows ``running``; :meth:`Jobs.recover` marks them
  ``interrupted`` at the next start;
- **progress**: each job has a :class:`~seawall.engine.progress.Progress`
  the operation updates and :meth:`Job.view` reads;
- **events**: subscribers (metrics, alerts, a dashboard) get an
  :class:`Event` when a job is queued, starts and ends. A subscriber must be
  quick and must not raise (errors are swallowed so a broken subscriber
  cannot stop jobs).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from seawall.control.store import RunRow, StateStore
from seawall.engine.progress import Progress
from seawall.errors import Cancelled, JobConflict, SeawallError

#: Job states; the last four are final.
QUEUED, RUNNING, OK, FAILED, CANCELLED, INTERRUPTED = (
    "queued",
    "running",
    "ok",
    "failed",
    "cancelled",
    "interrupted",
)
FINAL = (OK, FAILED, CANCELLED, INTERRUPTED)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Job:
    id: str
    kind: str
    assets: list[str]
    #: ``api``, ``schedule`` or ``catch-up`` (a scheduled run that was missed)
    trigger: str
    user: str
    keys: frozenset[str]
    exclusive: bool
    #: the cron slot a scheduled run is for
    slot: datetime | None = None
    progress: Progress = field(default_factory=Progress)
    created: str = field(default_factory=_now)
    started: str | None = None
    finished: str | None = None
    state: str = QUEUED
    error: str | None = None
    result: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def row(self) -> RunRow:
        return RunRow(
            self.id,
            self.kind,
            self.assets,
            self.trigger,
            self.user,
            self.slot.isoformat() if self.slot else None,
            self.created,
            self.started,
            self.finished,
            self.state,
            self.error,
            self.result,
        )

    def view(self) -> dict[str, Any]:
        """The job as JSON, with live progress while it runs."""
        out = run_view(self.row())
        if self.state == RUNNING:
            p = self.progress.view()
            out["progress"] = {
                "phase": p.phase,
                "files_done": p.files_done,
                "bytes_done": p.bytes_done,
                "files_total": p.files_total,
                "bytes_total": p.bytes_total,
                "elapsed_s": round(p.elapsed, 3),
                "rate_bytes_s": round(p.rate),
                "eta_s": round(p.eta, 1) if p.eta is not None else None,
            }
        return out


def run_view(row: RunRow) -> dict[str, Any]:
    return {**row.__dict__, "progress": None}


@dataclass(frozen=True)
class Event:
    """``job.queued``, ``job.started`` or ``job.finished``, with the job's view."""

    type: str
    job: dict[str, Any]


Work = Callable[[Job], dict[str, Any] | None]
Subscriber = Callable[[Event], None]


class _Gate:
    """Shared/exclusive admission, writers first: an exclusive job waits for the
    shared ones running; shared ones arriving meanwhile wait for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    def enter(self, exclusive: bool, cancelled: threading.Event) -> None:
        with self._cond:
            if exclusive:
                self._waiting_exclusive += 1
                try:
                    while self._exclusive or self._shared:
                        self._wait(cancelled)
                finally:
                    self._waiting_exclusive -= 1
                self._exclusive = True
            else:
                while self._exclusive or self._waiting_exclusive:
                    self._wait(cancelled)
                self._shared += 1

    def _wait(self, cancelled: threading.Event) -> None:
        if cancelled.is_set():
            raise Cancelled("cancelled before it started")
        self._cond.wait(0.5)

    def leave(self, exclusive: bool) -> None:
        with self._cond:
            if exclusive:
                self._exclusive = False
            else:
                self._shared -= 1
            self._cond.notify_all()


class Jobs:
    """The registry of jobs; see the module docstring."""

    def __init__(self, store: StateStore, *, workers: int = 4) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="seawall-job")
        self._lock = threading.Lock()
        self._live: dict[str, Job] = {}
        self._gate = _Gate()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def recover(self) -> list[str]:
        """Mark runs a previous server left queued or running as interrupted."""
        rows = self.store.runs(state=RUNNING, limit=10_000)
        rows += self.store.runs(state=QUEUED, limit=10_000)
        for row in rows:
            self.store.update_run(
                row.id,
                state=INTERRUPTED,
                finished=_now(),
                error="the server stopped while this job was running",
            )
        return [row.id for row in rows]

    def submit(
        self,
        kind: str,
        work: Work,
        *,
        assets: list[str],
        user: str,
        trigger: str = "api",
        keys: frozenset[str] | None = None,
        exclusive: bool = False,
        slot: datetime | None = None,
        admit: Callable[[Job], None] | None = None,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Queue ``work``; JobConflict if a live job holds one of ``keys`` (by default
        ``KIND:ASSET`` for each asset, or ``KIND`` without assets). ``admit`` is called
        with the job before it is queued: if it raises, the job is dropped unrun."""
        if keys is None:
            keys = frozenset(f"{kind}:{a}" for a in assets) or frozenset({kind})
        job = Job(secrets.token_hex(6), kind, sorted(assets), trigger, user, keys, exclusive, slot)
        job.progress.phase = kind
        with self._lock:
            for other in self._live.values():
                if other.keys & keys:
                    raise JobConflict(
                        f"job {other.id} ({other.kind} of {', '.join(other.assets) or 'all'}, "
                        f"{other.state}) is doing that already: wait for it to end"
                    )
            self._live[job.id] = job
        try:
            if admit is not None:
                admit(job)
        except BaseException:
            with self._lock:
                del self._live[job.id]
            raise
        self.store.insert_run(job.row())
        self._emit("job.queued", job)
        self._pool.submit(self._run, job, work, on_done)
        return job

    def _run(self, job: Job, work: Work, on_done: Callable[[Job], None] | None) -> None:
        try:
            self._gate.enter(job.exclusive, job.progress.cancel_event)
        except Cancelled as err:
            self._finish(job, CANCELLED, str(err), on_done=on_done)
            return
        try:
            job.state, job.started = RUNNING, _now()
            self.store.update_run(job.id, state=RUNNING, started=job.started)
            self._emit("job.started", job)
            job.result = work(job)
            state, error = OK, None
        except Cancelled as err:
            state, error = CANCELLED, str(err)
        except SeawallError as err:
            state, error = FAILED, str(err)
            partial = getattr(err, "result", None)
            job.result = partial if isinstance(partial, dict) else None
        except Exception as err:  # a bug: the job fails, the server goes on
            state, error = FAILED, f"internal error: {type(err).__name__}: {err}"
        finally:
            self._gate.leave(job.exclusive)
        self._finish(job, state, error, on_done=on_done)

    def _finish(
        self,
        job: Job,
        state: str,
        error: str | None = None,
        *,
        on_done: Callable[[Job], None] | None,
    ) -> None:
        """Record the outcome, let ``on_done`` do its bookkeeping, then let waiters go:
        whoever sees a job done sees everything about it."""
        job.state, job.error, job.finished = state, error, _now()
        if on_done is not None:
            try:
                on_done(job)
            except Exception:  # bookkeeping must not keep the job live forever
                logging.getLogger("seawall.jobs").exception("after job %s", job.id)
        self.store.update_run(
            job.id, state=state, error=error, finished=job.finished, result=job.result
        )
        with self._lock:
            self._live.pop(job.id, None)
        job.done.set()
        self._emit("job.finished", job)

    def _emit(self, kind: str, job: Job) -> None:
        if not self._subscribers:
            return
        event = Event(kind, job.view())
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a subscriber's bug must not stop jobs
                continue

    # --- queries --------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            live = self._live.get(job_id)
        if live is not None:
            return live.view()
        row = self.store.run(job_id)
        return run_view(row) if row else None

    def query(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs, newest first, the live ones with their progress."""
        with self._lock:
            live = dict(self._live)
        return [
            live[row.id].view() if row.id in live else run_view(row)
            for row in self.store.runs(kind=kind, state=state, limit=limit)
        ]

    def live(self) -> list[Job]:
        with self._lock:
            return list(self._live.values())

    def holds(self, key: str) -> bool:
        with self._lock:
            return any(key in job.keys for job in self._live.values())

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        with self._lock:
            job = self._live.get(job_id)
        if job is not None:
            job.done.wait(timeout)
        return self.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Ask a live job to stop (operations check between files); whether it was live."""
        with self._lock:
            job = self._live.get(job_id)
        if job is None:
            return False
        job.progress.cancel_event.set()
        return True

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every live job, wait up to ``timeout`` for them, stop the workers."""
        for job in self.live():
            job.progress.cancel_event.set()
        for job in self.live():
            job.done.wait(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
