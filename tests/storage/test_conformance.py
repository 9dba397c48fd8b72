"""One conformance suite for every Storage backend (and the wrappers, which are stores too).

To run it against a new backend, add one line to ``BACKENDS``: an id and a
factory taking a scratch directory and the pytest request (for fixtures such
as the S3 server).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from seawall.errors import ObjectExists, ObjectNotFound, StorageError
from seawall.storage import (
    FaultyStorage,
    LocalStorage,
    MemoryStorage,
    ObjectInfo,
    RetryingStorage,
    Storage,
)


def _no_fault(op: str, name: str) -> None:
    return None


def _s3(request: pytest.FixtureRequest, **kw: Any) -> Storage:
    """An S3Storage on a fresh bucket of the loopback S3 server (tests/s3_server.py)."""
    from seawall.storage.s3 import S3Storage

    endpoint = request.getfixturevalue("s3_server").endpoint
    return S3Storage(request.getfixturevalue("s3_bucket"), "store", endpoint_url=endpoint, **kw)


BACKENDS: list[tuple[str, Callable[[Path, pytest.FixtureRequest], Storage]]] = [
    ("memory", lambda tmp, _: MemoryStorage()),
    ("local", lambda tmp, _: LocalStorage(tmp / "store")),
    # A wrapper is a store: the stack must keep every contract of the store under it.
    (
        "retrying+faulty(local)",
        lambda tmp, _: RetryingStorage(FaultyStorage(LocalStorage(tmp / "store"), _no_fault)),
    ),
    ("s3", lambda tmp, request: _s3(request)),
    # For S3-compatible stores without If-None-Match: put-if-absent is a stat, then a put.
    ("s3(no conditional writes)", lambda tmp, request: _s3(request, conditional_writes=False)),
    # `seawall repo-server` in a subprocess (tests/rest_server.py), over HTTP and HTTPS.
    ("rest", lambda tmp, request: request.getfixturevalue("rest_server").reset()),
    ("rest(tls)", lambda tmp, request: request.getfixturevalue("rest_tls_server").reset()),
]


@pytest.fixture(params=[factory for _, factory in BACKENDS], ids=[name for name, _ in BACKENDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = request.param(tmp_path, request)
    yield s
    s.close()


def names(store: Storage, prefix: str = "") -> set[str]:
    return {info.name for info in store.list(prefix)}


def run_threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    """Run ``target(i)`` on n threads released at once; return what they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as err:
            with lock:
                errors.append(err)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# --- the protocol ---------------------------------------------------------------------


def test_is_a_storage(store: Storage) -> None:
    assert isinstance(store, Storage)
    assert store.location


def test_put_get_round_trip(store: Storage) -> None:
    payload = os.urandom(100_000)
    store.put("data/ab/ab01", payload)
    store.put("config", b"{}\n")
    store.put("empty", b"")
    assert store.get("data/ab/ab01") == payload
    assert store.get("config") == b"{}\n"
    assert store.get("empty") == b""
    assert store.stat("data/ab/ab01") == ObjectInfo("data/ab/ab01", len(payload))
    assert store.stat("empty").size == 0


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, None, slice(0, 1000)),
        (0, 10, slice(0, 10)),
        (10, 20, slice(10, 30)),
        (990, None, slice(990, 1000)),
        (990, 10, slice(990, 1000)),
        (995, 100, slice(995, 1000)),  # a range past the end is cut at the end
        (999, 1, slice(999, 1000)),
        (1000, None, slice(1000, 1000)),
        (500, 0, slice(500, 500)),
    ],
)
def test_get_ranges(store: Storage, offset: int, length: int | None, expected: slice) -> None:
    payload = bytes(range(256)) * 3 + os.urandom(232)
    assert len(payload) == 1000
    store.put("data/00/obj", payload)
    assert store.get("data/00/obj", offset, length) == payload[expected]


@pytest.mark.parametrize("op", ["get", "get_range", "stat", "delete"])
def test_missing_object_raises_object_not_found(store: Storage, op: str) -> None:
    store.put("data/ab/present", b"x")
    calls: dict[str, Callable[[str], object]] = {
        "get": store.get,
        "get_range": lambda n: store.get(n, 5, 10),
        "stat": store.stat,
        "delete": store.delete,
    }
    for name in ["missing", "data/ab/missing", "data/cd/missing", "nodir/deeper/missing"]:
        with pytest.raises(ObjectNotFound):
            calls[op](name)
    assert store.get("data/ab/present") == b"x"


