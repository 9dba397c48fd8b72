"""The circuit breaker: its transitions, thresholds, cool-down, and sharing between
threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from seawall.degrade import BreakerState, CircuitBreaker
from seawall.errors import UsageError
from tests.degrade.helpers import state


class Clock:
    """A clock the test moves by hand, so cool-downs take no real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def calls(breaker: CircuitBreaker, n: int, *, failed: bool, seconds: float = 0.01) -> None:
    for _ in range(n):
        ticket = breaker.acquire()
        assert ticket is not None, "the breaker refused a call it should have let through"
        breaker.record(ticket, seconds, failed=failed)


def test_opens_on_the_failure_rate_once_enough_calls_are_seen() -> None:
    breaker = CircuitBreaker(failure_rate=0.5, window=10, min_calls=4, clock=Clock())
    calls(breaker, 3, failed=True)
    assert state(breaker) is BreakerState.CLOSED  # 3 calls: fewer than min_calls
    calls(breaker, 1, failed=True)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.acquire() is None


def test_old_outcomes_leave_the_window() -> None:
    breaker = CircuitBreaker(failure_rate=0.5, window=4, min_calls=4, clock=Clock())
    calls(breaker, 1, failed=True)
    calls(breaker, 4, failed=False)  # pushes the failure out
    calls(breaker, 1, failed=True)
    assert state(breaker) is BreakerState.CLOSED  # 1 failure in the last 4
    calls(breaker, 1, failed=True)
    assert state(breaker) is BreakerState.OPEN  # 2 in the last 4


def test_opens_on_slow_calls_that_succeed() -> None:
    breaker = CircuitBreaker(slow_seconds=0.2, slow_rate=0.5, window=4, min_calls=4, clock=Clock())
    calls(breaker, 2, failed=False, seconds=0.01)
    calls(breaker, 1, failed=False, seconds=0.5)
    assert state(breaker) is BreakerState.CLOSED
    calls(breaker, 1, failed=False, seconds=0.2)
    assert state(breaker) is BreakerState.OPEN


def test_cooldown_then_half_open_trial_closes_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker(window=2, min_calls=2, cooldown=30, trial_calls=2, clock=clock)
    calls(breaker, 2, failed=True)
    clock.now += 29.9
    assert breaker.acquire() is None
    assert state(breaker) is BreakerState.OPEN
    clock.now += 0.1
    assert state(breaker) is BreakerState.HALF_OPEN
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None
    assert breaker.acquire() is None  # only trial_calls at once
    breaker.record(first, 0.01, failed=False)
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.record(second, 0.01, failed=False)
    assert state(breaker) is BreakerState.CLOSED
    calls(breaker, 1, failed=True)  # a fresh window: one failure is below min_calls
    assert state(breaker) is BreakerState.CLOSED


def test_a_failed_trial_opens_it_for_a_whole_new_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(window=2, min_calls=2, cooldown=30, clock=clock)
    calls(breaker, 2, failed=True)
    clock.now += 30
    ticket = breaker.acquire()
    assert ticket is not None
    clock.now += 5
    breaker.record(ticket, 0.01, failed=True)
    assert state(breaker) is BreakerState.OPEN
    clock.now += 29
    assert breaker.acquire() is None
    clock.now += 1
    assert breaker.acquire() is not None


def test_outcomes_of_calls_from_before_a_state_change_are_ignored() -> None:
    clock = Clock()
    breaker = CircuitBreaker(window=2, min_calls=2, cooldown=1, clock=clock)
    slow_call = breaker.acquire()  # let through while closed, answers much later
    assert slow_call is not None
    calls(breaker, 2, failed=True)
    clock.now += 1
    trial = breaker.acquire()
    assert trial is not None
    breaker.record(slow_call, 0.01, failed=False)  # says nothing about the step now
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.acquire() is None  # the trial slot is still taken
    breaker.record(trial, 0.01, failed=False)
    assert state(breaker) is BreakerState.CLOSED


def test_release_frees_a_trial_slot_without_an_outcome() -> None:
    clock = Clock()
    breaker = CircuitBreaker(window=1, min_calls=1, cooldown=1, clock=clock)
    calls(breaker, 1, failed=True)
    clock.now += 1
    ticket = breaker.acquire()
    assert ticket is not None and breaker.acquire() is None
    breaker.release(ticket)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.acquire() is not None


@pytest.mark.parametrize(
    ("failures", "expected"),
    [((125, 125, 125, 125), BreakerState.OPEN), ((125, 125, 125, 124), BreakerState.CLOSED)],
)
def test_counts_stay_exact_under_threads(failures: tuple[int, ...], expected: BreakerState) -> None:
    """1000 outcomes recorded from 4 threads at once, half of them failures (or one
    fewer): a lost update would change whether the 1000th call opens it."""
    breaker = CircuitBreaker(failure_rate=0.5, window=1000, min_calls=1000, clock=Clock())
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        start.wait()
        for i in range(250):
            ticket = breaker.acquire()
            assert ticket is not None
            breaker.record(ticket, 0.0, failed=i < n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in failures]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state(breaker) is expected


def test_half_open_lets_exactly_trial_calls_through_threads_and_tasks() -> None:
    clock = Clock()
    breaker = CircuitBreaker(window=1, min_calls=1, cooldown=1, trial_calls=3, clock=clock)
    calls(breaker, 1, failed=True)
    clock.now += 1
    tickets: list[int | None] = []
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        tickets.append(breaker.acquire())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted = [t for t in tickets if t is not None]
    assert len(granted) == 3
    for ticket in granted:
        breaker.release(ticket)

    async def task() -> bool:
        await asyncio.sleep(0)
        ticket = breaker.acquire()
        await asyncio.sleep(0.01)  # hold it across a suspension, as a real call does
        if ticket is not None:
            breaker.record(ticket, 0.01, failed=False)
        return ticket is not None

    async def run() -> list[bool]:
        return await asyncio.gather(*(task() for _ in range(50)))

    assert sum(asyncio.run(run())) == 3
    assert state(breaker) is BreakerState.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_rate": 0},
        {"slow_rate": 1.5},
        {"window": 5, "min_calls": 6},
        {"min_calls": 0},
        {"cooldown": -1},
        {"trial_calls": 0},
        {"slow_seconds": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError, match="circuit breaker"):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
