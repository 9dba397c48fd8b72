"""The scheduler on a made-up clock, running real jobs: slots, one run for many missed
slots, no overlap, a run cut short by a stop runs again after the restart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.control.jobs import INTERRUPTED, OK, Job
from seawall.control.plane import ControlPlane
from seawall.control.schedule import Scheduled, scheduled_jobs
from seawall.errors import PlanError
from seawall.plan.runner import list_groups
from tests.conftest import reopen
from tests.control.helpers import Setup, make_setup, running

T0 = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def hourly(tmp_path: Path) -> Setup:
    return make_setup(tmp_path, schedule="{backup: '0 * * * *', forget: '0 3 * * *'}")


def _wait(jobs: list[Job]) -> None:
    for job in jobs:
        assert job.done.wait(60), job.view()


def test_slots_are_found_exactly() -> None:
    job = Scheduled("backup", "a", "0 3 * * *")
    at_three = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert job.previous(at_three) == at_three
    assert job.previous(at_three + timedelta(seconds=59)) == at_three
    assert job.previous(at_three - timedelta(seconds=1)) == at_three - timedelta(days=1)
    assert job.next(at_three) == at_three + timedelta(days=1)
    fast = Scheduled("backup", "a", "* * * * * */5")
    assert fast.previous(at_three + timedelta(seconds=7, microseconds=3)) == at_three + timedelta(
        seconds=5
    )


def test_the_plan_lists_each_assets_jobs_with_defaults_filled_in(hourly: Setup) -> None:
    jobs = {(j.kind, j.asset): j.cron for j in scheduled_jobs(hourly.plan)}
    assert jobs == {
        ("backup", "data"): "0 * * * *",
        ("forget", "data"): "0 3 * * *",
        ("backup", "models"): "0 * * * *",
        ("forget", "models"): "0 3 * * *",
    }


def test_bad_schedules_are_refused_with_their_place(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as err:
        make_setup(tmp_path / "a", schedule="{backup: 'every hour'}")
    assert "defaults.schedule.backup: invalid cron expression 'every hour'" in str(err.value)
    with pytest.raises(PlanError) as err:
        make_setup(tmp_path / "b", schedule="{copy: '0 * * * *'}")
    assert "a scheduled copy needs at least one replica" in str(err.value)


def test_due_backups_run_once_as_one_group_and_missed_slots_once(hourly: Setup) -> None:
    clock = Clock(T0)
    with running(hourly.plane(clock=clock)) as plane:
        assert plane.scheduler.tick() == [], "the first sight of a schedule runs nothing"
        clock.now = T0 + timedelta(minutes=31)  # 11:01: the 11:00 slot is due
        started = plane.scheduler.tick()
        assert [(j.kind, j.assets, j.trigger) for j in started] == [
            ("backup", ["data", "models"], "schedule")
        ]
        _wait(started)
        assert plane.scheduler.tick() == []
        clock.now = T0 + timedelta(hours=5)  # four slots went by: one run
        again = plane.scheduler.tick()
        assert len(again) == 1
        _wait(again)
        assert plane.scheduler.tick() == []
        groups = list_groups(reopen(hourly.repo))
        assert len(groups) == 2 and all(set(g.assets) == {"data", "models"} for g in groups)
        runs = plane.jobs.query(kind="backup")
        assert [r["state"] for r in runs] == [OK, OK]
        assert all(r["trigger"] == "schedule" and r["user"] == "scheduler" for r in runs)


def test_a_slot_never_starts_beside_a_run_still_going(hourly: Setup) -> None:
    clock = Clock(T0)
    with running(hourly.plane(clock=clock)) as plane:
        plane.scheduler.tick()
        release = threading.Event()
        blocker = plane.jobs.submit(
            "backup", lambda job: release.wait(30) and None, assets=["data"], user="test"
        )
        clock.now = T0 + timedelta(hours=1)
        started = plane.scheduler.tick()
        assert [j.assets for j in started] == [["models"]], "data waits for its run"
        _wait(started)
        assert plane.scheduler.tick() == []
        release.set()
        _wait([blocker])
        late = plane.scheduler.tick()
        assert [j.assets for j in late] == [["data"]], "then runs once"
        _wait(late)
        assert plane.scheduler.tick() == []


def test_a_run_cut_short_by_a_stop_runs_again_after_the_restart(hourly: Setup) -> None:
    clock = Clock(T0)
    first = hourly.plane(clock=clock)
    first.scheduler.tick()
    # The server dies while the 11:00 backup runs: its row stays "running", its
    # slot is not marked done.
    stuck = Job("dead", "backup", ["data"], "schedule", "scheduler", frozenset(), False)
    stuck.state = "running"
    first.store.insert_run(stuck.row())
    first.store.close()

    clock.now = T0 + timedelta(hours=3, minutes=10)  # restarted at 13:40
    with running(hourly.plane(clock=clock)) as plane:
        assert plane.jobs.recover() == ["dead"]
        started = plane.scheduler.tick()
        assert [(j.assets, j.trigger) for j in started] == [(["data", "models"], "catch-up")]
        _wait(started)
        assert plane.scheduler.tick() == []
        assert plane.jobs.get("dead")["state"] == INTERRUPTED  # type: ignore[index]
    # and the slot it ran for is remembered by the next server
    clock.now += timedelta(minutes=5)
    with running(hourly.plane(clock=clock)) as plane:
        assert plane.scheduler.tick() == []


def test_scheduled_forget_keeps_what_retention_says(hourly: Setup) -> None:
    clock = Clock(T0)
    with running(hourly.plane(clock=clock)) as plane:
        plane.scheduler.tick()
        for hour in (1, 2, 3):
            clock.now = T0 + timedelta(hours=hour)
            _wait(plane.scheduler.tick())
        assert len(reopen(hourly.repo).list_snapshots()) == 6
        clock.now = T0 + timedelta(hours=17)  # 03:30 next day: forget and a backup
        started = {j.kind: j for j in plane.scheduler.tick()}
        assert set(started) == {"backup", "forget"}
        _wait(list(started.values()))
        assert started["forget"].state == OK, started["forget"].error
        snaps = reopen(hourly.repo).list_snapshots()
        for asset in ("data", "models"):
            mine = sorted(s.time for s in snaps if s.asset.get("name") == asset)
            assert len(mine) == 2, "keep_last 2 of each asset"
        assert started["forget"].result is not None
        assert "prune" in started["forget"].result


def test_an_idle_plan_has_no_scheduler_thread(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    plane: ControlPlane = setup.plane()
    with running(plane):
        plane.start()
        assert plane.scheduler.jobs == [] and plane.scheduler._thread is None