def test_delete_removes(store: Storage) -> None:
    store.put("locks/aa", b"1")
    store.put("locks/bb", b"2")
    store.delete("locks/aa")
    assert names(store, "locks/") == {"locks/bb"}
    with pytest.raises(ObjectNotFound):
        store.get("locks/aa")
    with pytest.raises(ObjectNotFound):
        store.delete("locks/aa")


def test_put_if_absent(store: Storage) -> None:
    store.put("config", b"first", if_absent=True)
    with pytest.raises(ObjectExists):
        store.put("config", b"second", if_absent=True)
    with pytest.raises(ObjectExists):
        store.put("config", b"first", if_absent=True)  # even with identical bytes
    assert store.get("config") == b"first"
    assert names(store) == {"config"}  # nothing left behind by the refused put


def test_put_if_absent_race_has_exactly_one_winner(store: Storage) -> None:
    """A store that promises atomic conditional writes has one winner; one that does
    not (checked, then written) may have several, but never a torn object."""
    atomic = store.capabilities().conditional_write
    for round_no in range(5):
        name = f"race/{round_no}"

        def claim(i: int, name: str = name) -> None:
            store.put(name, f"writer {i}".encode(), if_absent=True)

        errors = run_threads(8, claim)
        assert len(errors) == 7 if atomic else len(errors) < 8, errors
        assert all(isinstance(e, ObjectExists) for e in errors), errors
        assert store.get(name) in {f"writer {i}".encode() for i in range(8)}
    assert names(store, "race/") == {f"race/{i}" for i in range(5)}


def test_list_prefixes(store: Storage) -> None:
    objects = {
        "config": b"c",
        "keys/k1": b"k",
        "index/i1": b"i",
        "index/i2": b"ii",
        "snapshots/s1": b"s",
        "data/ab/ab11": b"1" * 11,
        "data/ab/ab22": b"2" * 22,
        "data/cd/cd33": b"3" * 33,
        "data/cdx/cdx4": b"4",
    }
    for name, data in objects.items():
        store.put(name, data)
    assert names(store) == set(objects)
    assert names(store, "") == set(objects)
    assert {(i.name, i.size) for i in store.list()} == {(n, len(d)) for n, d in objects.items()}
    assert names(store, "data/") == {n for n in objects if n.startswith("data/")}
    assert names(store, "data/ab/") == {"data/ab/ab11", "data/ab/ab22"}
    assert names(store, "data/ab/ab1") == {"data/ab/ab11"}
    assert names(store, "data/cd") == {"data/cd/cd33", "data/cdx/cdx4"}
    assert names(store, "data/cd/") == {"data/cd/cd33"}
    assert names(store, "index/") == {"index/i1", "index/i2"}
    assert names(store, "index") == {"index/i1", "index/i2"}
    assert names(store, "conf") == {"config"}
    assert names(store, "keys/") == {"keys/k1"}
    assert names(store, "locks/") == set()
    assert names(store, "nothing/here/") == set()
    assert names(store, "data/zz/") == set()


def test_list_empty_store(store: Storage) -> None:
    assert names(store) == set()
    assert names(store, "data/") == set()


def test_overwrite_with_identical_bytes_is_idempotent(store: Storage) -> None:
    payload = os.urandom(5000)
    for _ in range(3):
        store.put("data/ab/same", payload)
    assert store.get("data/ab/same") == payload
    assert [i.name for i in store.list("data/")] == ["data/ab/same"]


@pytest.mark.parametrize(
    "name",
    ["", "/abs", "/", "a/../b", "..", "../escape", "a/..", "a//b", "a/", "./a", "a/./b", "a\0b"],
)
def test_invalid_names_rejected(store: Storage, name: str) -> None:
    with pytest.raises(StorageError) as info:
        store.put(name, b"x")
    assert not isinstance(info.value, ObjectNotFound | ObjectExists)
    with pytest.raises(StorageError):
        store.get(name)
    with pytest.raises(StorageError):
        store.delete(name)
    assert names(store) == set()


