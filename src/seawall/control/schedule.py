"""The scheduler: run each asset's scheduled jobs when their cron slots come.

A scheduled job is (kind, asset, cron expression) from the plan's
``schedule`` (``backup``, ``copy``, ``forget``, ``drill``); its key is
``KIND:ASSET``. The rules:

- **At most one run at a time** per key: a slot that comes while the job
  still runs is not started beside it (it waits, then runs once; Jobs also
  refuses overlapping keys).
- **Missed slots run once**: the store keeps, per key, the slot of the last
  run that *ended* (ok or failed). At each tick a job is due when its
  newest slot at or before now is later than that. However many slots went
  by (the server was down, or a run outlasted its interval), one run
  catches up. A run that was cancelled or cut short by a stop does not
  count, so it runs again after a restart.
- **A job seen for the first time** starts from the newest slot before now
  (nothing is "missed" before the server ever knew the schedule).
- **Due together, run together**: the backups of the assets due at one
  tick are one job, so they make one snapshot group; likewise forgets (one
  prune after them).

Cron expressions are evaluated (croniter) in the time zone of the clock's
datetimes: the server's local time. The clock is a parameter, so tests
drive :meth:`Scheduler.tick` with made-up times.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from seawall.control.jobs import FAILED, OK, Job
from seawall.control.store import StateStore
from seawall.errors import JobConflict, SeawallError
from seawall.plan.model import Plan

log = logging.getLogger("seawall.schedule")
#: The longest the loop sleeps: a job refused because its previous run was still
#: going is tried again this soon, and a clock that jumped is noticed.
MAX_SLEEP = 30.0


def local_now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True)
class Scheduled:
    kind: str
    asset: str
    cron: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.asset}"

    def previous(self, now: datetime) -> datetime:
        """The newest slot at or before ``now``."""
        # From the next whole second: croniter's get_prev may return its start itself
        # when that falls inside a matching minute.
        start = now.replace(microsecond=0) + timedelta(seconds=1)
        slot: datetime = croniter(self.cron, start).get_prev(datetime)
        return slot

    def next(self, now: datetime) -> datetime:
        slot: datetime = croniter(self.cron, now).get_next(datetime)
        return slot


def scheduled_jobs(plan: Plan) -> list[Scheduled]:
    return [
        Scheduled(kind, asset.name, cron)
        for asset in plan.assets
        if asset.schedule is not None
        for kind, cron in asset.schedule.jobs().items()
    ]


#: Starts one job of ``kind`` for ``assets``; ``slots`` is each asset's slot, and
#: ``trigger`` says "schedule" or "catch-up". ``on_done`` must be called when it ends.
Starter = Callable[[str, list[str], str, Callable[[Job], None]], Job]


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        start: Starter,
        *,
        busy: Callable[[str], bool] = lambda key: False,
        clock: Callable[[], datetime] = local_now,
    ) -> None:
        self.jobs = scheduled_jobs(plan)
        #: whether a job key is held by a running job (its slot then waits)
        self.busy = busy
        self.store = store
        self.start = start
        self.clock = clock
        self.started_at = clock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def tick(self, now: datetime | None = None) -> list[Job]:
        """Start what is due at ``now``; the jobs started."""
        now = now or self.clock()
        due: dict[str, dict[str, datetime]] = {}
        for job in self.jobs:
            slot = job.previous(now)
            done = self.store.slot_done(job.key)
            if done is None:
                self.store.set_slot_done(job.key, slot)
                continue
            if slot > done and not self.busy(job.key):
                due.setdefault(job.kind, {})[job.asset] = slot
        started = []
        for kind, slots in due.items():
            trigger = "catch-up" if min(slots.values()) < self.started_at else "schedule"
            try:
                started.append(self.start(kind, sorted(slots), trigger, self._on_done(kind, slots)))
            except JobConflict as err:
                log.info("scheduled %s not started: %s", kind, err)
            except SeawallError as err:
                log.error("scheduled %s of %s could not start: %s", kind, ", ".join(slots), err)
        return started

    def _on_done(self, kind: str, slots: dict[str, datetime]) -> Callable[[Job], None]:
        def done(job: Job) -> None:
            if job.state in (OK, FAILED):
                for asset in job.assets:
                    if asset in slots:
                        self.store.set_slot_done(f"{kind}:{asset}", slots[asset])

        return done

    def upcoming(self, now: datetime | None = None) -> list[dict[str, str | None]]:
        """Each scheduled job with its last finished slot and next slot."""
        now = now or self.clock()
        out = []
        for job in self.jobs:
            done = self.store.slot_done(job.key)
            out.append(
                {
                    "kind": job.kind,
                    "asset": job.asset,
                    "cron": job.cron,
                    "last_slot": done.isoformat() if done else None,
                    "next_slot": job.next(now).isoformat(),
                }
            )
        return out

    # --- the loop -------------------------------------------------------------------------------

    def run_in_thread(self) -> None:
        if not self.jobs:
            return
        self._thread = threading.Thread(target=self._loop, name="seawall-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            try:
                self.tick(now)
            except Exception:  # never let one bad tick stop the schedule
                log.exception("scheduler tick failed")
            wake = min(job.next(now) for job in self.jobs)
            self._stop.wait(max(0.05, min(MAX_SLEEP, (wake - self.clock()).total_seconds())))
