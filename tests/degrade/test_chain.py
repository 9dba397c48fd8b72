"""The fallback chain: order, per-step timeouts (plain and async steps), breakers that
skip a failing step, misses, cache filling, and a chain with no answer."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from seawall.degrade import (
    BreakerState,
    CircuitBreaker,
    DegradeMetrics,
    FallbackChain,
    NoAnswer,
    PredictionCache,
    Step,
)
from seawall.errors import ChainExhausted, UsageError
from tests.degrade.helpers import state


@pytest.fixture
def metrics() -> DegradeMetrics:
    return DegradeMetrics.for_registry(CollectorRegistry())


class Flaky:
    """A model that can be switched off: it raises, or hangs, when told to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, x: int) -> str:
        self.calls += 1
        if self.mode == "fail":
            raise ConnectionError("connection refused by http://user:s3cret@primary")
        if self.mode == "hang":
            self.release.wait(5)
        return f"{self.name}:{x}"


def default(x: int) -> str:
    return f"default:{x}"


def chain_of(metrics: DegradeMetrics, *steps: Step[int, str]) -> FallbackChain[int, str]:
    return FallbackChain(
        [*steps, Step("default", default, timeout=None, breaker=None)], metrics=metrics
    )


def test_the_first_step_that_answers_answers_and_says_so(metrics: DegradeMetrics) -> None:
    primary, small = Flaky("primary"), Flaky("small")
    with chain_of(metrics, Step("primary", primary), Step("small", small)) as chain:
        answer = chain.predict(1)
        assert (answer.value, answer.step, answer.degraded, answer.skipped) == (
            "primary:1",
            "primary",
            False,
            (),
        )
        primary.mode = "fail"
        answer = chain.predict(2)
        assert (answer.value, answer.step, answer.degraded) == ("small:2", "small", True)
        # The step's error type is kept; its message (here, with a password) is not.
        assert answer.skipped == (("primary", "error (ConnectionError)"),)
        small.mode = "fail"
        answer = chain.predict(3)
        assert (answer.value, answer.step) == ("default:3", "default")
        assert [s for s, _ in answer.skipped] == ["primary", "small"]
        assert small.calls == 2


def test_a_step_past_its_timeout_is_abandoned_for_the_next(metrics: DegradeMetrics) -> None:
    primary = Flaky("primary")
    primary.mode = "hang"
    try:
        with chain_of(metrics, Step("primary", primary, timeout=0.05)) as chain:
            started = time.monotonic()
            answer = chain.predict(1)
            assert time.monotonic() - started < 1  # not the 5 s the primary hangs for
            assert (answer.step, answer.skipped) == (
                "default",
                (("primary", "timeout (TimeoutError)"),),
            )
            assert 0.05 <= answer.seconds < 1
    finally:
        primary.release.set()


def test_timeouts_of_async_and_plain_steps_from_an_event_loop(metrics: DegradeMetrics) -> None:
    hung = Flaky("plain")
    hung.mode = "hang"

    async def slow_async(x: int) -> str:
        await asyncio.sleep(5)
        return "never"

    async def fast_async(x: int) -> str:
        await asyncio.sleep(0)
        return f"async:{x}"

    chain = chain_of(
        metrics,
        Step("slow", slow_async, timeout=0.05),
        Step("plain", hung, timeout=0.05),
        Step("fast", fast_async, timeout=1),
    )

    async def run() -> list[str]:
        # Concurrent requests each wait for the timeouts, not for one another.
        answers = await asyncio.gather(*(chain.apredict(i) for i in range(20)))
        return [a.value for a in answers]

    started = time.monotonic()
    try:
        assert asyncio.run(run()) == [f"async:{i}" for i in range(20)]
    finally:
        hung.release.set()
        chain.close()
    assert time.monotonic() - started < 2


def test_an_open_breaker_skips_the_step_until_its_cooldown(metrics: DegradeMetrics) -> None:
    primary = Flaky("primary")
    breaker = CircuitBreaker(window=4, min_calls=4, cooldown=0.2)
    with chain_of(metrics, Step("primary", primary, breaker=breaker)) as chain:
        primary.mode = "fail"
        for i in range(20):
            assert chain.predict(i).step == "default"
        assert primary.calls == 4  # then the breaker opened: not called on every request
        assert state(breaker) is BreakerState.OPEN
        assert chain.predict(99).skipped == (("primary", "rejected"),)
        primary.mode = "ok"
        time.sleep(0.2)
        assert chain.predict(100).step == "primary"  # the trial call
        assert state(breaker) is BreakerState.CLOSED


def test_no_answer_moves_on_without_counting_a_failure(metrics: DegradeMetrics) -> None:
    def declines(x: int) -> str:
        raise NoAnswer

    breaker = CircuitBreaker(window=1, min_calls=1)
    with chain_of(metrics, Step("picky", declines, breaker=breaker)) as chain:
        for i in range(5):
            answer = chain.predict(i)
            assert (answer.step, answer.skipped) == ("default", (("picky", "miss"),))
    assert state(breaker) is BreakerState.CLOSED


