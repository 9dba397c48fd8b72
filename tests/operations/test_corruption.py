"""Damage and hostile conditions: check finds missing and corrupted objects and
names the snapshots and files they affect; restore saves every healthy file;
a wrong password, a full disk and unreadable source files leave the repository valid."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from seawall.errors import DamagedSnapshot, IntegrityError, StorageFull, WrongPassword
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.inspect import ls
from seawall.operations.repair import repair_index
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from seawall.repository.snapshot import FILE, Snapshot
from seawall.storage import LocalStorage, MemoryStorage
from tests.conftest import PASSWORD, make_files, tree_digest
from tests.operations.helpers import (
    Entry,
    corrupt_blob,
    flip_byte,
    names,
    new_repo,
    node_at,
    objects,
    open_repo,
    pack_of,
    quota_storage,
    random_bytes,
    restore_and_compare,
    restored_path,
    run_cli,
    tree_state,
)


@dataclass
class World:
    """Two snapshots of one directory: s2 adds only2.bin, whose data only s2's packs hold."""

    repo: Repository
    src: Path
    s1: Snapshot
    s2: Snapshot
    states: dict[bytes, dict[str, Entry]]  # snapshot id -> the source as it was backed up
    s2_index: str  # the index object s2's backup wrote: it alone names s2's new packs

    def path(self, rel: str) -> str:
        return str(self.src / rel)

    def packs_of(self, rel: str) -> set[str]:
        """Names of the packs holding a file's data."""
        return {pack_of(self.repo, c) for c in node_at(self.repo, self.s2, self.path(rel)).content}

    def files_in(self, snap: Snapshot, packs: set[str]) -> list[str]:
        """The oracle: files of ``snap`` with data in ``packs`` (from the index, not from check)."""
        return sorted(
            p
            for p, n in ls(self.repo, snap)
            if n.type == FILE and any(pack_of(self.repo, c) in packs for c in n.content)
        )

    def restore_healthy(self, snap: Snapshot, out: Path, damaged: list[str]) -> None:
        """Restore ``snap``: exactly ``damaged`` fail, every other file is exact."""
        with pytest.raises(DamagedSnapshot) as info:
            restore(open_repo(self.repo.storage), snap, out)
        assert sorted(info.value.damaged) == sorted(damaged)
        # Damaged files are removed; a directory whose listing is damaged stays, empty.
        expected = {
            rel: entry
            for rel, entry in self.states[snap.id].items()
            if not any(self.path(rel).startswith(d + "/") for d in damaged)
            and not (self.path(rel) in damaged and entry[0] != "dir")
        }
        assert tree_state(restored_path(out, self.src), meta=False) == expected


def build_world(repo: Repository, root: Path) -> World:
    src = make_files(
        root / "src",
        {
            "shared.bin": random_bytes(300_000, 20),
            "notes.txt": b"release notes\n" * 50,
            "sub/inner.txt": b"inner",
            "sub/deeper/weights.bin": random_bytes(100_000, 21),
        },
    )
    states: dict[bytes, dict[str, Entry]] = {}
    s1 = backup(repo, [src]).snapshot
    states[s1.id] = tree_state(src, meta=False)
    (src / "only2.bin").write_bytes(random_bytes(300_000, 22))
    indexes = names(repo.storage, "index/")
    s2 = backup(repo, [src]).snapshot
    states[s2.id] = tree_state(src, meta=False)
    [s2_index] = names(repo.storage, "index/") - indexes
    return World(open_repo(repo.storage), src, s1, s2, states, s2_index)


@pytest.fixture
def world(repo: Repository, tmp_path: Path) -> World:
    return build_world(repo, tmp_path)


@pytest.fixture
def local_world(local_repo: tuple[Path, Repository], tmp_path: Path) -> tuple[Path, World]:
    path, repo = local_repo
    return path, build_world(repo, tmp_path)


def test_missing_pack_is_found_with_the_files_it_damages(world: World) -> None:
    [victim, *_] = sorted(world.packs_of("shared.bin"))
    expected = {s.short_id: world.files_in(s, {victim}) for s in (world.s1, world.s2)}
    world.repo.storage.delete(victim)

    result = check(open_repo(world.repo.storage))
    assert f"pack {victim.rsplit('/', 1)[1][:12]} is missing" in result.errors
    assert result.damaged == expected
    assert all(world.path("shared.bin") in paths for paths in result.damaged.values())


def test_snapshot_with_missing_data_is_the_only_one_reported(world: World) -> None:
    for name in world.packs_of("only2.bin"):
        world.repo.storage.delete(name)
    result = check(open_repo(world.repo.storage))
    assert not result.ok
    assert result.damaged == {world.s2.short_id: [world.path("only2.bin")]}


