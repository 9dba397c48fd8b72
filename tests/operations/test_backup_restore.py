"""Backup and restore round trips: realistic and generated trees, the files cache,
incremental backups, deduplication, excludes, includes, and files changing while read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.inspect import ls
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from seawall.storage import FaultyStorage
from tests.conftest import PASSWORD, SMALL_CHUNKS, make_files
from tests.operations.helpers import (
    data_blob_ids,
    new_repo,
    node_at,
    open_repo,
    pack_of,
    random_bytes,
    restore_and_compare,
    restored_path,
    tree_state,
)

BIG = 3 * 1024 * 1024  # ~190 chunks of SMALL_CHUNKS, a dozen SMALL_PACK packs
NON_UTF8 = b"caf\xe9-latin1.bin"


def build_realistic_tree(src: Path) -> Path:
    """Nested dirs, empty files and dirs, every kind of symlink, unicode and
    non-UTF-8 names, a many-chunk file, varied modes and nanosecond mtimes."""
    make_files(
        src,
        {
            "datasets/train/part-0000.csv": b"id,label\n" + b"1,cat\n" * 5000,
            "datasets/train/part-0001.csv": b"id,label\n" + b"2,dog\n" * 3000,
            "datasets/empty.csv": b"",
            "models/v1/weights.bin": random_bytes(BIG, seed=1),
            "models/v1/config.json": b'{"layers": 12}',
            "données/模型 ✓ final.txt": "ünïcödé 🚀\n".encode(),
            "with space/and  two  spaces": b"spaces",
            "a/b/c/d/e/deep.txt": b"deep",
        },
    )
    (src / "empty-dir").mkdir()
    (src / "a/b/empty-nested").mkdir()
    os.symlink("../datasets/train", src / "models/train-link")  # relative, to a dir
    os.symlink(src / "models/v1/config.json", src / "abs-link")  # absolute
    os.symlink("does/not/exist", src / "dangling")
    os.symlink("données/模型 ✓ final.txt", src / "unicode-link")
    raw_dir = os.fsencode(src)
    with open(os.path.join(raw_dir, NON_UTF8), "wb") as f:
        f.write(b"latin-1 name")
    os.symlink(b"target-\xff", os.path.join(raw_dir, b"link-\xfe"))
    os.chmod(src / "models/v1/config.json", 0o600)
    os.chmod(src / "datasets/train/part-0001.csv", 0o444)
    os.chmod(src / "a/b/c/d/e/deep.txt", 0o755)
    os.chmod(src / "a/b", 0o700)
    if os.geteuid() == 0:
        os.chown(src / "models/v1/config.json", 1234, 5678)
    # Times last, deepest first, so creating children does not move a parent's mtime.
    paths = [*sorted(src.rglob("*"), key=lambda p: len(p.parts), reverse=True), src]
    for i, path in enumerate(paths):
        t = 1_600_000_000_000_000_000 + i * 1_000_003_001
        os.utime(path, ns=(t, t), follow_symlinks=False)
    return src


def test_realistic_tree_round_trips_with_metadata(repo: Repository, tmp_path: Path) -> None:
    src = build_realistic_tree(tmp_path / "src")
    before = tree_state(src)
    result = backup(repo, [src])

    assert result.stats.unreadable == [] and result.stats.notes == []
    weights = node_at(repo, result.snapshot, src / "models/v1/weights.bin")
    packs = {pack_of(repo, c) for c in weights.content}
    assert len(weights.content) > 30 and len(packs) >= 5, "the big file should span many packs"

    fresh = open_repo(repo.storage)
    restore(fresh, fresh.resolve_snapshot("latest"), tmp_path / "out")
    assert tree_state(restored_path(tmp_path / "out", src)) == before
    if os.geteuid() == 0:  # only root restores owners
        owned = restored_path(tmp_path / "out", src / "models/v1/config.json")
        assert (owned.stat().st_uid, owned.stat().st_gid) == (1234, 5678)
    assert tree_state(src) == before, "backup must not change the source"
    assert check(fresh, read_data=True).ok


def test_ls_names_every_path_including_non_utf8(repo: Repository, tmp_path: Path) -> None:
    src = build_realistic_tree(tmp_path / "src")
    snap = backup(repo, [src]).snapshot
    listed = {p for p, _node in ls(repo, snap, str(src))}
    on_disk = {str(src)} | {str(src / rel) for rel in tree_state(src) if rel != "."}
    assert listed == on_disk
    assert os.fsdecode(os.path.join(os.fsencode(src), NON_UTF8)) in listed


def test_include_restores_only_that_subtree(repo: Repository, tmp_path: Path) -> None:
    src = build_realistic_tree(tmp_path / "src")
    snap = backup(repo, [src]).snapshot
    out = tmp_path / "out"
    restore(repo, snap, out, includes=[str(src / "datasets")])

    restored = restored_path(out, src)
    assert sorted(p.name for p in restored.iterdir()) == ["datasets"]
    assert tree_state(restored / "datasets") == tree_state(src / "datasets")


def test_excludes_by_name_and_by_full_path(repo: Repository, tmp_path: Path) -> None:
    src = make_files(
        tmp_path / "src",
        {
            "keep.txt": b"k",
            "scratch.tmp": b"x",
            "sub/deeper/also.tmp": b"x",
            "sub/deeper/kept.bin": b"k2",
            "cache/blob": b"c",
            "logs/app.log": b"l",
            "other/app.log": b"kept: the full-path pattern names logs/ only",
            "pkg/build/out.o": b"o",
        },
    )
    excludes = ["*.tmp", str(src / "cache"), f"{src}/logs/*.log", "build/"]
    snap = backup(repo, [src], excludes=excludes).snapshot
    assert snap.excludes == excludes

    expected = tree_state(src, meta=False)
    excluded = ["scratch.tmp", "sub/deeper/also.tmp", "cache", "cache/blob", "logs/app.log"]
    for rel in [*excluded, "pkg/build", "pkg/build/out.o"]:
        del expected[rel]
    out = tmp_path / "out"
    restore(repo, snap, out)
    assert tree_state(restored_path(out, src), meta=False) == expected


def test_tags_are_stored_sorted_and_deduplicated(repo: Repository, tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"f": b"x"})
    tagged = backup(repo, [src], tags=["nightly", "model-v2", "nightly"]).snapshot
    plain = backup(repo, [src]).snapshot
    by_id = {s.id: s.tags for s in open_repo(repo.storage).list_snapshots()}
    assert by_id == {tagged.id: ["model-v2", "nightly"], plain.id: []}


def test_unchanged_tree_is_not_read_again(repo: Repository, tmp_path: Path) -> None:
    src = build_realistic_tree(tmp_path / "src")
    first = backup(repo, [src])
    files = first.stats.files_new
    fresh = open_repo(repo.storage)  # a new process: only the parent snapshot tells what changed
    blobs = data_blob_ids(fresh)

    second = backup(fresh, [src])
    assert second.parent is not None and second.parent.id == first.snapshot.id
    assert second.stats.bytes_read == 0
    assert (second.stats.files_unmodified, second.stats.files_new, second.stats.files_changed) == (
        files,
        0,
        0,
    )
    assert data_blob_ids(fresh) == blobs, "no new data blobs"
    restore_and_compare(fresh, second.snapshot, tmp_path / "out", meta=True)


def test_incremental_backup_stores_only_changed_chunks(repo: Repository, tmp_path: Path) -> None:
    files = {f"small/{i:02d}.txt": f"file {i}\n".encode() * 100 for i in range(20)}
    src = make_files(tmp_path / "src", {**files, "big.bin": random_bytes(2 * 1024 * 1024, seed=2)})
    backup(repo, [src])
    before = data_blob_ids(repo)

    with open(src / "big.bin", "r+b") as f:  # 1000 bytes rewritten in the middle
        f.seek(1024 * 1024)
        f.write(random_bytes(1000, seed=3))
    os.utime(src / "big.bin", ns=(1, 1))
    result = backup(repo, [src])

    s = result.stats
    assert (s.files_changed, s.files_unmodified, s.files_new) == (1, 20, 0)
    assert s.bytes_read == 2 * 1024 * 1024
    new_blobs = data_blob_ids(repo) - before
    # A 1000-byte edit changes the chunk it falls in, and CDC resyncs within a chunk or
    # two after it (the boundaries depend on the repository's key: up to 4 in 3000 trials).
    assert 1 <= len(new_blobs) <= 6
    assert result.written.bytes_added < 6 * SMALL_CHUNKS.max_size  # of a 2 MiB file
    restore_and_compare(repo, result.snapshot, tmp_path / "out")


def test_dedup_across_directories_and_hosts(repo: Repository, tmp_path: Path) -> None:
    a = make_files(
        tmp_path / "a", {"w.bin": random_bytes(600_000, 4), "d/x": random_bytes(90_000, 5)}
    )
    b = tmp_path / "b"
    shutil.copytree(a, b)
    size = 690_000

    both = backup(repo, [a, b])  # one snapshot, two identical directories
    assert both.stats.bytes_read == 2 * size
    assert size <= both.written.bytes_added < size + 16 * 1024, "the second copy is stored once"

    c = tmp_path / "host-b-copy"
    shutil.copytree(a, c)
    host_a = Repository.open(repo.storage, PASSWORD)
    host_b = Repository.open(repo.storage, PASSWORD)
    backup(host_a, [a], hostname="host-a")
    blobs = data_blob_ids(open_repo(repo.storage))
    from_b = backup(host_b, [c], hostname="host-b")
    assert from_b.parent is None and from_b.stats.bytes_read == size  # read all, stored nothing
    assert data_blob_ids(open_repo(repo.storage)) == blobs
    assert from_b.written.bytes_added < 16 * 1024  # only its trees

    fresh = open_repo(repo.storage)
    assert {s.hostname for s in fresh.list_snapshots()} >= {"host-a", "host-b"}
    restore_and_compare(fresh, from_b.snapshot, tmp_path / "out")


def test_file_growing_while_read_gives_a_note_and_a_valid_repository(
    repo: Repository, tmp_path: Path
) -> None:
    src = make_files(tmp_path / "src", {"growing.log": random_bytes(2 * 1024 * 1024, 6), "z": b"z"})
    log = src / "growing.log"
    original = log.read_bytes()
    appended: list[str] = []

    def append_on_first_pack(op: str, name: str) -> None:
        # The first pack is stored while growing.log is still being cut and
        # stored (chunks in flight are bounded), so this lands mid-read.
        if op == "put" and name.startswith("data/") and not appended:
            appended.append(name)
            with open(log, "ab") as f:
                f.write(random_bytes(300_000, 7))

    writer = Repository.open(FaultyStorage(repo.storage, append_on_first_pack), PASSWORD)
    result = backup(writer, [src])
    assert appended, "the hook never ran"
    assert [p for p, _why in result.stats.notes] == [str(log)]
    assert "changed while it was read" in result.stats.notes[0][1]
    assert result.stats.unreadable == []

    fresh = open_repo(repo.storage)
    assert check(fresh, read_data=True).ok
    out = tmp_path / "out"
    restore(fresh, result.snapshot, out)
    got = (restored_path(out, log)).read_bytes()
    assert len(got) >= len(original) and got == log.read_bytes()[: len(got)]

    # The stored mtime is the one seen before reading, so the next backup reads it again.
    again = backup(fresh, [src])
    assert again.stats.files_changed == 1
    restore_and_compare(fresh, again.snapshot, tmp_path / "out2")


# --- generated trees ----------------------------------------------------------------------------

NAME_CHARS = "abcXYZ019 _-.éüßπ中文🚀"
names = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
contents = st.one_of(
    st.just(b""),
    st.binary(max_size=100),
    st.integers(1, 200_000).map(lambda n: random_bytes(n, seed=n)),
)
modes = st.sampled_from([0o644, 0o600, 0o755, 0o400, 0o4755])
mtimes = st.integers(0, 4_000_000_000 * 10**9)


class Link(str):
    """A symlink target in a generated tree."""


Tree = dict[str, "tuple[bytes, int, int] | Link | Tree"]
files = st.tuples(contents, modes, mtimes)
links = st.text(NAME_CHARS + "/", min_size=1, max_size=20).map(Link)


def trees(depth: int) -> st.SearchStrategy[Tree]:
    leaf = st.one_of(files, links)
    child = leaf if depth == 0 else st.one_of(leaf, st.deferred(lambda: trees(depth - 1)))
    return st.dictionaries(names, child, max_size=4)


def materialize(root: Path, tree: Tree) -> None:
    root.mkdir()
    for name, item in tree.items():
        path = root / name
        if isinstance(item, Link):
            os.symlink(str(item), path)
        elif isinstance(item, dict):
            materialize(path, item)
        else:
            data, mode, mtime = item
            path.write_bytes(data)
            os.chmod(path, mode)
            os.utime(path, ns=(mtime, mtime))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees(depth=5))
def test_any_tree_round_trips(tree: Tree) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        materialize(src, tree)
        before = tree_state(src)
        repo = new_repo()
        snap = backup(repo, [src], workers=2).snapshot
        out = Path(tmp) / "out"
        restore(open_repo(repo.storage), snap, out)
        assert tree_state(restored_path(out, src)) == before
