"""The jobs registry: no overlap, exclusive jobs ordered, every run recorded, events."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from seawall.control.jobs import CANCELLED, FAILED, OK, Event, Job, Jobs
from seawall.control.store import StateStore
from seawall.errors import JobConflict, UsageError


@pytest.fixture
def jobs(tmp_path: Path) -> Jobs:
    registry = Jobs(StateStore(tmp_path / "state"), workers=4)
    yield registry  # type: ignore[misc]
    registry.shutdown(5)


def test_a_job_runs_reports_progress_and_is_recorded(jobs: Jobs) -> None:
    step = threading.Event()

    def work(job: Job) -> dict[str, Any]:
        job.progress.add(files=2, nbytes=100)
        step.wait(10)
        return {"summary": "done"}

    job = jobs.submit("backup", work, assets=["data"], user="alice")
    for _ in range(100):
        view = jobs.get(job.id)
        if view and view["progress"] and view["progress"]["bytes_done"] == 100:
            break
        time.sleep(0.02)
    assert view is not None and view["state"] == "running"
    assert view["progress"]["files_done"] == 2
    step.set()
    done = jobs.wait(job.id, 10)
    assert done is not None and done["state"] == OK and done["result"] == {"summary": "done"}
    assert done["progress"] is None
    row = jobs.store.run(job.id)
    assert row is not None and row.state == OK and row.user == "alice" and row.assets == ["data"]


def test_overlapping_keys_are_refused_until_the_first_ends(jobs: Jobs) -> None:
    release = threading.Event()
    first = jobs.submit(
        "backup", lambda job: release.wait(10) and None, assets=["a", "b"], user="x"
    )
    with pytest.raises(JobConflict, match=first.id):
        jobs.submit("backup", lambda job: None, assets=["b"], user="x")
    other = jobs.submit("backup", lambda job: None, assets=["c"], user="x")
    assert jobs.wait(other.id, 10)["state"] == OK  # type: ignore[index]
    release.set()
    jobs.wait(first.id, 10)
    again = jobs.submit("backup", lambda job: None, assets=["b"], user="x")
    assert jobs.wait(again.id, 10)["state"] == OK  # type: ignore[index]


def test_an_exclusive_job_waits_for_shared_ones_and_blocks_new_ones(jobs: Jobs) -> None:
    order: list[str] = []
    release = threading.Event()

    def shared(name: str) -> Any:
        def work(job: Job) -> None:
            order.append(f"{name} start")
            release.wait(10)
            order.append(f"{name} end")

        return work

    a = jobs.submit("backup", shared("backup"), assets=["a"], user="x")
    time.sleep(0.1)
    prune = jobs.submit(
        "prune", lambda job: order.append("prune") and None, assets=[], user="x", exclusive=True
    )
    time.sleep(0.1)
    b = jobs.submit("copy", lambda job: order.append("copy") and None, assets=["a"], user="x")
    time.sleep(0.2)
    assert order == ["backup start"], "prune waits for the backup; the copy waits for prune"
    release.set()
    for job in (a, prune, b):
        assert job.done.wait(10)
    assert order == ["backup start", "backup end", "prune", "copy"]


def test_failures_and_cancellations_are_recorded_with_their_reason(jobs: Jobs) -> None:
    def fails(job: Job) -> None:
        raise UsageError("no such asset 'x'")

    def bug(job: Job) -> None:
        raise ZeroDivisionError("oops")

    def slow(job: Job) -> None:
        for _ in range(500):
            job.progress.check_cancelled()
            time.sleep(0.01)

    failed = jobs.submit("backup", fails, assets=["a"], user="x")
    crashed = jobs.submit("backup", bug, assets=["b"], user="x")
    cancelled = jobs.submit("backup", slow, assets=["c"], user="x")
    time.sleep(0.05)
    assert jobs.cancel(cancelled.id)
    for job, state, text in (
        (failed, FAILED, "no such asset"),
        (crashed, FAILED, "internal error: ZeroDivisionError"),
        (cancelled, CANCELLED, "interrupted"),
    ):
        view = jobs.wait(job.id, 10)
        assert view is not None and view["state"] == state and text in view["error"]
    assert not jobs.cancel(cancelled.id)
    assert [r["state"] for r in jobs.query(state=FAILED)] == [FAILED, FAILED]


def test_subscribers_get_each_event_and_cannot_break_jobs(jobs: Jobs) -> None:
    seen: list[Event] = []
    jobs.subscribe(seen.append)
    jobs.subscribe(lambda event: 1 / 0)  # type: ignore[func-returns-value]
    job = jobs.submit("drill", lambda job: {"passed": True}, assets=["a"], user="x")
    assert jobs.wait(job.id, 10)["state"] == OK  # type: ignore[index]
    assert [e.type for e in seen] == ["job.queued", "job.started", "job.finished"]
    assert seen[-1].job["result"] == {"passed": True}


def test_a_job_refused_at_admission_never_runs(jobs: Jobs) -> None:
    ran: list[str] = []

    def refuse(job: Job) -> None:
        raise UsageError("cannot audit")

    with pytest.raises(UsageError):
        jobs.submit(
            "backup", lambda job: ran.append("x") and None, assets=["a"], user="x", admit=refuse
        )
    time.sleep(0.1)
    assert ran == [] and jobs.query() == [] and not jobs.holds("backup:a")
