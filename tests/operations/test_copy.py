"""copy: snapshots land in another repository (other keys, any backend) bit-identical,
verified; reruns and later copies transfer only what is missing; a killed copy is
finished by a rerun that uploads nothing again; residency rules are enforced."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from seawall.errors import (
    DamagedSnapshot,
    IntegrityError,
    ResidencyViolation,
    UsageError,
)
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.copy import CopyResult, copy
from seawall.operations.restore import restore
from seawall.repository.pack import DATA, TREE
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot
from seawall.storage import FaultyStorage, MemoryStorage, Storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files
from tests.operations.helpers import (
    Recorder,
    SimulatedCrash,
    copy_memory,
    corrupt_blob,
    data_blob_ids,
    names,
    new_repo,
    node_at,
    open_repo,
    pack_blob_ids,
    random_bytes,
    restored_path,
    tree_state,
)

OTHER_PASSWORD = "a different password for the target"


def target_repo(storage: Storage | None = None, *, region: str = "") -> Repository:
    """A target with its own password and keys."""
    return Repository.init(
        storage if storage is not None else MemoryStorage(),
        OTHER_PASSWORD,
        kdf=FAST_KDF,
        chunker=SMALL_CHUNKS,
        pack_size=SMALL_PACK,
        region=region,
    )


def reopen_target(storage: Storage) -> Repository:
    repo = Repository.open(storage, OTHER_PASSWORD)
    repo.load_index()
    return repo


def build_source(root: Path) -> Path:
    make_files(
        root,
        {
            "models/weights.bin": random_bytes(900_000, 1),
            "models/copy-of-weights.bin": random_bytes(900_000, 1),  # deduplicated
            "data/train.csv": b"id,label\n" + b"1,cat\n" * 20_000,
            "data/empty.csv": b"",
            "deep/a/b/c.txt": b"deep",
        },
    )
    (root / "empty-dir").mkdir()
    os.symlink("models/weights.bin", root / "link")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.bin"), "wb") as f:
        f.write(b"latin-1 name")
    return root


def change_source(root: Path) -> None:
    (root / "models/new.bin").write_bytes(random_bytes(400_000, 2))
    (root / "data/train.csv").write_bytes(b"id,label\n" + b"2,dog\n" * 20_000)
    (root / "deep/a/b/c.txt").unlink()


@pytest.fixture
def source(tmp_path: Path) -> tuple[Repository, Path, list[Snapshot]]:
    """A memory repository holding two snapshots of a tree (the tree as of the second)."""
    src = build_source(tmp_path / "src")
    repo = new_repo()
    first = backup(repo, [src], tags=["one"]).snapshot
    change_source(src)
    second = backup(repo, [src], tags=["two"]).snapshot
    return repo, src, [first, second]


def restored(repo: Repository, snap: Snapshot, out: Path) -> dict[str, object]:
    """Every path of the snapshot, restored: content, kinds, modes and mtimes."""
    restore(repo, snap, out)
    return {p: tree_state(restored_path(out, Path(p))) for p in snap.paths}


def data_only(repo: Repository, ids: set[bytes]) -> set[bytes]:
    def is_data(bid: bytes) -> bool:
        loc = repo.index.lookup(bid)
        assert loc is not None
        return loc.type == DATA

    return {b for b in ids if is_data(b)}


def assert_same_content(
    src: Repository, dst: Repository, pairs: list[tuple[Snapshot, Snapshot]], out: Path
) -> None:
    for i, (s, t) in enumerate(pairs):
        assert t.original == (s.original or s.id)
        for field in ("time", "paths", "hostname", "username", "tags", "excludes", "summary"):
            assert getattr(t, field) == getattr(s, field), field
        assert restored(dst, t, out / f"dst-{i}") == restored(src, s, out / f"src-{i}")


# --- the basics ---------------------------------------------------------------------------------


def test_copy_to_every_backend_restores_bit_identical(
    source: tuple[Repository, Path, list[Snapshot]], storage: Storage, tmp_path: Path
) -> None:
    src, _root, snaps = source
    dst = target_repo(storage)
    result = copy(src, dst)
    assert [c.source.id for c in result.copied] == [s.id for s in snaps]
    assert result.ok and not result.skipped
    assert all(c.verified_bytes > 0 for c in result.copied)

    dst = reopen_target(storage)
    copies = dst.list_snapshots()
    assert [c.original for c in copies] == [s.id for s in snaps]
    assert copies[1].parent == copies[0].id  # the parent maps to its copy
    assert_same_content(src, dst, list(zip(snaps, copies, strict=True)), tmp_path)
    # re-encrypted under other keys: no id, pack or object is shared
    assert not data_blob_ids(dst) & data_blob_ids(src)
    assert not names(storage, "data/") & names(src.storage, "data/")
    assert check(dst, read_data=True).ok


def test_a_rerun_skips_what_is_there_and_uploads_nothing(
    source: tuple[Repository, Path, list[Snapshot]],
) -> None:
    src, _root, snaps = source
    target = MemoryStorage()
    target_repo(target)
    copy(src, reopen_target(target))
    before = dict(target.objects)
    recorder = Recorder()
    again = copy(src, Repository.open(recorder.wrap(target), OTHER_PASSWORD))
    assert [s.id for s, _t in again.skipped] == [s.id for s in snaps]
    assert not again.copied and again.bytes_read == 0 and again.written.blobs_added == 0
    assert [n for n in recorder.puts() if not n.startswith("locks/")] == []
    assert {n: v for n, v in target.objects.items() if not n.startswith("locks/")} == {
        n: v for n, v in before.items() if not n.startswith("locks/")
    }


def test_named_snapshots_only(source: tuple[Repository, Path, list[Snapshot]]) -> None:
    src, _root, snaps = source
    dst = target_repo()
    result = copy(src, dst, [snaps[1].id.hex()[:10]], verify=False)
    assert [c.source.id for c in result.copied] == [snaps[1].id]
    assert result.copied[0].verified_bytes == 0  # not read back
    assert check(dst, read_data=True).ok
    assert [s.original for s in dst.list_snapshots()] == [snaps[1].id]
    assert dst.list_snapshots()[0].parent is None  # its parent is not in the target


def test_the_same_repository_is_refused(source: tuple[Repository, Path, list[Snapshot]]) -> None:
    src, _root, _snaps = source
    with pytest.raises(UsageError, match="same repository"):
        copy(src, Repository.open(src.storage, PASSWORD))


def test_copies_of_copies_keep_the_first_original(
    source: tuple[Repository, Path, list[Snapshot]], tmp_path: Path
) -> None:
    src, _root, snaps = source
    middle, last = target_repo(), target_repo()
    copy(src, middle)
    copy(middle, last)
    assert [s.original for s in last.list_snapshots()] == [s.id for s in snaps]
    assert_same_content(src, last, list(zip(snaps, last.list_snapshots(), strict=True)), tmp_path)
    # and back: the source already holds them
    back = copy(last, src)
    assert len(back.skipped) == 2 and not back.copied


# --- incremental ----------------------------------------------------------------------------------


def new_data_blobs(repo: Repository, snap: Snapshot, before: Snapshot | None) -> set[bytes]:
    def content(s: Snapshot) -> set[bytes]:
        from seawall.engine.trees import walk

        return {b for _p, n in walk(repo, s.tree) for b in n.content}

    return content(snap) - (content(before) if before else set())


def test_a_later_copy_reads_and_uploads_only_new_data(
    source: tuple[Repository, Path, list[Snapshot]], tmp_path: Path
) -> None:
    src, _root, snaps = source
    target = MemoryStorage()
    dst = target_repo(target)
    copy(src, dst, [snaps[0].id.hex()])
    recorder = Recorder()
    result = copy(src, Repository.open(recorder.wrap(target), OTHER_PASSWORD))
    (done,) = result.copied
    fresh = new_data_blobs(src, snaps[1], snaps[0])
    assert done.blobs_read == len(fresh) > 0  # unchanged data is not even read
    dst = reopen_target(target)
    assert len(data_only(dst, pack_blob_ids(dst, recorder.puts("data/")))) == len(fresh)
    assert_same_content(src, dst, [(snaps[1], dst.list_snapshots()[1])], tmp_path)


def test_without_a_related_copy_only_missing_blobs_are_uploaded(
    source: tuple[Repository, Path, list[Snapshot]], tmp_path: Path
) -> None:
    """Copy the newer snapshot first: the older one then has no copied ancestor to pair
    with, so its data is read, but only blobs the target lacks are uploaded."""
    src, _root, snaps = source
    target = MemoryStorage()
    copy(src, target_repo(target), [snaps[1].id.hex()])
    recorder = Recorder()
    result = copy(src, Repository.open(recorder.wrap(target), OTHER_PASSWORD))
    (done,) = result.copied
    older_only = new_data_blobs(src, snaps[0], snaps[1])
    assert done.blobs_read == len(new_data_blobs(src, snaps[0], None))
    dst = reopen_target(target)
    uploaded = pack_blob_ids(dst, recorder.puts("data/"))
    assert len(data_only(dst, uploaded)) == len(older_only) > 0
    assert_same_content(src, dst, [(snaps[0], dst.list_snapshots()[0])], tmp_path)


# --- killed halfway -------------------------------------------------------------------------------


def data_puts_of_full_copy(src: Repository) -> int:
    counter = Recorder(spare="locks/")
    target = MemoryStorage()
    target_repo(target)
    copy(src, Repository.open(counter.wrap(target), OTHER_PASSWORD))
    return len(counter.puts("data/"))


# The number of data puts varies by a pack between runs (chunks fall differently
# across threads), so the last crash point is one put before the measured total.
@pytest.mark.parametrize("share", [0.1, 0.5, 0.9, 1.0])
def test_a_killed_copy_is_finished_without_uploading_again(
    source: tuple[Repository, Path, list[Snapshot]], tmp_path: Path, share: float
) -> None:
    src, _root, snaps = source
    total = data_puts_of_full_copy(src)
    assert total >= 8
    target = MemoryStorage()
    target_repo(target)

    def crash_at_nth_data_put(n: int) -> Callable[[str, str], None]:
        seen = 0

        def hook(op: str, name: str) -> None:
            nonlocal seen
            if op == "put" and name.startswith(("data/", "index/", "snapshots/")):
                seen += 1 if name.startswith("data/") else 0
                if seen >= n:
                    raise SimulatedCrash(f"killed at {op} {name}")

        return hook

    with pytest.raises(SimulatedCrash):
        copy(
            src,
            Repository.open(
                FaultyStorage(
                    target, crash_at_nth_data_put(max(2, min(total - 1, int(total * share))))
                ),
                OTHER_PASSWORD,
            ),
        )
    dst = reopen_target(target)
    result = check(dst, read_data=True)
    assert result.errors == [] and result.damaged == {}
    assert len(dst.list_snapshots()) < 2
    stored = names(target, "data/")
    stored_blobs = pack_blob_ids(dst, stored)
    assert stored

    recorder = Recorder()
    rerun = copy(src, Repository.open(recorder.wrap(target), OTHER_PASSWORD))
    uploaded = set(recorder.puts("data/"))
    assert not uploaded & stored
    assert not pack_blob_ids(reopen_target(target), uploaded) & stored_blobs
    assert len(rerun.copied) + len(rerun.skipped) == 2
    dst = reopen_target(target)
    assert check(dst, read_data=True).ok
    assert_same_content(src, dst, list(zip(snaps, dst.list_snapshots(), strict=True)), tmp_path)


# --- residency ----------------------------------------------------------------------------------


def test_residency_refuses_one_snapshot_and_copies_the_rest(tmp_path: Path) -> None:
    root = build_source(tmp_path / "src")
    src = Repository.init(
        MemoryStorage(), PASSWORD, kdf=FAST_KDF, chunker=SMALL_CHUNKS, region="eu"
    )
    bound = backup(src, [root], residency="eu").snapshot
    free = backup(src, [root / "data"]).snapshot
    assert src.load_snapshot(bound.id).residency == "eu"

    us = target_repo(region="us")
    with pytest.raises(ResidencyViolation) as err:
        copy(src, us)
    message = str(err.value)
    assert bound.short_id in message and "'eu'" in message and "'us'" in message
    assert free.short_id not in message
    result = err.value.result
    assert isinstance(result, CopyResult)
    assert [c.source.id for c in result.copied] == [free.id]
    assert [s.id for s, _why in result.refused] == [bound.id]
    assert [s.original for s in us.list_snapshots()] == [free.id]

    unlabelled = target_repo()
    with pytest.raises(ResidencyViolation, match="no region label"):
        copy(src, unlabelled, [bound.id.hex()])
    assert unlabelled.list_snapshots() == []

    eu = target_repo(region="eu")
    result = copy(src, eu)
    assert len(result.copied) == 2
    copied = {s.original: s for s in eu.list_snapshots()}
    assert copied[bound.id].residency == "eu"  # the rule travels with the copy
    assert copied[free.id].residency == ""


def test_backup_refuses_a_residency_rule_of_another_region(tmp_path: Path) -> None:
    root = make_files(tmp_path / "src", {"a": b"a"})
    us = Repository.init(MemoryStorage(), PASSWORD, kdf=FAST_KDF, region="us")
    with pytest.raises(ResidencyViolation, match=r"'eu'.*'us'"):
        backup(us, [root], residency="eu")
    with pytest.raises(ResidencyViolation, match="no region label"):
        backup(new_repo(), [root], residency="eu")
    assert us.list_snapshots() == []
    with pytest.raises(UsageError, match="invalid residency"):
        backup(us, [root], residency="e u")
    assert backup(us, [root], residency="US").snapshot.residency == "us"


# --- damage and verification ----------------------------------------------------------------------


def test_a_damaged_source_snapshot_fails_alone(
    source: tuple[Repository, Path, list[Snapshot]], tmp_path: Path
) -> None:
    src, root, snaps = source
    storage = copy_memory(src.storage)  # type: ignore[arg-type]
    src = open_repo(storage)
    only_in_second = node_at(src, snaps[1], root / "models/new.bin").content[0]
    corrupt_blob(src, only_in_second)
    dst = target_repo()
    with pytest.raises(DamagedSnapshot, match=snaps[1].short_id) as err:
        copy(open_repo(storage), dst)
    assert err.value.damaged == [snaps[1].short_id]
    assert [s.original for s in dst.list_snapshots()] == [snaps[0].id]
    assert_same_content(src, dst, [(snaps[0], dst.list_snapshots()[0])], tmp_path)


class CorruptingStorage(MemoryStorage):
    """A store that flips a bit in the middle of every pack it is given."""

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        if name.startswith("data/"):
            bad = bytearray(data)
            bad[len(bad) // 3] ^= 0x04
            data = bytes(bad)
        super().put(name, data, if_absent=if_absent)


def test_verification_catches_a_target_that_corrupts_data(
    source: tuple[Repository, Path, list[Snapshot]],
) -> None:
    src, _root, _snaps = source
    target = CorruptingStorage()
    dst = target_repo(target)
    with pytest.raises(IntegrityError, match="does not match the source"):
        copy(src, dst)
    assert dst.list_snapshots() == []  # nothing unverified was recorded


def test_node_fields_this_version_does_not_know_are_copied(tmp_path: Path) -> None:
    """Trees are edited, not re-encoded: a field a newer seawall added survives the copy."""
    src = new_repo()
    writer = src.writer()
    content = writer.add(DATA, b"payload")
    node = {"name": "f", "type": "file", "mode": 0o644, "mtime_ns": 0, "uid": 0, "gid": 0}
    node |= {"size": 7, "inode": 1, "content": [content.hex()], "xattrs": {"user.k": "v"}}
    tree = writer.add(TREE, json.dumps({"nodes": [node]}, separators=(",", ":")).encode())
    writer.flush()
    writer.close()
    src.save_snapshot(Snapshot("2026-01-01T00:00:00+00:00", tree, ["/x"], "h", "u"))
    dst = target_repo()
    copy(src, dst)
    (snap,) = dst.list_snapshots()
    (copied,) = json.loads(dst.load_blob(snap.tree))["nodes"]
    assert copied["xattrs"] == {"user.k": "v"}
    assert dst.load_blob(bytes.fromhex(copied["content"][0])) == b"payload"


def test_verification_compares_content_not_just_ids(
    source: tuple[Repository, Path, list[Snapshot]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copier bug that pairs blobs wrongly writes authentic but wrong files: the
    content hashes from the source catch it."""
    from seawall.operations import copy as copy_module

    original = copy_module._Copier._copy_data

    def swapped(self: copy_module._Copier, needed: list[bytes]) -> int:
        read = original(self, needed)
        a, b = needed[0], needed[-1]
        ma, mb = self.data_map[a], self.data_map[b]
        assert ma[:32] != mb[:32]
        self.data_map[a], self.data_map[b] = mb[:32] + ma[32:], ma[:32] + mb[32:]
        return read

    monkeypatch.setattr(copy_module._Copier, "_copy_data", swapped)
    src, _root, _snaps = source
    dst = target_repo()
    with pytest.raises(IntegrityError, match="holds other bytes than the source"):
        copy(src, dst)
    assert dst.list_snapshots() == []
