"""A store in memory, for tests and for staging."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from seawall.errors import ObjectExists, ObjectNotFound
from seawall.storage.base import Capabilities, ObjectInfo, check_name


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return "memory:"

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        check_name(name)
        with self._lock:
            if if_absent and name in self.objects:
                raise ObjectExists(f"object {name} already exists")
            self.objects[name] = bytes(data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        check_name(name)
        with self._lock:
            try:
                data = self.objects[name]
            except KeyError:
                raise ObjectNotFound(f"object {name} does not exist") from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def stat(self, name: str) -> ObjectInfo:
        return ObjectInfo(name, len(self.get(name)))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = [ObjectInfo(n, len(d)) for n, d in self.objects.items() if n.startswith(prefix)]
        yield from items

    def delete(self, name: str) -> None:
        check_name(name)
        with self._lock:
            if self.objects.pop(name, None) is None:
                raise ObjectNotFound(f"object {name} does not exist")

    def capabilities(self) -> Capabilities:
        return Capabilities(conditional_write=True)

    def close(self) -> None:
        pass
