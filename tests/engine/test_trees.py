"""Walking snapshot trees: ls lists paths, diff reports + - M T U."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from seawall.errors import UsageError
from seawall.operations.backup import backup
from seawall.operations.inspect import Change, diff, ls
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, FILE, SYMLINK
from tests.conftest import make_files

BEFORE = {
    "keep.txt": b"same",
    "modify.txt": b"v1",
    "remove.txt": b"x",
    "dir/inner.txt": b"i",
    "gone-dir/f": b"g",
    "chmod.txt": b"c",
    "touch.txt": b"t",
    "kind": b"a file, then a directory",
}


def first_tree(root: Path) -> Path:
    src = make_files(root, BEFORE)
    os.symlink("keep.txt", src / "link")
    return src


def change_tree(src: Path) -> None:
    (src / "modify.txt").write_bytes(b"v2")
    (src / "remove.txt").unlink()
    (src / "add.txt").write_bytes(b"new")
    (src / "dir/new.txt").write_bytes(b"n")
    shutil.rmtree(src / "gone-dir")
    make_files(src, {"new-dir/sub/f": b"f"})
    (src / "link").unlink()
    os.symlink("modify.txt", src / "link")
    os.chmod(src / "chmod.txt", 0o600)
    os.utime(src / "touch.txt", ns=(1, 1))
    (src / "kind").unlink()
    (src / "kind").mkdir()


def test_diff_reports_each_kind_of_change(repo: Repository, tmp_path: Path) -> None:
    src = first_tree(tmp_path / "src")
    a = backup(repo, [src]).snapshot
    change_tree(src)
    b = backup(repo, [src]).snapshot

    expected = [
        ("+", "add.txt"),
        ("U", "chmod.txt"),
        ("+", "dir/new.txt"),
        ("-", "gone-dir"),
        ("-", "gone-dir/f"),
        ("T", "kind"),
        ("M", "link"),
        ("M", "modify.txt"),
        ("+", "new-dir"),
        ("+", "new-dir/sub"),
        ("+", "new-dir/sub/f"),
        ("-", "remove.txt"),
        ("U", "touch.txt"),
    ]
    assert diff(repo, a, b) == [Change(kind, f"{src}/{rel}") for kind, rel in expected]
    assert diff(repo, b, b) == []
    reverse = {(c.kind, c.path) for c in diff(repo, b, a)}
    assert ("-", f"{src}/add.txt") in reverse and ("+", f"{src}/remove.txt") in reverse


def test_ls_lists_every_path_with_its_node(repo: Repository, tmp_path: Path) -> None:
    src = first_tree(tmp_path / "src")
    snap = backup(repo, [src]).snapshot

    everything = dict(ls(repo, snap))
    ancestors = [str(p) for p in reversed(src.parents) if p != Path("/")]
    expected = {
        *ancestors,
        str(src),
        *(f"{src}/{rel}" for rel in BEFORE),
        f"{src}/dir",
        f"{src}/gone-dir",
        f"{src}/link",
    }
    assert set(everything) == expected
    assert everything[f"{src}/dir"].type == DIR
    assert everything[f"{src}/keep.txt"].type == FILE and everything[f"{src}/keep.txt"].size == 4
    assert (
        everything[f"{src}/link"].type == SYMLINK
        and everything[f"{src}/link"].target == b"keep.txt"
    )

    assert [p for p, _n in ls(repo, snap, f"{src}/dir")] == [f"{src}/dir", f"{src}/dir/inner.txt"]
    assert [p for p, _n in ls(repo, snap, f"{src}/keep.txt/")] == [f"{src}/keep.txt"]
    with pytest.raises(UsageError):
        list(ls(repo, snap, f"{src}/no-such-file"))
