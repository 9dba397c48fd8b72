"""A fallback chain: try each step in order, answer with the first that answers.

A typical chain is the primary model, then cached predictions, then a
smaller model, then a safe default::

    chain = FallbackChain(
        [
            Step("primary", primary.predict, timeout=0.5,
                 breaker=CircuitBreaker(slow_seconds=0.3)),
            cache.step(),                      # filled with the primary's answers
            Step("small", small.predict, timeout=0.1),
            Step("default", lambda x: SAFE_ANSWER, timeout=None, breaker=None),
        ],
        name="fraud",
    )
    answer = chain.predict(x)       # or: await chain.apredict(x)
    answer.value, answer.step, answer.degraded

A step is skipped while its circuit breaker is open; otherwise it is called
with its own timeout, and a failure, a timeout or ``NoAnswer`` moves on to the
next step. Steps may be plain or ``async`` functions. With a timeout, a plain
function runs on a small thread pool of its own (so a hung step cannot starve
the steps after it), and a call that times out is abandoned, not stopped: the
thread finishes it in the background. ``timeout=None`` calls it inline: only
for steps that are quick and local (a cache, a constant).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from seawall.degrade.breaker import CircuitBreaker
from seawall.degrade.metrics import DegradeMetrics, Outcome, StepInfo
from seawall.errors import ChainExhausted, UsageError
from seawall.plan.model import Breaker, Plan

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class NoAnswer(Exception):
    """Raised by a step that has no answer for this input (a cache miss, an input a
    model declines): the chain moves on, and the step's breaker counts no failure."""


@dataclass
class Step(Generic[In, Out]):
    name: str
    fn: Callable[[In], Out] | Callable[[In], Awaitable[Out]]
    #: seconds; None: call inline, with no timeout (quick local steps only)
    timeout: float | None = 1.0
    #: None: never skipped
    breaker: CircuitBreaker | None = field(default_factory=CircuitBreaker)
    #: makes this a cache step: the answers of the steps before it are stored with it
    fill: Callable[[In, Out], None] | None = None


@dataclass(frozen=True)
class Answer(Generic[Out]):
    value: Out
    #: the name of the step that produced it
    step: str
    #: produced by a step after the first: the service is running degraded
    degraded: bool
    seconds: float
    #: (step, why) for each step before it: rejected, miss, timeout, error (ExceptionType)
    skipped: tuple[tuple[str, str], ...] = ()


