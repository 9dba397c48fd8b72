"""Retention rules (apply_policy, pure), and forget + prune on real repositories:
space is freed, kept data stays exact, and an interrupted prune leaves a valid repository."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.errors import IntegrityError, SeawallError, UsageError
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.forget import ForgetGroup, KeepPolicy, apply_policy, forget
from seawall.operations.prune import prune
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot
from seawall.storage import LocalStorage, MemoryStorage, Storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, make_files
from tests.operations.helpers import (
    Entry,
    Recorder,
    SimulatedCrash,
    copy_memory,
    flip_byte,
    names,
    new_repo,
    node_at,
    objects,
    open_repo,
    pack_of,
    random_bytes,
    restore_and_compare,
    tree_state,
)

# --- apply_policy: pure, on synthetic snapshots -------------------------------------------------


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Buckets (days, weeks) are in local time: pin it, so the expectations hold anywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def snap(
    when: str, *, host: str = "h", paths: tuple[str, ...] = ("/data",), tags: tuple[str, ...] = ()
) -> Snapshot:
    t = datetime.fromisoformat(when).replace(tzinfo=UTC)
    sid = hashlib.sha256(f"{when}|{host}|{paths}".encode()).digest()
    return Snapshot(t.isoformat(), b"\0" * 32, list(paths), host, "u", list(tags), id=sid)


def every(start: str, step: timedelta, count: int, **kw: object) -> list[Snapshot]:
    t0 = datetime.fromisoformat(start)
    return [snap((t0 + i * step).isoformat(), **kw) for i in range(count)]  # type: ignore[arg-type]


def kept(groups: list[ForgetGroup]) -> list[str]:
    """Kept snapshot times (without the zone), newest first, over all groups."""
    return sorted((s.time[:19] for g in groups for s in g.keep), reverse=True)


def test_keep_last() -> None:
    snaps = every("2024-01-01T00:00", timedelta(hours=1), 10)
    [group] = apply_policy(snaps, KeepPolicy(last=3))
    assert kept([group]) == ["2024-01-01T09:00:00", "2024-01-01T08:00:00", "2024-01-01T07:00:00"]
    assert len(group.remove) == 7
    assert all(group.reasons[s.id] == ["last"] for s in group.keep)


def test_keep_hourly_keeps_the_newest_of_each_hour() -> None:
    snaps = every("2024-01-01T00:00", timedelta(minutes=20), 15)  # 00:00 .. 04:40
    groups = apply_policy(snaps, KeepPolicy(hourly=3))
    assert kept(groups) == ["2024-01-01T04:40:00", "2024-01-01T03:40:00", "2024-01-01T02:40:00"]


def test_keep_daily_counts_days_that_have_snapshots() -> None:
    days = ["01", "02", "03", "05", "08"]
    snaps = [snap(f"2024-01-{d}T{h}") for d in days for h in ("09:00", "18:00")]
    groups = apply_policy(snaps, KeepPolicy(daily=4))
    assert kept(groups) == [f"2024-01-{d}T18:00:00" for d in ("08", "05", "03", "02")]


def test_keep_weekly_uses_iso_weeks() -> None:
    snaps = every("2024-01-01T12:00", timedelta(days=1), 42)  # Monday Jan 1 .. Sunday Feb 11
    groups = apply_policy(snaps, KeepPolicy(weekly=4))
    sundays = ["2024-02-11", "2024-02-04", "2024-01-28", "2024-01-21"]
    assert kept(groups) == [f"{d}T12:00:00" for d in sundays]


def test_keep_monthly() -> None:
    dates = ["2024-01-10", "2024-01-20", "2024-02-05", "2024-03-01", "2024-03-31", "2024-05-15"]
    groups = apply_policy([snap(f"{d}T12:00") for d in dates], KeepPolicy(monthly=3))
    assert kept(groups) == ["2024-05-15T12:00:00", "2024-03-31T12:00:00", "2024-02-05T12:00:00"]


def test_rules_combine_as_a_union_with_reasons() -> None:
    snaps = [snap(f"2024-01-0{d}T{h}") for d in range(1, 5) for h in ("06:00", "12:00", "18:00")]
    [group] = apply_policy(snaps, KeepPolicy(last=2, daily=3))
    assert kept([group]) == [
        "2024-01-04T18:00:00",
        "2024-01-04T12:00:00",
        "2024-01-03T18:00:00",
        "2024-01-02T18:00:00",
    ]
    newest = max(group.keep, key=lambda s: s.time)
    assert group.reasons[newest.id] == ["last", "daily"]


def test_keep_tag_keeps_tagged_snapshots_of_any_age() -> None:
    snaps = every("2024-01-01T00:00", timedelta(days=1), 5)
    snaps[1] = snap("2024-01-02T00:00", tags=("release",))
    [group] = apply_policy(snaps, KeepPolicy(last=1, tags=("release",)))
    assert kept([group]) == ["2024-01-05T00:00:00", "2024-01-02T00:00:00"]
    assert group.reasons[snaps[1].id] == ["tag"]


def test_snapshots_are_grouped_by_host_and_paths() -> None:
    snaps = [
        *every("2024-01-01T00:00", timedelta(hours=1), 3, host="a", paths=("/data", "/models")),
        *every("2024-01-02T00:00", timedelta(hours=1), 2, host="a", paths=("/models", "/data")),
        *every("2024-01-01T00:00", timedelta(hours=1), 2, host="b", paths=("/data", "/models")),
        *every("2024-01-01T00:00", timedelta(hours=1), 2, host="a", paths=("/data",)),
    ]
    groups = apply_policy(snaps, KeepPolicy(last=1))
    assert {g.key: len(g.keep) + len(g.remove) for g in groups} == {
        ("a", ("/data", "/models")): 5,  # path order does not matter
        ("b", ("/data", "/models")): 2,
        ("a", ("/data",)): 2,
    }
    assert kept(groups) == ["2024-01-02T01:00:00", "2024-01-01T01:00:00", "2024-01-01T01:00:00"]


def test_an_empty_policy_is_refused() -> None:
    with pytest.raises(UsageError):
        apply_policy(every("2024-01-01T00:00", timedelta(hours=1), 3), KeepPolicy())
    assert apply_policy([], KeepPolicy(last=1)) == []


# --- forget and prune on a repository -----------------------------------------------------------


@dataclass
class History:
    """Three snapshots of one directory: {a, b}, {a, c}, {a, c, d}.

    Backed up with one worker, so the first snapshot's a and b share a pack:
    once it is forgotten, that pack is half garbage.
    """

    repo: Repository
    src: Path
    snaps: list[Snapshot]
    states: dict[bytes, dict[str, Entry]]

    def blobs_of(self, snap: Snapshot, rel: str) -> list[bytes]:
        return node_at(self.repo, snap, self.src / rel).content

    def assert_restores(self, repo: Repository, snaps: list[Snapshot], out: Path) -> None:
        for s in snaps:
            restore_and_compare(repo, s, out / s.short_id, {self.src: self.states[s.id]})


def build_history(repo: Repository, root: Path) -> History:
    src = make_files(
        root / "src", {"a.bin": random_bytes(120_000, 30), "b.bin": random_bytes(100_000, 31)}
    )
    history = History(repo, src, [], {})

    def take() -> None:
        s = backup(repo, [src], workers=1).snapshot
        history.snaps.append(s)
        history.states[s.id] = tree_state(src, meta=False)

    take()
    (src / "b.bin").unlink()
    (src / "c.bin").write_bytes(random_bytes(150_000, 32))
    take()
    (src / "d.bin").write_bytes(random_bytes(50_000, 33))
    take()
    return history


def stored_bytes(storage: Storage) -> int:
    return sum(info.size for info in storage.list("data/"))


@pytest.fixture
def history(repo: Repository, tmp_path: Path) -> History:
    return build_history(repo, tmp_path)


def test_forget_and_prune_free_the_forgotten_data(history: History, tmp_path: Path) -> None:
    storage = history.repo.storage
    first, *rest = history.snaps
    b_blobs = history.blobs_of(first, "b.bin")
    c_blobs = history.blobs_of(rest[-1], "c.bin")
    before = stored_bytes(storage)

    [group] = forget(open_repo(storage), KeepPolicy(last=2))
    assert [s.id for s in group.remove] == [first.id]
    assert stored_bytes(storage) == before, "forget alone frees nothing"
    result = prune(open_repo(storage))

    assert result.blobs_removed >= len(b_blobs) and result.bytes_freed > 0
    assert before - stored_bytes(storage) >= 90_000  # b.bin was 100 kB of random bytes
    repo = open_repo(storage)
    assert not any(repo.index.has(b) for b in b_blobs)
    assert all(repo.index.has(b) for b in c_blobs)
    assert [s.id for s in repo.list_snapshots()] == [s.id for s in rest]
    history.assert_restores(repo, rest, tmp_path / "out")
    checked = check(repo, read_data=True)
    assert checked.ok and checked.warnings == []


def test_prune_repacks_partly_used_packs(history: History, tmp_path: Path) -> None:
    storage = history.repo.storage
    first = history.snaps[0]
    a_blobs = history.blobs_of(first, "a.bin")
    mixed = {pack_of(history.repo, b) for b in a_blobs}
    assert len(mixed) == 1, "a.bin and b.bin should share one pack"

    forget(open_repo(storage), KeepPolicy(last=2))
    result = prune(open_repo(storage))
    assert result.packs_repacked >= 1 and result.packs_written >= 1
    assert not names(storage, "data/") & mixed, "the half-used pack is gone"

    repo = open_repo(storage)
    assert all(repo.index.has(b) for b in a_blobs), "a.bin's data moved to a new pack"
    history.assert_restores(repo, history.snaps[1:], tmp_path / "out")
    assert check(repo, read_data=True).ok


def test_prune_interrupted_at_any_write_or_delete(tmp_path: Path) -> None:
    history = build_history(new_repo(), tmp_path)
    forget(history.repo, KeepPolicy(last=2))
    kept = history.snaps[1:]
    template = history.repo.storage
    assert isinstance(template, MemoryStorage)
    counter = Recorder(ops=("put", "delete"), spare="locks/")
    prune(Repository.open(counter.wrap(copy_memory(template)), PASSWORD))
    assert counter.counted >= 5, "prune should write and delete several objects"

    for n in range(1, counter.counted + 1):
        storage = copy_memory(template)
        crash = Recorder(fail_at=n, ops=("put", "delete"), spare="locks/")
        with pytest.raises(SimulatedCrash):
            prune(open_repo(crash.wrap(storage)))
        repo = open_repo(storage)
        result = check(repo, read_data=True)
        assert result.errors == [] and result.damaged == {}, f"after a crash at call {n}"
        history.assert_restores(repo, kept, tmp_path / f"crash-{n}")
        prune(open_repo(storage))  # the next prune finishes the job
        assert check(open_repo(storage), read_data=True).ok, f"after a crash at call {n}"
        assert {s.id for s in open_repo(storage).list_snapshots()} == {s.id for s in kept}


def test_prune_refuses_a_damaged_index(history: History) -> None:
    storage = history.repo.storage
    forget(open_repo(storage), KeepPolicy(last=1))
    flip_byte(storage, sorted(names(storage, "index/"))[0], 50)
    before = objects(storage)
    with pytest.raises(IntegrityError, match="damaged"):
        prune(Repository.open(storage, PASSWORD))
    assert objects(storage) == before


def test_prune_refuses_when_a_snapshot_cannot_be_read(history: History) -> None:
    storage = history.repo.storage
    last = history.snaps[-1]
    storage.delete(pack_of(history.repo, last.tree))  # the pack holding the newest root tree
    forget(open_repo(storage), KeepPolicy(last=1))
    before = objects(storage)
    with pytest.raises(SeawallError):
        prune(open_repo(storage))
    assert objects(storage) == before


def test_prune_is_idempotent_on_a_compact_repository(tmp_path: Path) -> None:
    """A second prune with nothing to free changes nothing (no endless repacking of the
    small tree pack and data pack every backup leaves)."""
    src = make_files(tmp_path / "src", {"a.txt": b"hello " * 1000, "b.bin": os.urandom(30_000)})
    repo = Repository.init(
        LocalStorage(tmp_path / "repo"), PASSWORD, kdf=FAST_KDF, chunker=SMALL_CHUNKS
    )
    backup(repo, [src])
    prune(Repository.open(repo.storage, PASSWORD))
    before = sorted(i.name for i in repo.storage.list(""))
    again = prune(Repository.open(repo.storage, PASSWORD))
    assert (again.packs_deleted, again.packs_repacked, again.packs_written) == (0, 0, 0)
    assert sorted(i.name for i in repo.storage.list("")) == before
