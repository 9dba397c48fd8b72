"""The restorer: pack-ordered, out-of-order writes; shared and repeated blobs; damage
confined to the files that use a bad blob; never writing through a planted symlink."""

from __future__ import annotations

import os
from pathlib import Path

from seawall.engine.restorer import Restorer
from seawall.operations.backup import backup
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot
from tests.conftest import make_files
from tests.operations.helpers import (
    corrupt_blob,
    names,
    new_repo,
    node_at,
    open_repo,
    pack_of,
    random_bytes,
    restored_path,
)


def restore_tree(repo: Repository, snap: Snapshot, out: Path) -> Restorer:
    restorer = Restorer(open_repo(repo.storage), workers=4)
    restorer.restore(snap.tree, out)
    return restorer


def test_large_file_from_many_packs_stored_out_of_order(tmp_path: Path) -> None:
    repo = new_repo()
    segments = [random_bytes(400_000, 40 + i) for i in range(3)]
    stage: dict[str, int] = {}  # pack -> which backup wrote it
    for step, i in enumerate(reversed(range(3))):  # the file's tail is stored first, its head last
        backup(repo, [make_files(tmp_path / f"segment-{i}", {"part": segments[i]})])
        stage.update(dict.fromkeys(names(repo.storage, "data/") - stage.keys(), step))
    src = make_files(tmp_path / "src", {"model.bin": b"".join(segments)})
    snap = backup(repo, [src]).snapshot

    content = node_at(repo, snap, src / "model.bin").content
    packs = [pack_of(repo, c) for c in content]
    order = [stage.get(p, 99) for p in packs]
    assert len(set(packs)) >= 4 and order != sorted(order), "the file's chunks should be scattered"

    restorer = restore_tree(repo, snap, tmp_path / "out")
    assert restorer.stats.damaged == []
    assert restored_path(tmp_path / "out", src / "model.bin").read_bytes() == b"".join(segments)


def shared_blob_tree(root: Path) -> tuple[Path, dict[str, bytes]]:
    zeros = bytes(1_000_000)  # one max-size chunk, repeated
    pattern = random_bytes(200_000, 50) * 3
    files = {
        "zeros.bin": zeros,
        "copy/zeros.bin": zeros,
        "repeat.bin": pattern,
        "repeat-prefix.bin": pattern[:250_000],
        "other.bin": random_bytes(80_000, 51),
    }
    return make_files(root, files), files


def test_blob_used_twice_in_a_file_and_in_two_files(tmp_path: Path) -> None:
    repo = new_repo()
    src, files = shared_blob_tree(tmp_path / "src")
    snap = backup(repo, [src]).snapshot
    zeros = node_at(repo, snap, src / "zeros.bin").content
    repeat = node_at(repo, snap, src / "repeat.bin").content
    assert len(set(zeros)) < len(zeros) and len(set(repeat)) < len(repeat), "repeats within a file"
    assert zeros == node_at(repo, snap, src / "copy/zeros.bin").content
    assert set(repeat) & set(node_at(repo, snap, src / "repeat-prefix.bin").content)

    restorer = restore_tree(repo, snap, tmp_path / "out")
    assert restorer.stats.damaged == [] and restorer.stats.files == len(files)
    for rel, data in files.items():
        assert restored_path(tmp_path / "out", src / rel).read_bytes() == data, rel


def test_a_bad_blob_damages_only_the_files_that_use_it(tmp_path: Path) -> None:
    repo = new_repo()
    src, files = shared_blob_tree(tmp_path / "src")
    snap = backup(repo, [src]).snapshot
    zeros = node_at(repo, snap, src / "zeros.bin").content
    bad = max(zeros, key=zeros.count)
    users = {rel for rel in files if bad in node_at(repo, snap, src / rel).content}
    assert users == {"zeros.bin", "copy/zeros.bin"}
    corrupt_blob(repo, bad)

    out = tmp_path / "out"
    restorer = restore_tree(repo, snap, out)
    assert sorted(p for p, _why in restorer.stats.damaged) == sorted(
        str(src / rel) for rel in users
    )
    for rel, data in files.items():
        path = restored_path(out, src / rel)
        if rel in users:
            assert not path.exists(), "a damaged file must not be left half-written"
        else:
            assert path.read_bytes() == data, rel


def test_restore_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    repo = new_repo()
    src = make_files(tmp_path / "src", {"config.json": b'{"lr": 0.1}', "models/w.bin": b"w"})
    snap = backup(repo, [src]).snapshot
    precious = make_files(tmp_path / "precious", {"config.json": b"must survive"})
    out = tmp_path / "out"
    restored_path(out, src).mkdir(parents=True)
    os.symlink(precious / "config.json", restored_path(out, src / "config.json"))
    os.symlink(precious, restored_path(out, src / "models"))  # a directory, too

    restore_tree(repo, snap, out)
    assert sorted(p.name for p in precious.iterdir()) == ["config.json"]
    assert (precious / "config.json").read_bytes() == b"must survive"
    for rel, data in (("config.json", b'{"lr": 0.1}'), ("models/w.bin", b"w")):
        path = restored_path(out, src / rel)
        assert not path.parent.is_symlink() and not path.is_symlink() and path.read_bytes() == data
