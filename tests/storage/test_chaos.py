"""ChaosStorage injects the faults it is asked for, and RetryingStorage rides out the
transient ones (errors, timeouts, short reads) but never a store that is gone."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.errors import ObjectNotFound, StorageError
from seawall.storage import (
    ChaosStorage,
    FaultPlan,
    FaultyStorage,
    MemoryStorage,
    RetryingStorage,
)


def payload(n: int = 1000, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def test_transient_errors_are_injected_and_retried_away() -> None:
    inner = MemoryStorage()
    chaos = ChaosStorage(inner, FaultPlan(error_rate=0.3), seed=1)
    store = RetryingStorage(chaos, attempts=30, base_delay=0)
    for i in range(100):
        store.put(f"data/{i:03d}", payload(200, i))
    for i in range(100):
        assert store.get(f"data/{i:03d}") == payload(200, i)
        assert store.stat(f"data/{i:03d}").size == 200
    assert len(list(store.list("data/"))) == 100
    assert chaos.injected["error"] > 20  # about 30% of some 300 calls
    assert inner.objects == {f"data/{i:03d}": payload(200, i) for i in range(100)}


def test_a_failed_call_does_not_reach_the_store() -> None:
    inner = MemoryStorage()
    chaos = ChaosStorage(inner, FaultPlan(error_rate=1.0))
    with pytest.raises(StorageError) as err:
        chaos.put("config", b"x")
    assert err.value.transient and "injected" in str(err.value)
    assert inner.objects == {}


def test_timeouts_stall_then_fail_transiently() -> None:
    inner = MemoryStorage()
    inner.put("a", b"data")
    chaos = ChaosStorage(inner, FaultPlan(timeout_rate=1.0, timeout=0.001))
    with pytest.raises(StorageError, match="timed out") as err:
        chaos.get("a")
    assert err.value.transient
    assert chaos.injected == {"timeout": 1}


def test_faults_are_drawn_from_the_seed() -> None:
    def failing_calls(seed: int) -> list[int]:
        chaos = ChaosStorage(MemoryStorage(), FaultPlan(error_rate=0.5), seed=seed)
        failed = []
        for i in range(64):
            try:
                chaos.put(f"o/{i}", b"x")
            except StorageError:
                failed.append(i)
        return failed

    assert failing_calls(7) == failing_calls(7)
    assert failing_calls(7) != failing_calls(8)


def test_faults_only_hit_the_operations_named() -> None:
    inner = MemoryStorage()
    chaos = ChaosStorage(inner, FaultPlan(error_rate=1.0, ops=frozenset({"put"})))
    inner.put("a", b"data")
    assert chaos.get("a") == b"data"
    assert chaos.stat("a").size == 4
    with pytest.raises(StorageError):
        chaos.put("b", b"data")


def test_short_reads_cut_ranged_gets_only() -> None:
    inner = MemoryStorage()
    inner.put("pack", payload())
    chaos = ChaosStorage(inner, FaultPlan(short_read_rate=1.0), seed=3)
    for offset in (0, 10, 500):
        got = chaos.get("pack", offset, 300)
        assert len(got) < 300 and got == payload()[offset : offset + len(got)]
    assert chaos.get("pack") == payload()  # whole objects are never cut
    assert chaos.injected["short_read"] == 3


@settings(max_examples=40, deadline=None)
@given(offset=st.integers(0, 1200), length=st.integers(1, 1200), seed=st.integers(0, 1000))
def test_retrying_storage_repairs_short_reads(offset: int, length: int, seed: int) -> None:
    inner = MemoryStorage()
    inner.put("pack", payload())
    chaos = ChaosStorage(inner, FaultPlan(short_read_rate=0.5), seed=seed)
    store = RetryingStorage(chaos, attempts=40, base_delay=0)
    assert store.get("pack", offset, length) == payload()[offset : offset + length]


def test_a_range_past_the_end_is_not_a_short_read() -> None:
    """The protocol cuts a range at the object's end: one stat tells, and no retry follows."""
    calls: list[tuple[str, str]] = []
    inner = MemoryStorage()
    inner.put("pack", payload())
    store = RetryingStorage(
        FaultyStorage(inner, lambda op, name: calls.append((op, name))), base_delay=0
    )
    assert store.get("pack", 995, 100) == payload()[995:]
    assert calls == [("get", "pack"), ("stat", "pack")]
    calls.clear()
    assert store.get("pack", 0, 100) == payload()[:100]
    assert calls == [("get", "pack")]  # a full read costs nothing more


def test_short_reads_that_persist_end_as_a_transient_error() -> None:
    inner = MemoryStorage()
    inner.put("pack", payload())
    store = RetryingStorage(
        ChaosStorage(inner, FaultPlan(short_read_rate=1.0)), attempts=3, base_delay=0
    )
    with pytest.raises(StorageError, match="short read") as err:
        store.get("pack", 0, 500)
    assert err.value.transient


def test_a_store_gone_for_good_fails_every_call_and_is_not_retried() -> None:
    inner = MemoryStorage()
    chaos = ChaosStorage(inner, FaultPlan(gone_after=2))
    store = RetryingStorage(chaos, attempts=5, base_delay=0)
    store.put("a", b"1")
    assert store.get("a") == b"1"
    for call in (
        lambda: store.put("b", b"2"),
        lambda: store.get("a"),
        lambda: store.stat("a"),
        lambda: list(store.list()),
        lambda: store.delete("a"),
    ):
        with pytest.raises(StorageError, match="store unreachable") as err:
            call()
        assert not err.value.transient and not isinstance(err.value, ObjectNotFound)
    assert chaos.calls == 2 + 5  # one call each: nothing retried
    assert chaos.gone and inner.objects == {"a": b"1"}


def test_disappear_and_reappear() -> None:
    inner = MemoryStorage()
    chaos = ChaosStorage(inner)
    chaos.put("a", b"1")
    chaos.disappear()
    with pytest.raises(StorageError, match="store unreachable"):
        chaos.get("a")
    chaos.reappear()
    assert chaos.get("a") == b"1"
    assert chaos.injected == {"unreachable": 1}