def test_concurrent_puts_from_threads(store: Storage) -> None:
    payloads = {f"data/{i % 4:02x}/obj{i}": os.urandom(1000 + i) for i in range(64)}
    items = list(payloads.items())

    def writer(t: int) -> None:
        for name, data in items[t::8]:
            store.put(name, data)
        # and everyone writes the same shared object, with the same bytes
        store.put("data/ff/shared", b"same bytes from every thread")

    assert run_threads(8, writer) == []
    assert names(store) == set(payloads) | {"data/ff/shared"}
    for name, data in payloads.items():
        assert store.get(name) == data
    assert store.get("data/ff/shared") == b"same bytes from every thread"


def test_concurrent_reads_and_lists(store: Storage) -> None:
    for i in range(16):
        store.put(f"index/{i:04d}", bytes([i]) * 100)
    seen: list[set[str]] = []

    def reader(t: int) -> None:
        for i in range(16):
            assert store.get(f"index/{i:04d}", 10, 5) == bytes([i]) * 5
        seen.append(names(store, "index/"))

    assert run_threads(4, reader) == []
    assert all(s == {f"index/{i:04d}" for i in range(16)} for s in seen)


# --- LocalStorage specifics ---------------------------------------------------------


def test_local_crash_mid_put_leaves_no_partial_object(tmp_path: Path) -> None:
    from seawall.storage.local import _TMP_SUFFIX

    store = LocalStorage(tmp_path / "store")
    store.put("data/ab/other", b"complete")
    # What a process killed during put("data/ab/abcd", ...) leaves: a partial temp file.
    leftover = tmp_path / "store" / "data" / "ab" / f".abcd.0123456789abcdef{_TMP_SUFFIX}"
    leftover.write_bytes(b"partial bytes of a pa")
    top = tmp_path / "store" / f".config.feedface{_TMP_SUFFIX}"
    top.write_bytes(b"{")
    assert names(store) == {"data/ab/other"}
    assert names(store, "data/ab/") == {"data/ab/other"}
    with pytest.raises(ObjectNotFound):
        store.get("data/ab/abcd")
    with pytest.raises(ObjectNotFound):
        store.stat("config")
    # The real put still works over the debris.
    store.put("data/ab/abcd", b"whole")
    assert store.get("data/ab/abcd") == b"whole"
    assert names(store, "data/ab/") == {"data/ab/other", "data/ab/abcd"}


def test_local_temp_suffix_names_are_rejected(tmp_path: Path) -> None:
    """A name that looks like a temp file would be stored yet never listed."""
    from seawall.storage.local import _TMP_SUFFIX

    store = LocalStorage(tmp_path / "store")
    with pytest.raises(StorageError):
        store.put(f"data/x{_TMP_SUFFIX}", b"x")
    assert names(store) == set()


def test_local_failed_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import seawall.storage.local as local_mod

    store = LocalStorage(tmp_path / "store")
    store.put("data/ab/old", b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(local_mod, "os", _OsProxy(replace=broken_replace))
    with pytest.raises(StorageError) as info:
        store.put("data/ab/new", b"new")
    assert "data/ab/new" in str(info.value)
    monkeypatch.undo()
    assert names(store) == {"data/ab/old"}
    assert sorted(p.name for p in (tmp_path / "store" / "data" / "ab").iterdir()) == ["old"]


class _OsProxy:
    """The ``os`` module with a few functions replaced, for local.py only."""

    def __init__(self, **overrides: Callable[..., object]) -> None:
        self._overrides = overrides

    def __getattr__(self, name: str) -> object:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(os, name)


@pytest.mark.parametrize("err_no", ["ENOSPC", "EDQUOT"])
def test_local_disk_full_maps_to_storage_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err_no: str
) -> None:
    import errno

    import seawall.storage.local as local_mod
    from seawall.errors import StorageFull

    store = LocalStorage(tmp_path / "store")
    store.put("data/ab/old", b"old")
    written: list[int] = []

    def full_disk_write(fd: int, data: bytes) -> int:
        if written:
            raise OSError(getattr(errno, err_no), os.strerror(getattr(errno, err_no)))
        written.append(fd)
        return os.write(fd, bytes(data)[:10])  # a first short write, then the disk is full

    monkeypatch.setattr(local_mod, "os", _OsProxy(write=full_disk_write))
    with pytest.raises(StorageFull) as info:
        store.put("data/ab/new", os.urandom(1000))
    monkeypatch.undo()
    message = str(info.value)
    assert "no space left" in message
    assert "free some space" in message  # tells the user what to do
    assert "data/ab/new" in message
    assert not info.value.transient
    assert isinstance(info.value, StorageError)
    # No partial object, no temp file left behind, the old object intact.
    assert names(store) == {"data/ab/old"}
    assert sorted(p.name for p in (tmp_path / "store" / "data" / "ab").iterdir()) == ["old"]
    assert store.get("data/ab/old") == b"old"