def test_flipped_byte_in_a_pack_is_found_by_read_data(world: World) -> None:
    corrupt_blob(world.repo, node_at(world.repo, world.s2, world.path("only2.bin")).content[0])

    result = check(open_repo(world.repo.storage), read_data=True)
    assert any("does not match its name" in e for e in result.errors)
    assert result.damaged == {world.s2.short_id: [world.path("only2.bin")]}


def test_flipped_byte_in_an_index_object(world: World) -> None:
    storage = world.repo.storage
    flip_byte(storage, world.s2_index, 40)

    result = check(Repository.open(storage, PASSWORD))
    assert any(e.startswith(f"index {world.s2_index[6:14]} is damaged") for e in result.errors)
    assert any("not in any index" in w for w in result.warnings)
    # s2's root tree is in a pack only that index named; s1 is whole.
    assert result.damaged == {world.s2.short_id: ["/"]}
    with pytest.raises(IntegrityError, match="damaged"):  # writers refuse a damaged index
        backup(Repository.open(storage, PASSWORD), [world.src])


def test_restore_of_a_damaged_snapshot_saves_every_healthy_file(
    world: World, tmp_path: Path
) -> None:
    for name in world.packs_of("only2.bin"):
        world.repo.storage.delete(name)
    world.restore_healthy(world.s2, tmp_path / "out", [world.path("only2.bin")])
    restore_and_compare(
        world.repo, world.s1, tmp_path / "s1", {world.src: world.states[world.s1.id]}
    )


def test_corrupted_tree_blob(world: World, tmp_path: Path) -> None:
    sub = node_at(world.repo, world.s1, world.path("sub")).subtree
    assert sub is not None
    corrupt_blob(world.repo, sub)

    result = check(open_repo(world.repo.storage))
    # sub/ did not change between the snapshots, so both share its tree blob.
    assert result.damaged == {s.short_id: [world.path("sub")] for s in (world.s1, world.s2)}
    assert any("directory listing unreadable" in e for e in result.errors)
    world.restore_healthy(world.s1, tmp_path / "out", [world.path("sub")])


def test_cli_reports_damage_and_exits_non_zero(
    local_world: tuple[Path, World], tmp_path: Path
) -> None:
    repo_dir, world = local_world
    for name in world.packs_of("only2.bin"):
        world.repo.storage.delete(name)
    lost = world.path("only2.bin")

    checked = run_cli(repo_dir, "check")
    assert checked.returncode == 1
    assert f"snapshot {world.s2.short_id} is damaged" in checked.stderr and lost in checked.stderr
    assert world.s1.short_id not in checked.stderr

    restored = run_cli(repo_dir, "restore", world.s2.id.hex(), "--target", str(tmp_path / "out"))
    assert restored.returncode == 1
    assert f"damaged: {lost}:" in restored.stderr and "Traceback" not in restored.stderr
    assert (restored_path(tmp_path / "out", world.src) / "shared.bin").exists()
    assert not (restored_path(tmp_path / "out", world.src) / "only2.bin").exists()


def test_wrong_password_changes_nothing(local_world: tuple[Path, World]) -> None:
    repo_dir, world = local_world
    before = objects(world.repo.storage)
    with pytest.raises(WrongPassword):
        Repository.open(world.repo.storage, "not the password")
    for args in (["snapshots"], ["backup", str(world.src)], ["prune"]):
        done = run_cli(repo_dir, *args, password="not the password")
        assert done.returncode == 12, done.stderr
        assert "password" in done.stderr and "Traceback" not in done.stderr
    assert objects(world.repo.storage) == before


def test_full_store_fails_cleanly_and_older_snapshots_survive(tmp_path: Path) -> None:
    inner = MemoryStorage()
    world = build_world(new_repo(inner), tmp_path)
    used = sum(len(v) for v in inner.objects.values())
    big = make_files(tmp_path / "big", {"checkpoint.bin": random_bytes(2_000_000, 23)})

    with pytest.raises(StorageFull, match="no space left"):
        backup(Repository.open(quota_storage(inner, used + 300_000), PASSWORD), [big])

    repo = open_repo(inner)
    result = check(repo, read_data=True)
    assert result.errors == [] and result.damaged == {}
    for snap in (world.s1, world.s2):
        restore_and_compare(
            repo, snap, tmp_path / snap.short_id, {world.src: world.states[snap.id]}
        )
    done = backup(repo, [big])  # space freed: the same backup now completes
    restore_and_compare(repo, done.snapshot, tmp_path / "big-restored")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a real disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount an 8 MiB tmpfs for the real full-disk test ({done.stderr.strip()}); "
            "run the suite as root (CI does), where `mount -t tmpfs` is permitted"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_full_disk(tiny_disk: Path, tmp_path: Path) -> None:
    repo_dir = tiny_disk / "repo"
    world = build_world(new_repo(LocalStorage(repo_dir)), tmp_path)
    ballast = tiny_disk / "other-files"  # what the user deletes to make room
    ballast.write_bytes(b"\0" * 1024 * 1024)
    before = names(LocalStorage(repo_dir), "data/")
    big = make_files(tmp_path / "big", {"checkpoint.bin": random_bytes(12 * 1024 * 1024, 24)})

    done = run_cli(repo_dir, "backup", str(big))
    assert done.returncode == 1
    assert "no space left" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr

    ballast.unlink()
    repo = open_repo(repo_dir)
    result = check(repo, read_data=True)
    assert result.errors == [] and result.damaged == {}
    for snap in (world.s1, world.s2):
        restore_and_compare(
            repo, snap, tmp_path / snap.short_id, {world.src: world.states[snap.id]}
        )
    leftovers = names(LocalStorage(repo_dir), "data/") - before
    assert leftovers, "the failed backup should have stored some packs before the disk filled"
    pruned = run_cli(repo_dir, "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert not names(LocalStorage(repo_dir), "data/") & leftovers, (
        "prune frees what the failure left"
    )
    assert check(open_repo(repo_dir), read_data=True).ok


