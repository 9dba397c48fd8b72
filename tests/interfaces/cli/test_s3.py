"""The installed ``seawall`` command on an ``s3:`` repository, served by a real S3 API
server on loopback (credentials from the environment, as boto3 reads them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.s3_server import MotoServer

from .conftest import PASSWORD, SEAWALL, assert_clean_error, base_env, read_tree, run, write_tree


def test_init_backup_restore_check_on_s3(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    location = f"s3:{s3_bucket}/backups/prod"
    endpoint = s3_server.endpoint
    env = base_env(SEAWALL_PASSWORD=PASSWORD)
    # The endpoint as a global option (before the command).
    created = run("--repo", location, "--s3-endpoint", endpoint, "init", env=env)
    assert created.code == 0, created
    assert f"at {location}" in created.out

    big = os.urandom(3 * 1024 * 1024)
    src_a = write_tree(tmp_path / "a", {"models/model.safetensors": big, "notes.txt": b"a\n"})
    src_b = write_tree(
        tmp_path / "b",
        {"data/train.csv": b"".join(b"%d,%d\n" % (i, i % 7) for i in range(50_000))},
    )
    # Two backups at once, one with the options after the command, one from the
    # environment (SEAWALL_REPOSITORY and boto3's AWS_ENDPOINT_URL).
    procs = [
        subprocess.Popen(
            [SEAWALL, "backup", str(src_a), "--repo", location, "--s3-endpoint", endpoint],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [SEAWALL, "backup", str(src_b)],
            env={**env, "SEAWALL_REPOSITORY": location, "AWS_ENDPOINT_URL": endpoint},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    opts = ["--repo", location, "--s3-endpoint", endpoint]
    listed = run(*opts, "snapshots", "--json", env=env)
    assert listed.code == 0, listed
    snaps = {tuple(s["paths"]): s["id"] for s in listed.json()}
    assert set(snaps) == {(str(src_a),), (str(src_b),)}
    for src in (src_a, src_b):
        target = tmp_path / f"restore-{src.name}"
        restored = run(*opts, "restore", snaps[(str(src),)][:8], "--target", target, env=env)
        assert restored.code == 0, restored
        assert read_tree(target / str(src).lstrip("/")) == read_tree(src)
    checked = run(*opts, "check", "--read-data", env=env)
    assert checked.code == 0, checked

    # Everything lives under the prefix, and no lock is left behind.
    objects = [
        item
        for page in s3_server.admin.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for item in page.get("Contents", ())
    ]
    assert objects and all(o["Key"].startswith("backups/prod/") for o in objects)
    assert any(o["Key"].startswith("backups/prod/data/") for o in objects)
    assert not any(o["Key"].startswith("backups/prod/locks/") for o in objects)


def test_a_repository_on_a_whole_bucket(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    env = base_env(
        SEAWALL_PASSWORD=PASSWORD,
        SEAWALL_REPOSITORY=f"s3:{s3_bucket}",
        AWS_ENDPOINT_URL_S3=s3_server.endpoint,
    )
    src = write_tree(tmp_path / "src", {"x.bin": os.urandom(100_000), "y/z.txt": b"z"})
    for args in (["init"], ["backup", str(src)]):
        result = run(*args, env=env)
        assert result.code == 0, result
    result = run("restore", "latest", "--target", tmp_path / "out", env=env)
    assert result.code == 0, result
    assert read_tree(tmp_path / "out" / str(src).lstrip("/")) == read_tree(src)
    listing = s3_server.admin.list_objects_v2(Bucket=s3_bucket, Prefix="config")
    assert [o["Key"] for o in listing["Contents"]] == ["config"]


def test_missing_repository_bucket_and_bad_locations_are_clean_errors(
    s3_server: MotoServer, s3_bucket: str
) -> None:
    env = base_env(SEAWALL_PASSWORD=PASSWORD)
    empty = run(
        "--repo", f"s3:{s3_bucket}/none", "--s3-endpoint", s3_server.endpoint, "snapshots", env=env
    )
    assert_clean_error(empty, 10, f"s3:{s3_bucket}/none")
    missing = run(
        "--repo", "s3:no-such-bucket-x/repo", "--s3-endpoint", s3_server.endpoint, "init", env=env
    )
    assert_clean_error(missing, 1, "bucket", "does not exist", "create it")
    for location in ["s3:", "s3:bucket/a//b"]:
        bad = run("--repo", location, "snapshots", env=env)
        assert_clean_error(bad, 2, location)
