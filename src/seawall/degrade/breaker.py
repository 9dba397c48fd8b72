"""A circuit breaker: stop calling a step that keeps failing, try it again after a cool-down.

States: **closed** (calls go through; the outcomes of the last ``window`` calls
are kept), **open** (no call goes through until ``cooldown`` seconds have
passed), **half-open** (up to ``trial_calls`` calls go through at once; if
``trial_calls`` succeed in a row it closes, the first failure opens it again).

It opens when, over at least ``min_calls`` recent calls, the share of failures
reaches ``failure_rate`` or the share of slow calls (``slow_seconds`` or more)
reaches ``slow_rate``.

Every method holds one ``threading.Lock`` for a few dictionary-sized steps and
never blocks or awaits inside it, so one breaker is safe to share between
threads and between the tasks of an event loop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from seawall.errors import UsageError


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_rate: float = 0.5,
        slow_seconds: float | None = None,
        slow_rate: float = 0.5,
        window: int = 20,
        min_calls: int = 5,
        cooldown: float = 10.0,
        trial_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, rate in (("failure_rate", failure_rate), ("slow_rate", slow_rate)):
            if not 0 < rate <= 1:
                raise UsageError(f"circuit breaker {name} must be in (0, 1], not {rate}")
        if not 1 <= min_calls <= window:
            raise UsageError(
                f"circuit breaker min_calls must be between 1 and window ({window}), "
                f"not {min_calls}"
            )
        if cooldown < 0 or trial_calls < 1 or (slow_seconds is not None and slow_seconds <= 0):
            raise UsageError(
                "circuit breaker cooldown must be >= 0, trial_calls >= 1 and slow_seconds > 0"
            )
        self.failure_rate = failure_rate
        self.slow_seconds = slow_seconds
        self.slow_rate = slow_rate
        self.min_calls = min_calls
        self.cooldown = cooldown
        self.trial_calls = trial_calls
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        # Each state change starts a new epoch; an outcome from an older epoch (a call
        # let through before the breaker opened) says nothing about the step now.
        self._epoch = 0
        self._opened_at = 0.0
        self._outcomes: deque[tuple[bool, bool]] = deque(maxlen=window)  # (failed, slow)
        self._failures = 0
        self._slow = 0
        self._trials = 0  # half-open: calls let through and not yet recorded
        self._trial_successes = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._expire_cooldown()
            return self._state

    def acquire(self) -> int | None:
        """Ask to call the step: a ticket to pass to ``record``/``release``, or None (refused)."""
        with self._lock:
            self._expire_cooldown()
            if self._state is BreakerState.OPEN:
                return None
            if self._state is BreakerState.HALF_OPEN:
                if self._trials >= self.trial_calls:
                    return None
                self._trials += 1
            return self._epoch

    def record(self, ticket: int, seconds: float, *, failed: bool) -> None:
        """The outcome of a call that ``acquire`` let through."""
        slow = self.slow_seconds is not None and seconds >= self.slow_seconds
        with self._lock:
            if ticket != self._epoch:
                return
            if self._state is BreakerState.HALF_OPEN:
                self._trials -= 1
                if failed or slow:
                    self._move(BreakerState.OPEN)
                else:
                    self._trial_successes += 1
                    if self._trial_successes >= self.trial_calls:
                        self._move(BreakerState.CLOSED)
                return
            if len(self._outcomes) == self._outcomes.maxlen:
                old_failed, old_slow = self._outcomes[0]
                self._failures -= old_failed
                self._slow -= old_slow
            self._outcomes.append((failed, slow))
            self._failures += failed
            self._slow += slow
            calls = len(self._outcomes)
            if calls >= self.min_calls and (
                self._failures >= self.failure_rate * calls or self._slow >= self.slow_rate * calls
            ):
                self._move(BreakerState.OPEN)

    def release(self, ticket: int) -> None:
        """Give a ticket back without an outcome (the call was cancelled or had no answer)."""
        with self._lock:
            if ticket == self._epoch and self._state is BreakerState.HALF_OPEN:
                self._trials -= 1

    def _expire_cooldown(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown:
            self._move(BreakerState.HALF_OPEN)

    def _move(self, state: BreakerState) -> None:
        self._state = state
        self._epoch += 1
        self._outcomes.clear()
        self._failures = self._slow = self._trials = self._trial_successes = 0
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
