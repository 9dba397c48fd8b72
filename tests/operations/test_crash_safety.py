"""A backup killed at any instant leaves a repository that check accepts, and
running it again completes it without uploading again what was stored.

Two ways to die: a real ``seawall backup`` process killed with SIGKILL at
points spread over its run, and (deterministic, no processes) a store that
stops accepting writes at the N-th put, as a process that died there would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage, MemoryStorage, Storage
from tests.conftest import PASSWORD, make_files
from tests.operations.helpers import (
    Recorder,
    SimulatedCrash,
    copy_memory,
    names,
    new_repo,
    open_repo,
    pack_blob_ids,
    random_bytes,
    restore_and_compare,
    run_cli,
    start_cli,
)

MB = 1024 * 1024


@dataclass
class World:
    src: Path  # ~40 MB: model weights and a folder of small CSV files
    small: Path  # ~3 MB, for the in-process crashes
    template: Path  # a local repository holding one older snapshot (of src/data)
    new_packs: int  # how many packs a full CLI backup of src adds to the template
    memory: MemoryStorage  # the same for the in-process crashes: one snapshot of small/data
    puts: int  # how many puts a full backup of small makes


def build_tree(root: Path, models: int, model_size: int) -> Path:
    make_files(
        root, {f"models/model-{i}.safetensors": random_bytes(model_size, i) for i in range(models)}
    )
    make_files(
        root, {f"data/part-{i:03d}.csv": f"{i},{i * 7 % 13}\n".encode() * 400 for i in range(300)}
    )
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("crash")
    src = build_tree(base / "src", models=4, model_size=9 * MB)
    small = build_tree(base / "small", models=1, model_size=3 * MB)

    template = base / "template"
    backup(new_repo(LocalStorage(template)), [src / "data"])
    reference = base / "reference"
    shutil.copytree(template, reference)
    done = run_cli(reference, "backup", str(src))
    assert done.returncode == 0, done.stderr
    new_packs = len(names(LocalStorage(reference), "data/")) - len(
        names(LocalStorage(template), "data/")
    )

    memory = MemoryStorage()
    backup(new_repo(memory), [small / "data"])
    counter = Recorder()
    backup(Repository.open(counter.wrap(copy_memory(memory)), PASSWORD), [small])
    return World(src, small, template, new_packs, memory, counter.counted)


def assert_valid_and_resumable(storage: Storage, src: Path, out: Path) -> None:
    """What must hold after a crash: check is clean, every snapshot restores,
    and the rerun completes, restores, and stores no blob that was already stored."""
    repo = open_repo(storage)
    result = check(repo, read_data=True)
    assert result.errors == [] and result.damaged == {}
    assert all("not in any index" in w for w in result.warnings), result.warnings
    snapshots = repo.list_snapshots()
    assert snapshots, "the older snapshot must survive"
    for i, snap in enumerate(snapshots):
        restore_and_compare(repo, snap, out / f"snapshot-{i}")

    stored = names(storage, "data/")
    stored_blobs = pack_blob_ids(repo, stored)
    recorder = Recorder()
    rerun = backup(Repository.open(recorder.wrap(storage), PASSWORD), [src])
    uploaded = set(recorder.puts("data/"))
    assert not uploaded & stored, "a pack that was already stored was uploaded again"
    assert not pack_blob_ids(repo, uploaded) & stored_blobs, "stored data was uploaded again"

    final = open_repo(storage)
    assert check(final).ok
    restore_and_compare(final, rerun.snapshot, out / "rerun")


# --- SIGKILL of a real process ------------------------------------------------------------------


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False if it finished first."""
    killed = False
    while proc.poll() is None:
        if ready():
            proc.kill()
            killed = True
            break
        time.sleep(0.002)
    _out, err = proc.communicate()
    assert killed or proc.returncode == 0, err
    return killed


#: Instants to die at, as observable progress of the backup (robust to machine speed,
#: unlike delays): right after it locked the repository, at a share of the packs it
#: will write, right after its first index object, and right after its snapshot.
KILL_POINTS = ["locked", "packs-15%", "packs-50%", "first-index", "packs-90%", "snapshot"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_any_instant(world: World, tmp_path: Path, point: str) -> None:
    repo_dir = tmp_path / "repo"
    shutil.copytree(world.template, repo_dir)
    storage = LocalStorage(repo_dir)
    counts = {kind: len(names(storage, f"{kind}/")) for kind in ("data", "index", "snapshots")}

    def grown(kind: str, by: int) -> Callable[[], bool]:
        return lambda: len(names(storage, f"{kind}/")) >= counts[kind] + by

    ready = {
        "locked": lambda: bool(names(storage, "locks/")),
        "first-index": grown("index", 1),
        "snapshot": grown("snapshots", 1),
    }.get(point) or grown("data", max(1, world.new_packs * int(point[6:-1]) // 100))

    proc = start_cli(repo_dir, "backup", str(world.src))
    killed = kill_when(proc, ready)
    if point in ("locked", "packs-15%", "packs-50%"):
        assert killed, "the backup finished before the kill point"
    assert_valid_and_resumable(storage, world.src, tmp_path / "out")


# --- a store that stops at the N-th put ---------------------------------------------------------

#: Where to stop, as a function of P, the number of puts of a full backup
#: (the first put is the lock). P varies by a pack or so between runs, as
#: chunks fall differently across threads, so the snapshot case is keyed on
#: the snapshot's own put instead.
CRASH_AT: dict[str, Callable[[int], int]] = {
    "lock": lambda p: 1,
    "first-pack": lambda p: 2,
    "quarter": lambda p: p // 4,
    "half": lambda p: p // 2,
    "three-quarters": lambda p: 3 * p // 4,
    "last-index": lambda p: p - 1,
}


@pytest.mark.parametrize("where", [*CRASH_AT, "snapshot"])
def test_crash_at_nth_put(world: World, tmp_path: Path, where: str) -> None:
    storage = copy_memory(world.memory)
    if where == "snapshot":
        crash = Recorder(fail_at=1, only="snapshots/")
    else:
        crash = Recorder(fail_at=CRASH_AT[where](world.puts))
    with pytest.raises(SimulatedCrash):
        backup(Repository.open(crash.wrap(storage), PASSWORD), [world.small])
    assert_valid_and_resumable(storage, world.small, tmp_path / "out")