def test_answers_before_the_cache_fill_it(metrics: DegradeMetrics, tmp_path: Path) -> None:
    primary, small = Flaky("primary"), Flaky("small")
    with (
        PredictionCache(tmp_path / "cache.sqlite") as cache,
        chain_of(metrics, Step("primary", primary), cache.step(), Step("small", small)) as chain,
    ):
        assert chain.predict(1).step == "primary"
        primary.mode = "fail"
        answer = chain.predict(1)
        assert (answer.value, answer.step, answer.degraded) == ("primary:1", "cache", True)
        answer = chain.predict(2)  # a miss, then the small model: it does not fill the cache
        assert answer.step == "small"
        assert answer.skipped == (("primary", "error (ConnectionError)"), ("cache", "miss"))
        assert cache.get(2) is None
        assert len(cache) == 1


def test_a_cache_that_cannot_store_does_not_cost_the_answer(
    metrics: DegradeMetrics, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def unstorable(x: int) -> object:
        return {"not json": {1, 2}}

    with (
        PredictionCache(tmp_path / "cache.sqlite") as cache,
        FallbackChain([Step("primary", unstorable), cache.step()], metrics=metrics) as chain,
    ):
        assert chain.predict(1).value == {"not json": {1, 2}}
        assert len(cache) == 0
    assert "could not cache an answer" in caplog.text


def test_a_cancelled_call_gives_back_its_trial_slot(metrics: DegradeMetrics) -> None:
    started = asyncio.Event()

    async def hangs(x: int) -> str:
        started.set()
        await asyncio.sleep(5)
        return "never"

    breaker = CircuitBreaker(window=1, min_calls=1, cooldown=0)
    breaker.record(breaker.acquire() or 0, 0.0, failed=True)  # open; half-open at once
    chain = chain_of(metrics, Step("primary", hangs, timeout=10, breaker=breaker))

    async def run() -> None:
        task = asyncio.create_task(chain.apredict(1))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.acquire() is not None  # the cancelled trial no longer holds the slot


def test_a_chain_with_no_answer_says_why_for_each_step(metrics: DegradeMetrics) -> None:
    primary = Flaky("primary")
    primary.mode = "fail"
    with (
        FallbackChain(
            [Step("primary", primary, breaker=None)], name="fraud", metrics=metrics
        ) as chain,
        pytest.raises(ChainExhausted) as caught,
    ):
        chain.predict(1)
    assert caught.value.reasons == [("primary", "error (ConnectionError)")]
    assert "fraud" in str(caught.value) and "safe default" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_bad_chains_are_refused(metrics: DegradeMetrics) -> None:
    async def coro(x: int) -> str:
        return ""

    with pytest.raises(UsageError, match="distinct names"):
        FallbackChain([], metrics=metrics)
    with pytest.raises(UsageError, match="distinct names"):
        FallbackChain([Step("a", default), Step("a", default)], metrics=metrics)
    with pytest.raises(UsageError, match="timeouts"):
        FallbackChain([Step("a", default, timeout=0)], metrics=metrics)
    with FallbackChain([Step("a", coro), Step("b", default)], metrics=metrics) as chain:
        with pytest.raises(UsageError, match="apredict"):
            chain.predict(1)
        assert asyncio.run(chain.apredict(1)).step == "a"


def test_a_chain_declared_in_the_plan(tmp_path: Path) -> None:
    from seawall.degrade import chain_from_plan
    from seawall.errors import PlanError
    from seawall.plan.model import load_plan

    head = "version: 1\nrepositories: {primary: {location: repo}}\n"
    head += "assets: [{name: d, kind: files, paths: [d]}]\n"
    (tmp_path / "seawall.yaml").write_text(
        head
        + "degrade:\n"
        + "  fraud:\n"
        + "    steps:\n"
        + "      - name: primary\n"
        + "        timeout: 0.05\n"
        + "        breaker: {min_calls: 1, window: 2, cooldown: 3600}\n"
        + "      - {name: default, timeout: null, breaker: null}\n"
    )
    plan = load_plan(tmp_path / "seawall.yaml")

    def down(x: int) -> int:
        raise OSError("primary is down")

    chain = chain_from_plan(plan, "fraud", {"primary": down, "default": lambda x: -1})
    first = chain.predict(1)
    assert (first.value, first.step, first.degraded) == (-1, "default", True)
    # The plan's breaker (one failure in a window of two) is open now: not even tried.
    assert chain.predict(2).skipped[0][0] == "primary"
    with pytest.raises(UsageError, match="no function for step 'default'"):
        chain_from_plan(plan, "fraud", {"primary": down})
    with pytest.raises(UsageError, match="declares no fallback chain 'nope'"):
        chain_from_plan(plan, "nope", {})
    (tmp_path / "bad.yaml").write_text(head + "degrade: {fraud: {steps: [{name: a}, {name: a}]}}\n")
    with pytest.raises(PlanError, match="distinct names"):
        load_plan(tmp_path / "bad.yaml")