def drop_read_override() -> None:
    """preexec_fn: take away root's power to read any file, so permission bits apply.

    Why not run as ``nobody``: the interpreter lives under /root (mode 0700),
    which nobody cannot execute. Root without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH cannot open a mode-000 file, exactly as nobody cannot.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_unreadable_source_files(local_repo: tuple[Path, Repository], tmp_path: Path) -> None:
    repo_dir, _repo = local_repo
    src = make_files(
        tmp_path / "src",
        {
            "a.txt": b"a",
            "sub/b.bin": random_bytes(50_000, 25),
            "secret.key": b"k",
            "locked/in.txt": b"i",
        },
    )
    expected = tree_state(src, meta=False)
    for rel in ("secret.key", "locked", "locked/in.txt"):
        del expected[rel]
    os.chmod(src / "secret.key", 0)
    os.chmod(src / "locked", 0)
    try:
        # Root reads any file: the backup runs without the capabilities that allow it.
        as_root = os.geteuid() == 0
        done = run_cli(
            repo_dir, "backup", str(src), preexec_fn=drop_read_override if as_root else None
        )
    finally:
        os.chmod(src / "locked", 0o755)
    assert done.returncode == 3, done.stderr
    for rel in ("secret.key", "locked"):
        assert f"cannot read {src / rel}: Permission denied" in done.stderr
    fresh = open_repo(repo_dir)
    assert check(fresh, read_data=True).ok
    restore(fresh, fresh.resolve_snapshot("latest"), tmp_path / "out")
    assert tree_state(restored_path(tmp_path / "out", src), meta=False) == expected


def test_repair_index_rebuilds_a_damaged_index_from_pack_headers(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    """A corrupted index makes the repository unusable until `repair index`
    rebuilds it from the pack tails; afterwards everything restores."""
    src = make_files(tmp_path / "src", {f"d/f{i}.bin": os.urandom(50_000) for i in range(8)})
    _path, repo = local_repo
    backup(repo, [src])
    for info in list(repo.storage.list("index/")):
        data = bytearray(repo.storage.get(info.name))
        data[len(data) // 2] ^= 0xFF
        repo.storage.put(info.name, bytes(data))
    with pytest.raises(IntegrityError):
        Repository.open(repo.storage, PASSWORD).load_index()
    result = repair_index(Repository.open(repo.storage, PASSWORD))
    assert result.packs_indexed >= 2 and not result.damaged_packs
    fresh = Repository.open(repo.storage, PASSWORD)
    assert check(fresh, read_data=True).ok
    restore(fresh, fresh.resolve_snapshot("latest"), tmp_path / "out")
    assert tree_digest(tmp_path / "out" / src.relative_to("/")) == tree_digest(src)


def test_backup_after_a_pack_is_lost_stores_its_data_again(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    """Nothing new may deduplicate against data that is gone: after a pack is
    lost, the next backup re-uploads what it held and re-indexes it, which
    heals the older snapshots that used the same chunks too."""
    src = make_files(tmp_path / "src", {f"f{i}.bin": os.urandom(40_000) for i in range(6)})
    _path, repo = local_repo
    first = backup(repo, [src]).snapshot
    data_packs = [i.name for i in repo.storage.list("data/") if i.size > 10_000]
    repo.storage.delete(data_packs[0])
    fresh = Repository.open(repo.storage, PASSWORD)
    second = backup(fresh, [src], use_parent=False)
    assert second.written.bytes_added > 0
    assert check(Repository.open(repo.storage, PASSWORD), read_data=True).ok
    for n, snap in enumerate((first, second.snapshot)):
        out = tmp_path / f"out{n}"
        restore(Repository.open(repo.storage, PASSWORD), snap, out)
        assert tree_digest(out / src.relative_to("/")) == tree_digest(src)
