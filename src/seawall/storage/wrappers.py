"""Stores that wrap a store: retry with backoff, and fault injection.

A wrapper takes a Storage and is one, so they compose:
``RetryingStorage(FaultyStorage(LocalStorage(path)))``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from seawall.errors import StorageError
from seawall.storage.base import Capabilities, ObjectInfo, Storage

T = TypeVar("T")


class RetryingStorage:
    """Retries transient errors with exponential backoff; never retries not-found."""

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
        return self._call(lambda: self.inner.get(name, offset, length))

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
