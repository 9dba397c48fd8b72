"""Helpers shared by the degrade tests."""

from __future__ import annotations

from seawall.degrade import BreakerState, CircuitBreaker


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state (a call, so a type checker does not pin it after one assert)."""
    return breaker.state
