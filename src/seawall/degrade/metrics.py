"""Prometheus metrics of fallback chains.

One ``DegradeMetrics`` per registry holds the metrics of every chain in it
(labelled by chain and step); ``DegradeMetrics.for_registry`` hands out that
one, so building several chains never registers a name twice::

    seawall_degrade_answers_total{chain,step,degraded}     answers, by the step that gave them
    seawall_degrade_step_calls_total{chain,step,outcome}   each step's outcomes: ok, error,
                                                           timeout, miss, rejected (breaker open)
    seawall_degrade_cache_lookups_total{chain,step,result} cache steps: hit or miss
    seawall_degrade_degraded_share{chain}                  share of degraded answers, moving
                                                           average over about 100 answers
    seawall_degrade_breaker_state{chain,step,state}        1 for the breaker's current state

Breaker states are read when the registry is scraped, so they cost nothing
per request; the per-request counters are bound to their labels up front.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from seawall.degrade.breaker import BreakerState, CircuitBreaker

Outcome = Literal["ok", "error", "timeout", "miss", "rejected"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "error", "timeout", "miss", "rejected")

#: Weight of the newest answer in the degraded share: about the last 100 answers count.
_SHARE_WEIGHT = 2 / 101


@dataclass(frozen=True)
class StepInfo:
    """What the metrics need to know of a chain's step."""

    name: str
    breaker: CircuitBreaker | None
    is_cache: bool


class DegradeMetrics:
    """The fallback-chain metrics of one registry (default: prometheus_client's global one)."""

    _instances: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, DegradeMetrics]] = (
        weakref.WeakKeyDictionary()
    )
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> DegradeMetrics:
        """The one instance for ``registry``, created on first use."""
        registry = REGISTRY if registry is None else registry
        with cls._instances_lock:
            metrics = cls._instances.get(registry)
            if metrics is None:
                metrics = cls._instances[registry] = cls(registry)
            return metrics

    def __init__(self, registry: CollectorRegistry) -> None:
        self.answers = Counter(
            "seawall_degrade_answers",
            "Answers of fallback chains, by the step that produced them",
            ["chain", "step", "degraded"],
            registry=registry,
        )
        self.step_calls = Counter(
            "seawall_degrade_step_calls",
            "Outcomes of each step of fallback chains (rejected: its circuit breaker was open)",
            ["chain", "step", "outcome"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "seawall_degrade_cache_lookups",
            "Lookups in the prediction caches of fallback chains",
            ["chain", "step", "result"],
            registry=registry,
        )
        self.degraded_share = Gauge(
            "seawall_degrade_degraded_share",
            "Share of answers not given by the first step, moving average over ~100 answers",
            ["chain"],
            registry=registry,
        )
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def bind(self, chain: str, steps: Sequence[StepInfo]) -> ChainMetrics:
        """Metrics for one chain; its breakers are reported from now on (a chain
        bound again under the same name replaces the previous one's)."""
        with self._lock:
            for step in steps:
                if step.breaker is not None:
                    self._breakers[chain, step.name] = step.breaker
        return ChainMetrics(self, chain, steps)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "seawall_degrade_breaker_state",
            "Circuit breaker state of each step of fallback chains (1 for the current state)",
            labels=["chain", "step", "state"],
        )
        with self._lock:
            breakers = list(self._breakers.items())
        for (chain, step), breaker in breakers:
            current = breaker.state
            for state in BreakerState:
                family.add_metric([chain, step, state.value], float(state is current))
        yield family


class ChainMetrics:
    """The counters of one chain, bound to their labels so a request only increments."""

    def __init__(self, metrics: DegradeMetrics, chain: str, steps: Sequence[StepInfo]) -> None:
        self._answers = [
            metrics.answers.labels(chain, s.name, "true" if i else "false")
            for i, s in enumerate(steps)
        ]
        self._outcomes = [
            {o: metrics.step_calls.labels(chain, s.name, o) for o in OUTCOMES} for s in steps
        ]
        self._lookups = [
            {r: metrics.cache_lookups.labels(chain, s.name, r) for r in ("hit", "miss")}
            if s.is_cache
            else None
            for s in steps
        ]
        self._share = metrics.degraded_share.labels(chain)
        self._share_value = 0.0
        self._share_lock = threading.Lock()

    def outcome(self, index: int, outcome: Outcome) -> None:
        """Step ``index`` was passed over or tried, and gave ``outcome``."""
        self._outcomes[index][outcome].inc()
        lookups = self._lookups[index]
        if lookups is not None and outcome in ("ok", "miss"):
            lookups["hit" if outcome == "ok" else "miss"].inc()
        if outcome == "ok":
            self._answers[index].inc()
            with self._share_lock:
                self._share_value += _SHARE_WEIGHT * ((index > 0) - self._share_value)
                self._share.set(self._share_value)