class FallbackChain(Generic[In, Out]):
    def __init__(
        self,
        steps: Sequence[Step[In, Out]],
        *,
        name: str = "default",
        metrics: DegradeMetrics | None = None,
        workers: int = 16,
    ) -> None:
        """``workers``: threads per step with a timeout and a plain function; calls past
        that many wait, and the wait counts against the step's timeout."""
        names = [s.name for s in steps]
        if not steps or len(set(names)) != len(names) or not all(names):
            raise UsageError(f"a fallback chain needs steps with distinct names, not {names}")
        bad = [s.name for s in steps if s.timeout is not None and not s.timeout > 0]
        if bad:
            raise UsageError(f"step timeouts must be positive seconds or None: {', '.join(bad)}")
        self.name = name
        self.steps = tuple(steps)
        self._async = [_is_async(s.fn) for s in steps]
        # The caches after each step, which its answers fill.
        self._fills = [[s.fill for s in steps[i + 1 :] if s.fill] for i in range(len(steps))]
        self._pools = [
            ThreadPoolExecutor(workers, thread_name_prefix=f"degrade-{s.name}")
            if s.timeout is not None and not is_async
            else None
            for s, is_async in zip(steps, self._async, strict=True)
        ]
        self._metrics = (metrics or DegradeMetrics.for_registry()).bind(
            name, [StepInfo(s.name, s.breaker, s.fill is not None) for s in steps]
        )

    def predict(self, x: In) -> Answer[Out]:
        """The first answer of the chain, from this thread (no ``async`` steps allowed)."""
        if any(self._async):
            steps = [s.name for s, a in zip(self.steps, self._async, strict=True) if a]
            raise UsageError(
                f"chain {self.name!r} has async steps ({', '.join(steps)}): "
                "call apredict from an event loop"
            )
        started = time.perf_counter()
        skipped: list[tuple[str, str]] = []
        for i in range(len(self.steps)):
            ticket = self._admit(i, skipped)
            if ticket is None:
                continue
            called = time.perf_counter()
            try:
                value = self._call(i, x)
            except Exception as err:
                self._failed(i, ticket, called, err, skipped)
                continue
            except BaseException:
                self._release(i, ticket)
                raise
            return self._answered(i, ticket, called, x, value, skipped, started)
        raise self._exhausted(skipped)

    async def apredict(self, x: In) -> Answer[Out]:
        """The first answer of the chain, from an event loop."""
        started = time.perf_counter()
        skipped: list[tuple[str, str]] = []
        for i in range(len(self.steps)):
            ticket = self._admit(i, skipped)
            if ticket is None:
                continue
            called = time.perf_counter()
            try:
                value = await self._acall(i, x)
            except Exception as err:
                self._failed(i, ticket, called, err, skipped)
                continue
            except BaseException:  # cancelled: the caller gave up, the step did not fail
                self._release(i, ticket)
                raise
            return self._answered(i, ticket, called, x, value, skipped, started)
        raise self._exhausted(skipped)

    def close(self) -> None:
        """Stop the thread pools (calls still running finish in the background)."""
        for pool in self._pools:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> FallbackChain[In, Out]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calling one step ------------------------------------------------------------------

    def _call(self, i: int, x: In) -> Out:
        step, pool = self.steps[i], self._pools[i]
        if pool is None:
            return cast(Out, step.fn(x))
        future = pool.submit(step.fn, x)
        try:
            return cast(Out, future.result(step.timeout))
        except TimeoutError:
            future.cancel()  # if it is still queued, it never runs
            raise

    async def _acall(self, i: int, x: In) -> Out:
        step, pool = self.steps[i], self._pools[i]
        if self._async[i]:
            call = cast(Awaitable[Out], step.fn(x))
        elif pool is None:
            return cast(Out, step.fn(x))
        else:
            fn = cast(Callable[[In], Out], step.fn)
            call = asyncio.get_running_loop().run_in_executor(pool, fn, x)
        # asyncio.timeout, not wait_for: no task of its own, so no extra turn of the loop.
        async with asyncio.timeout(step.timeout):
            return await call

    # --- bookkeeping shared by predict and apredict --------------------------------------------

    def _admit(self, i: int, skipped: list[tuple[str, str]]) -> int | None:
        breaker = self.steps[i].breaker
        if breaker is None:
            return 0
        ticket = breaker.acquire()
        if ticket is None:
            self._note(i, "rejected", skipped)
        return ticket

    def _failed(
        self,
        i: int,
        ticket: int,
        called: float,
        err: Exception,
        skipped: list[tuple[str, str]],
    ) -> None:
        step = self.steps[i]
        if isinstance(err, NoAnswer):
            self._release(i, ticket)
            self._note(i, "miss", skipped)
            return
        if step.breaker is not None:
            step.breaker.record(ticket, time.perf_counter() - called, failed=True)
        outcome: Outcome = "timeout" if isinstance(err, TimeoutError) else "error"
        # Only the exception's type reaches the answer: its message may hold secrets.
        logger.debug("step %s of chain %s failed", step.name, self.name, exc_info=err)
        self._note(i, outcome, skipped, f"{outcome} ({type(err).__name__})")

    def _answered(
        self,
        i: int,
        ticket: int,
        called: float,
        x: In,
        value: Out,
        skipped: list[tuple[str, str]],
        started: float,
    ) -> Answer[Out]:
        step = self.steps[i]
        if step.breaker is not None:
            step.breaker.record(ticket, time.perf_counter() - called, failed=False)
        self._metrics.outcome(i, "ok")
        for fill in self._fills[i]:
            try:
                fill(x, value)
            except Exception:  # a full disk must not cost the caller its answer
                logger.warning("chain %s could not cache an answer", self.name, exc_info=True)
        return Answer(value, step.name, i > 0, time.perf_counter() - started, tuple(skipped))

    def _release(self, i: int, ticket: int) -> None:
        breaker = self.steps[i].breaker
        if breaker is not None:
            breaker.release(ticket)

    def _note(
        self, i: int, outcome: Outcome, skipped: list[tuple[str, str]], why: str = ""
    ) -> None:
        self._metrics.outcome(i, outcome)
        skipped.append((self.steps[i].name, why or outcome))

    def _exhausted(self, skipped: list[tuple[str, str]]) -> ChainExhausted:
        reasons = "; ".join(f"{step}: {why}" for step, why in skipped)
        return ChainExhausted(
            f"no step of fallback chain {self.name!r} answered ({reasons}); "
            "end the chain with a step that cannot fail (a safe default)",
            skipped,
        )


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def chain_from_plan(
    plan: Plan,
    name: str,
    functions: Mapping[str, Callable[[Any], Any]],
    *,
    fills: Mapping[str, Callable[[Any, Any], None]] | None = None,
    metrics: DegradeMetrics | None = None,
) -> FallbackChain[Any, Any]:
    """The fallback chain ``name`` declared in the plan's ``degrade:`` section: its
    steps, timeouts and breakers from the plan, each step's function from
    ``functions`` (by step name; ``fills`` makes a step a cache, see Step.fill).

    UsageError if the plan has no such chain, or a step has no function, or a
    function no step."""
    spec = plan.degrade.get(name)
    if spec is None:
        known = ", ".join(sorted(plan.degrade)) or "none"
        raise UsageError(f"the plan {plan.origin} declares no fallback chain {name!r} ({known})")
    steps = [s.name for s in spec.steps]
    fills = fills or {}
    missing = [s for s in steps if s not in functions]
    extra = sorted(set(functions) - set(steps)) + sorted(set(fills) - set(steps))
    if missing or extra:
        raise UsageError(
            f"fallback chain {name!r}: "
            + "; ".join(
                [f"no function for step {s!r}" for s in missing]
                + [f"{s!r} is not a step of it (steps: {', '.join(steps)})" for s in extra]
            )
        )
    return FallbackChain(
        [
            Step(
                s.name,
                functions[s.name],
                timeout=s.timeout,
                breaker=_breaker(s.breaker),
                fill=fills.get(s.name),
            )
            for s in spec.steps
        ],
        name=name,
        metrics=metrics,
    )


def _breaker(spec: Breaker | None) -> CircuitBreaker | None:
    if spec is None:
        return None
    return CircuitBreaker(
        failure_rate=spec.failure_rate,
        slow_seconds=spec.slow_seconds,
        slow_rate=spec.slow_rate,
        window=spec.window,
        min_calls=spec.min_calls,
        cooldown=spec.cooldown,
        trial_calls=spec.trial_calls,
    )
