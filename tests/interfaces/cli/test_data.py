"""snapshots, ls, diff, restore, check and stats on a repository made by the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seawall.repository.repo import Repository
from seawall.storage import LocalStorage

from .conftest import PASSWORD, Populated, Repo, assert_clean_error, copy_repo, read_tree


def test_snapshots_table_and_json(populated: Populated) -> None:
    table = populated.repo.ok("snapshots").out
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["ID", "Time", "Host"]
    assert [line.split()[0] for line in lines[1:3]] == [sid[:8] for sid in populated.ids]
    assert str(populated.src) in lines[1] and "v1" in lines[1] and "v2" in lines[2]
    assert lines[-1] == "2 snapshots"

    snaps = populated.repo.json("snapshots")
    assert [s["id"] for s in snaps] == populated.ids
    for s, tag in zip(snaps, ["v1", "v2"], strict=True):
        assert s["short_id"] == s["id"][:8] and len(s["id"]) == 64
        assert s["paths"] == [str(populated.src)]
        assert s["tags"] == [tag]
        assert {"time", "hostname", "username", "parent", "summary"} <= s.keys()
    assert snaps[1]["parent"] == snaps[0]["id"]
    # filters
    only = populated.repo.json("snapshots", "--tag", "v2")
    assert [s["id"] for s in only] == populated.ids[1:]


def _restore(populated: Populated, name: str, target: Path, *extra: str) -> dict[str, bytes | str]:
    populated.repo.ok("restore", name, "--target", target, *extra)
    return read_tree(populated.restored_root(target))


def test_restore_latest_and_an_id_prefix(populated: Populated, tmp_path: Path) -> None:
    assert _restore(populated, "latest", tmp_path / "latest") == populated.v2
    assert _restore(populated, populated.ids[0][:6], tmp_path / "v1") == populated.v1
    assert _restore(populated, populated.ids[1].upper(), tmp_path / "full-id") == populated.v2


def test_restore_include_and_json(populated: Populated, tmp_path: Path) -> None:
    models = f"{populated.src}/models"
    report = populated.repo.json("restore", "latest", "-t", tmp_path, "--include", models)
    assert report["snapshot"] == populated.ids[1]
    assert report["damaged"] == []
    restored = read_tree(populated.restored_root(tmp_path))
    expected = {k: v for k, v in populated.v2.items() if k.startswith("models")}
    assert restored == expected
    files = [k for k, v in expected.items() if isinstance(v, bytes)]
    assert report["files"] == len(files)
    assert report["bytes"] == sum(len(expected[k]) for k in files)
    assert report["symlinks"] == 1
    assert {"dirs", "duration_s"} <= report.keys()


def test_ls_names_snapshots_like_restore(populated: Populated) -> None:
    src = str(populated.src)
    latest = populated.repo.ok("ls", "latest").out.splitlines()
    assert f"{src}/models/new.bin" in latest and f"{src}/notes/old.txt" not in latest
    first = populated.repo.ok("ls", populated.ids[0][:8], f"{src}/notes").out.splitlines()
    assert first == [f"{src}/notes", f"{src}/notes/old.txt", f"{src}/notes/readme.txt"]

    long = populated.repo.ok("ls", "-l", "latest", f"{src}/models").out
    assert f"{src}/models/current -> model.safetensors" in long
    assert "-rw" in long and " 300000 " in long

    rows = {r["path"]: r for r in populated.repo.json("ls", "latest")}
    assert rows[f"{src}/models/model.safetensors"]["size"] == 300_000
    assert rows[f"{src}/models/model.safetensors"]["type"] == "file"
    assert rows[f"{src}/data"]["type"] == "dir"
    assert (
        rows[f"{src}/models/current"] | {"target": "model.safetensors", "type": "symlink"}
        == rows[f"{src}/models/current"]
    )
    assert {"mode", "mtime_ns", "uid", "gid"} <= rows[f"{src}/notes/readme.txt"].keys()


def test_diff(populated: Populated) -> None:
    src = str(populated.src)
    a, b = populated.ids
    text = populated.repo.ok("diff", a[:8], "latest").out
    assert f"M    {src}/notes/readme.txt" in text
    assert f"+    {src}/models/new.bin" in text
    assert f"-    {src}/notes/old.txt" in text
    assert "added 1, removed 1, modified 1" in text
    assert f"{src}/data/train.csv" not in text  # unchanged

    changes = populated.repo.json("diff", a, b)
    by_path = {c["path"]: c["change"] for c in changes}
    assert by_path[f"{src}/notes/readme.txt"] == "M"
    assert by_path[f"{src}/models/new.bin"] == "+"
    assert by_path[f"{src}/notes/old.txt"] == "-"
    assert populated.repo.json("diff", b, b) == []


def test_unknown_and_ambiguous_snapshot_names(populated: Populated, tmp_path: Path) -> None:
    unknown = next(p for p in ("0000", "ffff") if not any(i.startswith(p) for i in populated.ids))
    result = populated.repo.run("restore", unknown, "--target", tmp_path / "t")
    assert_clean_error(result, 1, "no snapshot matches", repr(unknown), "seawall snapshots")
    assert_clean_error(populated.repo.run("ls", "not-an-id"), 1, "no snapshot matches")
    assert not (tmp_path / "t").exists()

    # Copies of a snapshot (under other host names) until two ids share their first digit.
    repo = copy_repo(populated.repo, tmp_path / "repo")
    api = Repository.open(LocalStorage(repo.path), PASSWORD)
    snap = api.load_snapshot(bytes.fromhex(populated.ids[1]))
    ids = list(populated.ids)
    while len({i[0] for i in ids}) == len(ids):
        snap.hostname = f"copy-{len(ids)}"
        ids.append(api.save_snapshot(snap).hex())
    prefix = next(i[0] for i in ids if sum(j.startswith(i[0]) for j in ids) > 1)
    for command in (
        ["ls", prefix],
        ["diff", prefix, "latest"],
        ["restore", prefix, "-t", tmp_path / "t"],
    ):
        result = repo.run(*command)
        assert_clean_error(result, 1, "snapshots match", repr(prefix), "more of the id")
    assert not (tmp_path / "t").exists()


def test_latest_in_an_empty_repository(empty_repo: Repo, tmp_path: Path) -> None:
    result = empty_repo.run("restore", "latest", "--target", tmp_path / "t")
    assert_clean_error(result, 1, "no snapshots yet")
    assert empty_repo.json("snapshots") == []
    assert empty_repo.ok("snapshots").out.strip().endswith("0 snapshots")


def test_check_and_stats_json(populated: Populated) -> None:
    quick = populated.repo.json("check")
    assert quick["ok"] is True and quick["errors"] == [] and quick["damaged"] == {}
    assert quick["snapshots"] == 2 and quick["packs"] >= 1 and quick["blobs"] >= 1
    full = populated.repo.json("check", "--read-data")
    assert full["ok"] is True and full["bytes_read"] > 0

    stats = populated.repo.json("stats")
    total = sum(len(v) for v in populated.v1.values() if isinstance(v, bytes)) + sum(
        len(v) for v in populated.v2.values() if isinstance(v, bytes)
    )
    assert stats["snapshots"] == 2
    assert stats["restore_bytes"] == total
    assert stats["raw_bytes"] < total  # the unchanged files are stored once
    assert stats["dedup_ratio"] > 1.5
    assert {"packs", "blobs", "stored_bytes", "files", "compression_ratio"} <= stats.keys()
    text = populated.repo.ok("stats").out
    assert "Deduplication:" in text and "Snapshots:      2" in text


def test_json_output_is_only_json(populated: Populated) -> None:
    """--json prints one JSON document on stdout and nothing else, for scripts."""
    result = populated.repo.ok("snapshots", "--json")
    json.loads(result.out)
    assert result.err == ""


@pytest.mark.parametrize("tail", [["--json"], []])
def test_backup_output(empty_repo: Repo, populated: Populated, tail: list[str]) -> None:
    result = empty_repo.ok("backup", populated.src, "--tag", "x", *tail)
    if tail:
        report = result.json()
        snaps = empty_repo.json("snapshots")
        assert report["snapshot"] == snaps[0]["id"] and report["parent"] is None
        assert report["unreadable"] == []
        files = [v for v in populated.v2.values() if isinstance(v, bytes)]
        assert report["files_new"] == len(files)
        assert report["bytes_total"] == sum(map(len, files))
    else:
        assert (
            f"{len([v for v in populated.v2.values() if isinstance(v, bytes)])} new" in result.out
        )
        assert "snapshot" in result.out and "saved" in result.out
    assert result.err == ""
