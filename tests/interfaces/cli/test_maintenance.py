"""forget, prune, key, unlock, and what check and restore say about a damaged repository."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from seawall.repository.repo import Repository
from seawall.storage import LocalStorage

from .conftest import PASSWORD, V2_CHANGES, Populated, assert_clean_error, copy_repo, read_tree


def test_forget_keep_last_with_prune_keeps_one_restorable_snapshot(
    populated: Populated, tmp_path: Path
) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    dry = repo.json("forget", "--keep-last", "1", "--dry-run")
    assert [r["id"] for g in dry["groups"] for r in g["remove"]] == populated.ids[:1]
    assert [s["id"] for s in repo.json("snapshots")] == populated.ids  # nothing changed

    report = repo.json("forget", "--keep-last", "1", "--prune")
    (group,) = report["groups"]
    assert group["paths"] == [str(populated.src)]
    assert [k["id"] for k in group["keep"]] == populated.ids[1:]
    assert group["keep"][0]["reasons"] == ["last"]
    assert [r["id"] for r in group["remove"]] == populated.ids[:1]
    assert report["prune"]["dry_run"] is False
    assert report["prune"]["packs_deleted"] + report["prune"]["packs_repacked"] >= 1

    assert [s["id"] for s in repo.json("snapshots")] == populated.ids[1:]
    assert repo.json("check", "--read-data")["ok"] is True
    repo.ok("restore", "latest", "--target", tmp_path / "out")
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v2


def test_forget_by_id_then_prune(populated: Populated, tmp_path: Path) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    text = repo.ok("forget", populated.ids[1][:8]).out
    assert f"removed snapshot {populated.ids[1][:8]}" in text
    assert [s["id"] for s in repo.json("snapshots")] == populated.ids[:1]
    result = repo.json("prune")
    assert result["blobs_removed"] >= 2  # new.bin and the changed readme, at least
    assert result["bytes_freed"] > 0
    assert "freed" in repo.ok("prune").out
    restored = repo.json("restore", "latest", "--target", tmp_path / "out")
    assert restored["damaged"] == []
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v1


def test_forget_without_a_rule_refuses(populated: Populated) -> None:
    assert_clean_error(populated.repo.run("forget"), 2, "--keep-")
    assert len(populated.repo.json("snapshots")) == 2


def test_key_add_list_remove_and_passwd(populated: Populated, tmp_path: Path) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    second = tmp_path / "second"
    second.write_text("second password\n")
    added = repo.ok("key", "add", "--new-password-file", second).out
    assert added.startswith("added key ")

    keys = repo.json("key", "list")
    assert len(keys) == 2
    assert [k["current"] for k in keys].count(True) == 1
    assert {"id", "created", "hostname", "username"} <= keys[0].keys()
    other = next(k["id"] for k in keys if not k["current"])
    table = repo.ok("key", "list", "--password-file", second).out
    assert f"* {other[:12]}" in table  # opened with the second password: that key is in use

    # the key in use cannot be removed; the other can, by a prefix
    current = next(k["id"] for k in keys if k["current"])
    assert_clean_error(repo.run("key", "remove", current[:10]), 2, "in use")
    assert_clean_error(repo.run("key", "remove", "zz"), 2, "no key matches")
    assert repo.ok("key", "remove", other[:10]).out.startswith(f"removed key {other[:12]}")
    assert_clean_error(repo.run("snapshots", "--password-file", second), 12, "password")

    # passwd: the old password stops working, the new one opens, and the data is intact
    repo.ok("key", "passwd", env=repo.env | {"SEAWALL_NEW_PASSWORD": "third password"})
    assert_clean_error(repo.run("snapshots"), 12, "password")
    new_env = repo.env | {"SEAWALL_PASSWORD": "third password"}
    (key,) = repo.json("key", "list", env=new_env)
    assert key["current"] and key["id"] not in (current, other)
    repo.ok("restore", "latest", "--target", tmp_path / "out", env=new_env)
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v2


def test_key_add_without_a_new_password_and_no_terminal(populated: Populated) -> None:
    result = populated.repo.run("key", "add")
    assert_clean_error(result, 2, "--new-password-file", "SEAWALL_NEW_PASSWORD")
    assert len(populated.repo.json("key", "list")) == 1


def test_unlock_removes_a_stale_lock(populated: Populated, tmp_path: Path) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    # an exclusive lock of a process that has exited, on this host: stale
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    api = Repository.open(LocalStorage(repo.path), PASSWORD)
    doc = {
        "exclusive": True,
        "hostname": socket.gethostname(),
        "pid": int(dead.stdout),
        "username": "someone",
        "time": time.time(),
    }
    api.save_object("locks", json.dumps(doc).encode())
    # a stale lock does not block a backup
    repo.ok("backup", populated.src)
    text = repo.ok("unlock").out
    assert "removed exclusive lock" in text and "removed 1 lock" in text
    assert not list((repo.path / "locks").iterdir())
    assert "removed 0 locks; 0 live locks remain" in repo.ok("unlock").out


def _damage(populated: Populated, tmp_path: Path) -> tuple[Path, Populated]:
    """A copy of the repository without the pack holding what the second backup added."""
    repo = copy_repo(populated.repo, tmp_path / "repo")
    api = Repository.open(LocalStorage(repo.path), PASSWORD)
    api.load_index()
    loc = api.index.lookup(api.blob_id(V2_CHANGES["models/new.bin"]))
    assert loc is not None
    pack = repo.path / "data" / loc.pack_id.hex()[:2] / loc.pack_id.hex()
    pack.unlink()
    return pack, Populated(repo, populated.src, populated.ids, populated.v1, populated.v2)


def test_check_reports_damage_and_exits_1(populated: Populated, tmp_path: Path) -> None:
    pack, damaged = _damage(populated, tmp_path)
    result = damaged.repo.run("check")
    assert_clean_error(
        result, 1, pack.name[:12], "missing", f"snapshot {populated.ids[1][:8]} is damaged"
    )
    assert f"{populated.src}/models/new.bin" in result.err
    assert f"snapshot {populated.ids[0][:8]}" not in result.err  # v1 does not use that pack
    assert "error" in result.out

    report = damaged.repo.run("check", "--json")
    assert report.code == 1, report
    doc = report.json()
    assert doc["ok"] is False and doc["errors"]
    assert f"{populated.src}/models/new.bin" in doc["damaged"][populated.ids[1][:8]]


def test_restore_of_a_damaged_snapshot_restores_the_healthy_files(
    populated: Populated, tmp_path: Path
) -> None:
    _, damaged = _damage(populated, tmp_path)
    target = tmp_path / "out"
    result = damaged.repo.run("restore", "latest", "--target", target)
    assert_clean_error(result, 1, "damaged", f"{populated.src}/models/new.bin", "seawall check")
    restored = read_tree(damaged.restored_root(target))
    lost = {k for k in populated.v2 if k not in restored}
    assert "models/new.bin" in lost
    assert lost <= {"models/new.bin", "notes/readme.txt"}  # what the second backup stored
    for rel, data in restored.items():
        assert data == populated.v2[rel]
