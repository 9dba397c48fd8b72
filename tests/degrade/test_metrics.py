"""Prometheus metrics: answers per step, step outcomes, cache hits, the degraded share
and breaker states, read back from a real registry."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from seawall.degrade import CircuitBreaker, DegradeMetrics, FallbackChain, PredictionCache, Step


def test_metrics_follow_an_outage_and_the_recovery(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    up = True

    def primary(x: int) -> int:
        if not up:
            raise ConnectionError("down")
        return x * 2

    def value(name: str, **labels: str) -> float:
        sample = registry.get_sample_value(name, {"chain": "m", **labels})
        return 0.0 if sample is None else sample

    breaker = CircuitBreaker(window=4, min_calls=4, cooldown=0.2)
    with (
        PredictionCache(tmp_path / "cache.sqlite") as cache,
        FallbackChain(
            [
                Step("primary", primary, breaker=breaker),
                cache.step(),
                Step("default", lambda x: -1, timeout=None, breaker=None),
            ],
            name="m",
            metrics=DegradeMetrics.for_registry(registry),
        ) as chain,
    ):
        for i in range(10):
            chain.predict(i)
        assert value("seawall_degrade_answers_total", step="primary", degraded="false") == 10
        assert value("seawall_degrade_degraded_share") == 0
        assert value("seawall_degrade_breaker_state", step="primary", state="closed") == 1

        up = False
        for i in range(20):  # 0-9 are cached, 10-19 are not
            chain.predict(i)
        assert (
            value("seawall_degrade_step_calls_total", step="primary", outcome="error") == 2
        )  # 2 of the last 4: 50%
        assert value("seawall_degrade_step_calls_total", step="primary", outcome="rejected") == 18
        assert value("seawall_degrade_cache_lookups_total", step="cache", result="hit") == 10
        assert value("seawall_degrade_cache_lookups_total", step="cache", result="miss") == 10
        assert value("seawall_degrade_answers_total", step="cache", degraded="true") == 10
        assert value("seawall_degrade_answers_total", step="default", degraded="true") == 10
        assert value("seawall_degrade_breaker_state", step="primary", state="open") == 1
        assert value("seawall_degrade_breaker_state", step="primary", state="closed") == 0
        degraded = value("seawall_degrade_degraded_share")
        assert 0.2 < degraded < 1

        up = True
        time.sleep(0.2)  # the cooldown: the next call is the trial
        for i in range(20):
            chain.predict(i)
        assert value("seawall_degrade_breaker_state", step="primary", state="closed") == 1
        assert value("seawall_degrade_degraded_share") < degraded
        assert value("seawall_degrade_answers_total", step="primary", degraded="false") == 30
    # Cache steps only have lookups; steps without a breaker have no state.
    assert value("seawall_degrade_cache_lookups_total", step="primary", result="hit") == 0
    assert value("seawall_degrade_breaker_state", step="default", state="closed") == 0


def test_one_instance_per_registry_and_several_chains_in_it() -> None:
    registry = CollectorRegistry()
    metrics = DegradeMetrics.for_registry(registry)
    assert DegradeMetrics.for_registry(registry) is metrics
    assert DegradeMetrics.for_registry() is DegradeMetrics.for_registry(REGISTRY)
    chains = [
        FallbackChain([Step("only", lambda x: x, timeout=None)], name=n, metrics=metrics)
        for n in ("a", "b")
    ]
    for chain in chains:
        chain.predict(1)
        chain.close()
    text = generate_latest(registry).decode()
    for chain_name in ("a", "b"):
        labels = f'chain="{chain_name}",degraded="false",step="only"'
        assert f"seawall_degrade_answers_total{{{labels}}} 1.0" in text
        labels = f'chain="{chain_name}",state="closed",step="only"'
        assert f"seawall_degrade_breaker_state{{{labels}}} 1.0" in text
