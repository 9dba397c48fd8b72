"""The prediction cache: stable keys, persistence, eviction, foreign files, sharing
between threads and processes, and a backup and restore by seawall."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seawall.degrade import PredictionCache, stable_key
from seawall.errors import FormatError, UsageError
from seawall.operations.backup import backup
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from tests.operations.helpers import restored_path

#: Known answers: the key of an input must never change between versions or machines,
#: or a cache restored from a backup would miss on everything.
VECTORS = [
    (
        {"b": [1, 2.5, "x", None, True], "a": b"\x00"},
        "27f7a4ae4670223b8b375cd5e2c88b3742723db4d42bc511e2bbfc71e3922238",
    ),
    (
        np.arange(6, dtype="<f4").reshape(2, 3),
        "7f7b79f806b19cdeeb3407aac441abd3c2fe3ac18da7a474b92691bfb4acef83",
    ),
]


def test_stable_keys() -> None:
    for value, key in VECTORS:
        assert stable_key(value).hex() == key
    assert stable_key({"a": 1, "b": 2}) == stable_key({"b": 2, "a": 1})
    assert stable_key([1, 2]) == stable_key((1, 2))  # as JSON would see them
    distinct = [1, 1.0, True, "1", b"1", [1], [[1]], {"1": 1}, None, ["a", "b"], ["ab"], ""]
    assert len({stable_key(v) for v in distinct}) == len(distinct)
    array = np.arange(6, dtype="<f4").reshape(2, 3)
    assert stable_key(torch.arange(6, dtype=torch.float32).reshape(2, 3)) == stable_key(array)
    assert stable_key(array) != stable_key(array.reshape(3, 2))
    assert stable_key(array) != stable_key(array.astype("<f8"))
    assert stable_key(np.float64(2.5)) == stable_key(2.5)
    assert stable_key(np.zeros((4, 3))[:, 1]) == stable_key(np.zeros(4))  # a strided view


def test_keys_are_the_same_in_another_process() -> None:
    code = "from seawall.degrade import stable_key; print(stable_key({'b': [1, 2.5, 'x']}).hex())"
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # another str hash
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == stable_key({"b": [1, 2.5, "x"]}).hex()


@pytest.mark.parametrize("value", [object(), {1: "int key"}, np.array([object()]), {1.5}])
def test_inputs_without_a_stable_key_are_refused(value: object) -> None:
    with pytest.raises(UsageError, match="cache"):
        stable_key(value)


def test_answers_persist_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with PredictionCache(path) as cache:
        cache.put([0.1, 0.2], {"score": 0.9, "decision": "decline"})
        cache.put("null answer", None)
        assert cache.get([0.1, 0.2]) == {"score": 0.9, "decision": "decline"}
    with PredictionCache(path) as cache:
        assert cache.get([0.1, 0.2]) == {"score": 0.9, "decision": "decline"}
        assert cache.get([0.1, 0.3], "missing") == "missing"
        assert cache.get("null answer", "missing") is None  # a cached None is not a miss
        assert len(cache) == 2
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_the_least_recently_used_are_evicted_at_the_bound(tmp_path: Path) -> None:
    with PredictionCache(tmp_path / "cache.sqlite", max_entries=10) as cache:
        for i in range(10):
            cache.put(i, i * 10)
        for i in (0, 1, 2):
            assert cache.get(i) == i * 10  # used recently: kept
        cache.put(3, 31)  # replaced: recently used too
        for i in range(10, 15):
            cache.put(i, i * 10)
            assert len(cache) <= 10
        kept = {i for i in range(15) if cache.get(i) is not None}
    assert {0, 1, 2, 3, 10, 11, 12, 13, 14} >= kept >= {2, 3, 12, 13, 14}
    assert not kept & {4, 5, 6, 7, 8, 9}


def test_foreign_files_are_refused_and_left_untouched(tmp_path: Path) -> None:
    other = tmp_path / "features.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE features (id INTEGER, value REAL)")
    db.close()
    garbage = tmp_path / "weights.bin"
    garbage.write_bytes(os.urandom(8192))
    for path, error, match in (
        (other, UsageError, "not a seawall prediction cache"),
        (garbage, FormatError, "not a usable prediction cache"),
    ):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        with pytest.raises(error, match=match):
            PredictionCache(path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_values_that_are_not_json_are_refused(tmp_path: Path) -> None:
    with PredictionCache(tmp_path / "cache.sqlite") as cache:
        for value in ({1, 2}, float("nan"), np.zeros(2)):
            with pytest.raises(UsageError, match="JSON"):
                cache.put("x", value)
        assert len(cache) == 0
    with pytest.raises(UsageError, match="max_entries"):
        PredictionCache(tmp_path / "other.sqlite", max_entries=0)


def test_a_file_that_refuses_writes_never_blocks_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite"
    with PredictionCache(path) as cache:
        cache.put("before", 1)
        cache.flush()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        started = time.monotonic()
        for i in range(100):
            cache.put(i, i)
        assert time.monotonic() - started < 0.2  # queued, not waiting for the lock
        time.sleep(0.2)  # the writer has taken them, and waits for the lock
        assert cache.get(5) == 5  # queued answers are seen at once
        assert cache.get(5) == 5  # (and still, with a mark that it was used queued behind)
        assert cache.get("before") == 1  # and stored ones can still be read
        cache.flush()  # the writer gives up after its busy timeout
        assert cache.dropped == 100
        assert "100 answers not stored" in caplog.text
        other.execute("ROLLBACK")
        other.close()
        cache.put(5, 5)
        assert len(cache) == 2 and cache.get(5) == 5
    with pytest.raises(UsageError, match="closed"):
        cache.put("after", 1)


def test_threads_and_two_processes_share_one_file_within_the_bound(tmp_path: Path) -> None:
    """Two caches on one file (two worker processes) with four threads each."""
    path = tmp_path / "cache.sqlite"
    caches = [PredictionCache(path, max_entries=200), PredictionCache(path, max_entries=200)]
    errors: list[BaseException] = []

    def worker(cache: PredictionCache, base: int) -> None:
        try:
            for i in range(150):
                cache.put([base, i], {"i": i})
                assert cache.get([base, i]) in ({"i": i}, None)  # None: evicted by the other
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(caches[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 100 <= len(caches[0]) <= 200 + 8  # a put past the bound trims at once
    for cache in caches:
        cache.close()


def test_a_cache_is_backed_up_and_restored_by_seawall(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    _, repo = local_repo
    answers = {f"transaction-{i}": {"score": i / 100} for i in range(300)}
    live = PredictionCache(tmp_path / "live" / "cache.sqlite")
    for x, value in answers.items():
        live.put(x, value)
    # While the service runs: back up a consistent copy, not the file being written.
    copy = live.copy_to(tmp_path / "backup" / "cache.sqlite")
    live.put("after the copy", {"score": 1.0})
    snap = backup(repo, [copy.parent]).snapshot
    live.close()
    copy.unlink()
    restore(repo, snap, tmp_path / "restored")
    with PredictionCache(restored_path(tmp_path / "restored", copy)) as restored:
        assert len(restored) == 300
        assert all(restored.get(x) == value for x, value in answers.items())
        assert restored.get("after the copy") is None
    with pytest.raises(UsageError, match="another file"):
        PredictionCache(tmp_path / "x.sqlite").copy_to(tmp_path / "x.sqlite")
