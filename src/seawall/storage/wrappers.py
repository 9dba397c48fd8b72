"""Stores that wrap a store: retry with backoff, and fault injection.

A wrapper takes a Storage and is one, so they compose:
``RetryingStorage(ChaosStorage(LocalStorage(path), FaultPlan(error_rate=0.1)))``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from seawall.errors import StorageError
from seawall.storage.base import Capabilities, ObjectInfo, Storage

T = TypeVar("T")


class RetryingStorage:
    """Retries transient errors with exponential backoff; never retries not-found.

    A ranged get that returns fewer bytes than the object holds in that range
    (a transfer cut short) counts as a transient error and is retried: one
    stat, only on a short read, tells a cut transfer from a range that runs
    past the end of the object (which the protocol allows).
    """

    def __init__(self, inner: Storage, *, attempts: int = 5, base_delay: float = 0.2) -> None:
        self.inner = inner
        self._attempts = attempts
        self._base_delay = base_delay

    @property
    def location(self) -> str:
        return self.inner.location

    def _call(self, fn: Callable[[], T]) -> T:
        for attempt in range(self._attempts):
            try:
                return fn()
            except StorageError as err:
                if not err.transient or attempt == self._attempts - 1:
                    raise
                time.sleep(self._base_delay * 2**attempt)
        raise AssertionError("unreachable")

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        self._call(lambda: self.inner.put(name, data, if_absent=if_absent))

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        def attempt() -> bytes:
            data = self.inner.get(name, offset, length)
            if length is not None and len(data) < length:
                expected = max(0, min(length, self.inner.stat(name).size - offset))
                if len(data) < expected:
                    raise StorageError(
                        f"short read of {name}: {len(data)} of {expected} bytes", transient=True
                    )
            return data

        return self._call(attempt)

    def stat(self, name: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(self._call(lambda: list(self.inner.list(prefix))))

    def delete(self, name: str) -> None:
        self._call(lambda: self.inner.delete(name))

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()


#: A fault hook gets the operation name ("put", "get", ...) and the object name,
#: and raises to inject a failure or returns to let the call through.
FaultHook = Callable[[str, str], None]


class FaultyStorage:
    """Calls ``hook(op, name)`` before each operation, so tests and chaos
    drills can make any call fail, stall or crash the process."""

    def __init__(self, inner: Storage, hook: FaultHook) -> None:
        self.inner = inner
        self.hook = hook

    @property
    def location(self) -> str:
        return self.inner.location

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        self.hook("put", name)
        self.inner.put(name, data, if_absent=if_absent)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.hook("get", name)
        return self.inner.get(name, offset, length)

    def stat(self, name: str) -> ObjectInfo:
        self.hook("stat", name)
        return self.inner.stat(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.hook("list", prefix)
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        self.hook("delete", name)
        self.inner.delete(name)

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()


ALL_OPS = frozenset({"put", "get", "stat", "list", "delete"})


@dataclass(frozen=True)
class FaultPlan:
    """The faults a ChaosStorage injects. Rates are probabilities per call, in [0, 1]."""

    #: a transient StorageError, raised before the call reaches the store
    error_rate: float = 0.0
    #: a stall of ``timeout`` seconds, then a transient "timed out" StorageError
    timeout_rate: float = 0.0
    timeout: float = 0.01
    #: a ranged get (one with a length) returns a random prefix of what it asked for
    short_read_rate: float = 0.0
    #: the operations the rates above apply to
    ops: frozenset[str] = ALL_OPS
    #: after this many calls, the store is gone for good (None: never)
    gone_after: int | None = None


class ChaosStorage:
    """Injects the faults of a FaultPlan, drawn from a seeded RNG, for tests and chaos drills.

    Transient errors and timeouts happen before the call reaches the store,
    so the store is unchanged by a failed call. A short read cuts only ranged
    gets: a whole-object get cut short is caught by the backend (it checks
    the length the store announced) and by readers (every whole object but
    the config is named by its hash). Once gone (``gone_after`` calls, or
    ``disappear()``), every call raises a non-transient StorageError
    "store unreachable" until ``reappear()``. ``injected`` counts what was
    injected, by kind. With several threads, which call draws which fault
    varies from run to run; the sequence of draws does not.
    """

    def __init__(self, inner: Storage, plan: FaultPlan | None = None, *, seed: int = 0) -> None:
        self.inner = inner
        self.plan = plan or FaultPlan()
        self.injected: Counter[str] = Counter()
        self.calls = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._gone = False

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def gone(self) -> bool:
        return self._gone

    def disappear(self) -> None:
        self._gone = True

    def reappear(self) -> None:
        self._gone = False

    def _before(self, op: str, name: str) -> None:
        with self._lock:
            self.calls += 1
            if self.plan.gone_after is not None and self.calls > self.plan.gone_after:
                self._gone = True
            if self._gone:
                self.injected["unreachable"] += 1
                raise StorageError(
                    f"store unreachable: {self.location} does not answer ({op} {name})"
                )
            if op not in self.plan.ops:
                return
            draw = self._rng.random()
            fault = (
                "error"
                if draw < self.plan.error_rate
                else "timeout"
                if draw < self.plan.error_rate + self.plan.timeout_rate
                else ""
            )
            if fault:
                self.injected[fault] += 1
        if fault == "timeout":
            time.sleep(self.plan.timeout)
            raise StorageError(f"{op} {name}: timed out (injected fault)", transient=True)
        if fault == "error":
            raise StorageError(f"{op} {name}: transient failure (injected fault)", transient=True)

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        self._before("put", name)
        self.inner.put(name, data, if_absent=if_absent)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._before("get", name)
        data = self.inner.get(name, offset, length)
        if length is not None and data and "get" in self.plan.ops:
            with self._lock:
                cut = self._rng.random() < self.plan.short_read_rate
                keep = self._rng.randrange(len(data)) if cut else len(data)
                if cut:
                    self.injected["short_read"] += 1
            data = data[:keep]
        return data

    def stat(self, name: str) -> ObjectInfo:
        self._before("stat", name)
        return self.inner.stat(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._before("list", prefix)
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        self._before("delete", name)
        self.inner.delete(name)

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()
