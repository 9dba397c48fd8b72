"""Graceful degradation for inference services: keep answering during an outage.

A ``FallbackChain`` (in code, or declared in the plan's ``degrade:`` section
and built by ``chain_from_plan``) tries its steps in order (the primary model, cached
predictions, a smaller model, a safe default), each with its own timeout and
``CircuitBreaker``; every ``Answer`` says which step produced it. A
``PredictionCache`` on disk is filled from the primary's answers;
``load_drilled_model`` loads the newest model version that passed a seawall
drill, verified by hash. ``DegradeMetrics`` exports it all to Prometheus.
See docs/degrade.md.
"""

from seawall.degrade.breaker import BreakerState, CircuitBreaker
from seawall.degrade.cache import PredictionCache, stable_key
from seawall.degrade.chain import Answer, FallbackChain, NoAnswer, Step, chain_from_plan
from seawall.degrade.metrics import DegradeMetrics
from seawall.degrade.models import DrilledModel, load_drilled_model

__all__ = [
    "Answer",
    "BreakerState",
    "CircuitBreaker",
    "DegradeMetrics",
    "DrilledModel",
    "FallbackChain",
    "NoAnswer",
    "PredictionCache",
    "Step",
    "chain_from_plan",
    "load_drilled_model",
    "stable_key",
]