def test_local_disk_full_through_faulty_storage(tmp_path: Path) -> None:
    """FaultyStorage can stand in for a full disk; RetryingStorage does not retry it."""
    from seawall.errors import StorageFull

    calls: list[str] = []

    def full(op: str, name: str) -> None:
        calls.append(op)
        if op == "put":
            raise StorageFull("no space left on the device holding the repository")

    store = RetryingStorage(FaultyStorage(LocalStorage(tmp_path / "store"), full), base_delay=0)
    with pytest.raises(StorageFull):
        store.put("data/ab/x", b"x")
    assert calls == ["put"]


def test_local_files_are_private(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    store.put("data/ab/plain", b"x")
    store.put("config", b"y", if_absent=True)
    store.put("data/ab/plain", b"x")  # overwrite keeps the mode
    for rel in ["data/ab/plain", "config"]:
        assert (tmp_path / "store" / rel).stat().st_mode & 0o777 == 0o600


# --- RetryingStorage ------------------------------------------------------------------


class FailNTimes:
    """A fault hook failing the first ``n`` calls of ``op`` with a transient error."""

    def __init__(self, op: str, n: int) -> None:
        self.op = op
        self.n = n
        self.calls = 0

    def __call__(self, op: str, name: str) -> None:
        if op != self.op:
            return
        self.calls += 1
        if self.calls <= self.n:
            raise StorageError(
                f"injected transient failure {self.calls} of {op} {name}", transient=True
            )


@pytest.mark.parametrize("op", ["put", "get", "stat", "list", "delete"])
def test_retrying_retries_transient_errors(op: str) -> None:
    inner = MemoryStorage()
    inner.put("data/ab/x", b"payload")
    hook = FailNTimes(op, 3)
    store = RetryingStorage(FaultyStorage(inner, hook), attempts=5, base_delay=0)
    if op == "put":
        store.put("data/ab/y", b"new")
        assert inner.get("data/ab/y") == b"new"
    elif op == "get":
        assert store.get("data/ab/x", 1, 3) == b"ayl"
    elif op == "stat":
        assert store.stat("data/ab/x").size == 7
    elif op == "list":
        assert [i.name for i in store.list("data/")] == ["data/ab/x"]
    else:
        store.delete("data/ab/x")
        assert "data/ab/x" not in inner.objects
    assert hook.calls == 4  # three failures, then the success


def test_retrying_gives_up_after_its_attempts() -> None:
    hook = FailNTimes("get", 100)
    inner = MemoryStorage()
    inner.put("x", b"x")
    store = RetryingStorage(FaultyStorage(inner, hook), attempts=4, base_delay=0)
    with pytest.raises(StorageError) as info:
        store.get("x")
    assert info.value.transient
    assert hook.calls == 4


def test_retrying_never_retries_not_found() -> None:
    calls: list[tuple[str, str]] = []
    store = RetryingStorage(
        FaultyStorage(MemoryStorage(), lambda op, name: calls.append((op, name))),
        attempts=5,
        base_delay=0,
    )
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    with pytest.raises(ObjectNotFound):
        store.stat("missing")
    with pytest.raises(ObjectNotFound):
        store.delete("missing")
    assert calls == [("get", "missing"), ("stat", "missing"), ("delete", "missing")]


def test_retrying_never_retries_permanent_errors() -> None:
    calls: list[str] = []

    def hook(op: str, name: str) -> None:
        calls.append(op)
        raise StorageError("permission denied", transient=False)

    store = RetryingStorage(FaultyStorage(MemoryStorage(), hook), attempts=5, base_delay=0)
    with pytest.raises(StorageError):
        store.put("x", b"x")
    assert calls == ["put"]
    inner = MemoryStorage()
    inner.put("x", b"x")
    with pytest.raises(ObjectExists):
        RetryingStorage(inner, base_delay=0).put("x", b"y", if_absent=True)
