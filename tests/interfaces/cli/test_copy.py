"""`seawall copy`, `init --region`, `backup --residency` and `stats` as a user runs them,
including a copy killed with SIGKILL and finished by running it again."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, SMALL_CHUNKS, SMALL_PACK
from tests.s3_server import MotoServer

from .conftest import (
    PASSWORD,
    SEAWALL,
    Populated,
    Repo,
    assert_clean_error,
    base_env,
    read_tree,
    run,
    write_tree,
)

TO_PASSWORD = "the target's password"


def copy_env(src: Repo, **extra: str) -> dict[str, str]:
    return src.env | {"SEAWALL_TO_PASSWORD": TO_PASSWORD} | extra


def init_target(path: Path, *extra: str) -> Repo:
    """A repository with its own password (fast keys, made in-process)."""
    region = extra[1] if extra[:1] == ("--region",) else ""
    Repository.init(
        LocalStorage(path), TO_PASSWORD, kdf=FAST_KDF, pack_size=SMALL_PACK, region=region
    )
    return Repo(path, TO_PASSWORD)


def test_init_region_is_shown_by_stats(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    created = repo.ok("init", "--region", "EU")
    assert "region eu" in created.out
    assert "Region:         eu" in repo.ok("stats").out
    assert repo.json("stats")["region"] == "eu"
    bad = Repo(tmp_path / "bad").run("init", "--region", "eu west")
    assert_clean_error(bad, 2, "invalid region")
    assert not (tmp_path / "bad" / "config").exists()


def test_an_unlabelled_repository_says_so(empty_repo: Repo) -> None:
    assert "(unlabelled)" in empty_repo.ok("stats").out
    assert empty_repo.json("stats")["region"] == ""


def test_copy_all_then_rerun(populated: Populated, tmp_path: Path) -> None:
    src = populated.repo
    dst = init_target(tmp_path / "target")
    env = copy_env(src)
    done = src.ok("copy", "--to", dst.path, "--json", env=env).json()
    assert [c["source"] for c in done["copied"]] == populated.ids
    assert done["blobs_uploaded"] > 0 and all(c["verified_bytes"] > 0 for c in done["copied"])
    copies = dst.json("snapshots")
    assert [c["original"] for c in copies] == populated.ids
    dst.ok("restore", "latest", "--target", tmp_path / "out")
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v2

    again = src.ok("copy", "--to", dst.path, env=env)
    assert "already in the target" in again.out and "copied 0 snapshots" in again.out
    assert dst.json("check", "--read-data")["ok"] is True


def test_copy_named_snapshot_with_a_password_file(populated: Populated, tmp_path: Path) -> None:
    src = populated.repo
    dst = init_target(tmp_path / "target")
    pw = tmp_path / "to-pw"
    pw.write_text(TO_PASSWORD + "\n")
    env = src.env | {"SEAWALL_TO_REPOSITORY": str(dst.path)}
    done = src.ok("copy", populated.ids[0][:8], "--to-password-file", pw, "--json", env=env)
    assert [c["source"] for c in done.json()["copied"]] == populated.ids[:1]
    dst.ok("restore", "latest", "--target", tmp_path / "out")
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v1


def test_copy_without_target_or_its_password_is_a_usage_error(
    populated: Populated, tmp_path: Path
) -> None:
    src = populated.repo
    assert_clean_error(src.run("copy"), 2, "--to")
    dst = init_target(tmp_path / "target")
    assert_clean_error(src.run("copy", "--to", dst.path), 2, "SEAWALL_TO_PASSWORD")
    wrong = src.run("copy", "--to", dst.path, env=src.env | {"SEAWALL_TO_PASSWORD": "nope"})
    assert_clean_error(wrong, 12, "target repository", "SEAWALL_TO_PASSWORD")


def test_residency_is_enforced_and_the_rest_is_copied(tmp_path: Path) -> None:
    src = Repo(tmp_path / "eu")
    src.ok("init", "--region", "eu")
    tree = write_tree(tmp_path / "src", {"patients.csv": b"id\n1\n", "public/readme": b"hi"})
    bound = src.json("backup", tree, "--residency", "eu")["snapshot"]
    free = src.json("backup", tree / "public")["snapshot"]
    assert {s["id"]: s["residency"] for s in src.json("snapshots")} == {bound: "eu", free: ""}

    us = init_target(tmp_path / "us", "--region", "us")
    refused = src.run("copy", "--to", us.path, env=copy_env(src))
    assert_clean_error(refused, 1, bound[:8], "'eu'", "'us'", "residency")
    assert "snapshot" in refused.out and free[:8] in refused.out  # the other was copied
    assert [s["original"] for s in us.json("snapshots")] == [free]

    eu = init_target(tmp_path / "eu-2", "--region", "eu")
    src.ok("copy", "--to", eu.path, env=copy_env(src))
    assert sorted(s["original"] for s in eu.json("snapshots")) == sorted([bound, free])

    other = Repo(tmp_path / "plain")
    other.ok("init")
    assert_clean_error(other.run("backup", tree, "--residency", "eu"), 1, "no region label")


# --- SIGKILL --------------------------------------------------------------------------------------

MB = 1024 * 1024


def pack_names(path: Path) -> set[str]:
    """Packs in a local repository (not the temporary files of puts in progress)."""
    return {
        str(p.relative_to(path))
        for p in (path / "data").glob("*/*")
        if len(p.name) == 64 and not p.name.endswith(".seawall-tmp")
    }


def test_a_copy_killed_with_sigkill_is_finished_by_a_rerun(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", {f"model-{i}.bin": os.urandom(3 * MB) for i in range(4)})
    source = Repository.init(
        LocalStorage(tmp_path / "source"),
        PASSWORD,
        kdf=FAST_KDF,
        chunker=SMALL_CHUNKS,
        pack_size=SMALL_PACK,
    )
    backup(source, [tree])
    target = init_target(tmp_path / "target")
    src = Repo(tmp_path / "source")
    env = copy_env(src)

    proc = subprocess.Popen(
        [SEAWALL, "copy", "--to", str(target.path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = False
    while proc.poll() is None:
        if len(pack_names(target.path)) >= 10:
            proc.kill()
            killed = True
            break
        time.sleep(0.002)
    _out, err = proc.communicate()
    assert killed, f"the copy finished before it could be killed: {err}"

    dst = Repository.open(LocalStorage(target.path), TO_PASSWORD)
    assert dst.list_snapshots() == []
    stored = pack_names(target.path)
    stored_blobs = _blob_ids(dst, stored)
    dst.load_index()
    result = check(dst, read_data=True)
    assert result.errors == [] and result.damaged == {}

    rerun = target_run_copy(src, target)
    assert len(rerun["copied"]) == 1
    uploaded = pack_names(target.path) - stored
    assert uploaded, "the rerun had data left to copy"
    assert not _blob_ids(dst, uploaded) & stored_blobs, "data that arrived was uploaded again"
    assert rerun["blobs_uploaded"] <= len(_blob_ids(dst, uploaded))
    target.ok("restore", "latest", "--target", tmp_path / "out")
    assert read_tree(tmp_path / "out" / str(tree).lstrip("/")) == read_tree(tree)
    assert target.json("check", "--read-data")["ok"] is True


def target_run_copy(src: Repo, target: Repo) -> dict[str, Any]:
    result = run("copy", "--to", target.path, "--json", env=copy_env(src))
    assert result.code == 0, result
    data: dict[str, Any] = result.json()
    return data


def _blob_ids(repo: Repository, packs: set[str]) -> set[bytes]:
    ids: set[bytes] = set()
    for name in packs:
        pack_id = bytes.fromhex(name.rsplit("/", 1)[1])
        _salt, blobs = repo.read_pack_header(pack_id, repo.storage.stat(name).size)
        ids.update(b.id for b in blobs)
    return ids


def test_help_mentions_the_target_password() -> None:
    result = run("copy", "--help", env=base_env())
    assert result.code == 0
    assert "--to-password-file" in result.out and "SEAWALL_TO_PASSWORD" in result.out


def test_copy_from_a_local_repository_to_s3(
    populated: Populated, s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    src = populated.repo
    location = f"s3:{s3_bucket}/dr"
    s3 = ["--repo", location, "--s3-endpoint", s3_server.endpoint]
    target_env = base_env(SEAWALL_PASSWORD=TO_PASSWORD)
    assert run(*s3, "init", "--region", "eu", env=target_env).code == 0
    done = src.ok(
        "copy",
        "--to",
        location,
        "--to-s3-endpoint",
        s3_server.endpoint,
        "--json",
        env=copy_env(src),
    ).json()
    assert [c["source"] for c in done["copied"]] == populated.ids
    restored = run(*s3, "restore", "latest", "--target", tmp_path / "out", env=target_env)
    assert restored.code == 0, restored
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v2
    stats = run(*s3, "stats", "--json", env=target_env)
    assert stats.code == 0 and stats.json()["region"] == "eu" and stats.json()["snapshots"] == 2
