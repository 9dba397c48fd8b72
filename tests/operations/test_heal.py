"""repair heal: a damaged repository made whole again from a replica, and nothing lost
of what the replica cannot give back."""

from __future__ import annotations

import json
from pathlib import Path

from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.copy import copy
from seawall.operations.heal import heal
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import make_files, reopen
from tests.operations.helpers import (
    corrupt_blob,
    flip_byte,
    new_repo,
    node_at,
    pack_of,
    random_bytes,
    restore_and_compare,
    run_cli,
)


def _repos(tmp_path: Path) -> tuple[Repository, Repository]:
    primary = new_repo(LocalStorage(tmp_path / "primary"))
    replica = new_repo(LocalStorage(tmp_path / "replica"))
    return primary, replica


def test_lost_and_corrupted_packs_are_healed_from_the_replica(tmp_path: Path) -> None:
    src = make_files(
        tmp_path / "src",
        {"a.bin": random_bytes(300_000, 1), "b.bin": random_bytes(300_000, 2), "c.txt": b"c" * 10},
    )
    primary, replica = _repos(tmp_path)
    snap = backup(primary, [src]).snapshot
    copy(primary, replica)
    primary.load_index()
    lost = pack_of(primary, node_at(primary, snap, src / "a.bin").content[0])
    # Chunks and packs depend on the repository's keys: a blob of b.bin in another pack.
    blobs = node_at(primary, snap, src / "b.bin").content
    damaged_blob = next(b for b in reversed(blobs) if pack_of(primary, b) != lost)
    corrupted = pack_of(primary, damaged_blob)
    primary.storage.delete(lost)
    corrupt_blob(primary, damaged_blob)
    assert not check(reopen(primary), read_data=True).ok

    result = heal(reopen(primary), replica)

    assert result.ok and result.healed == [snap.short_id] and not result.unhealed
    assert result.damaged_packs == {
        lost.rsplit("/", 1)[1]: "missing",
        corrupted.rsplit("/", 1)[1]: "corrupted",
    }
    assert result.salvaged_blobs > 0  # the corrupted pack's other blobs, kept
    assert result.packs_deleted == [corrupted.rsplit("/", 1)[1]]
    assert not (tmp_path / "primary" / corrupted).exists()
    healed = reopen(primary)
    assert check(healed, read_data=True).ok
    restore_and_compare(healed, snap, tmp_path / "restored")
    # Healing again finds nothing to do.
    again = heal(reopen(primary), replica)
    assert again.ok and again.before.ok and not again.damaged_packs


def test_what_the_replica_lacks_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    primary, replica = _repos(tmp_path)
    old = make_files(tmp_path / "old", {"x.bin": random_bytes(200_000, 3)})
    files = {f"f{i}.bin": random_bytes(20_000, 10 + i) for i in range(8)}
    new = make_files(tmp_path / "new", files)
    copied = backup(primary, [old]).snapshot
    copy(primary, replica)
    uncopied = backup(primary, [new]).snapshot  # never copied
    primary.load_index()
    # A pack holding chunks of two files (a backup thread fills its own packs: with 8
    # small files, one holds several); one chunk of one file in it is corrupted.
    files_in: dict[str, set[str]] = {}
    for name in files:
        for blob in node_at(primary, uncopied, new / name).content:
            files_in.setdefault(pack_of(primary, blob), set()).add(name)
    pack, shared = next((p, sorted(n)) for p, n in files_in.items() if len(n) >= 2)
    victim = shared[0]
    chunk = next(
        b for b in node_at(primary, uncopied, new / victim).content if pack_of(primary, b) == pack
    )
    corrupt_blob(primary, chunk)
    flip_byte(
        primary.storage, pack_of(primary, node_at(primary, copied, old / "x.bin").content[0]), 40
    )

    result = heal(reopen(primary), replica)

    assert not result.ok
    assert result.healed == [copied.short_id]
    assert "holds no copy" in result.unhealed[uncopied.short_id]
    assert (tmp_path / "primary" / pack).exists()  # kept while something is unhealed
    after = check(reopen(primary), read_data=True)
    # Only the file with the corrupted chunk is lost: the pack's other blobs were salvaged.
    assert after.damaged == {uncopied.short_id: [str(new / victim)]}
    healed = reopen(primary)
    restore_and_compare(healed, copied, tmp_path / "old-restored")


def test_damaged_index_is_rebuilt_then_healed(tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"a.bin": random_bytes(150_000, 6)})
    primary, replica = _repos(tmp_path)
    snap = backup(primary, [src]).snapshot
    copy(primary, replica)
    (index,) = [i.name for i in primary.storage.list("index/")]
    flip_byte(primary.storage, index, 30)
    result = heal(reopen(primary), replica)
    assert result.index_rebuilt and result.ok
    restore_and_compare(reopen(primary), snap, tmp_path / "restored")


def test_repair_heal_command(tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"a.bin": random_bytes(200_000, 7)})
    primary, replica = _repos(tmp_path)
    snap = backup(primary, [src]).snapshot
    copy(primary, replica)
    primary.load_index()
    lost = pack_of(primary, node_at(primary, snap, src / "a.bin").content[0])
    primary.storage.delete(lost)
    location = str(tmp_path / "primary")
    out = run_cli(location, "repair", "heal", "--from-replica", str(tmp_path / "replica"), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] and doc["healed"] == [snap.short_id]
    assert doc["damaged_packs"] == {lost.rsplit("/", 1)[1]: "missing"}
    out = run_cli(location, "repair", "heal", "--from-replica", str(tmp_path / "replica"))
    assert out.returncode == 0 and "nothing to heal" in out.stdout
    out = run_cli(location, "repair", "heal", "--from-replica", location)
    assert out.returncode == 2 and "damaged repository itself" in out.stderr
