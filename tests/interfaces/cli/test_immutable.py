"""``seawall init --immutable`` on S3 Object Lock, and the ransomware drill through the
installed command: attack with the backup's own credentials, restore, check, repair."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.s3_lock import Attacker
from tests.s3_server import MotoServer

from .conftest import PASSWORD, Result, assert_clean_error, base_env, read_tree, run, write_tree


class S3Repo:
    def __init__(self, server: MotoServer, bucket: str) -> None:
        self.location = f"s3:{bucket}/prod"
        self.opts = ["--repo", self.location, "--s3-endpoint", server.endpoint]
        self.env = base_env(SEAWALL_PASSWORD=PASSWORD)

    def run(self, *args: str | Path) -> Result:
        return run(*self.opts, *args, env=self.env)

    def ok(self, *args: str | Path) -> Result:
        result = self.run(*args)
        assert result.code == 0, result
        assert "Traceback" not in result.err, result
        return result


def test_init_immutable_needs_object_lock(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    plain = S3Repo(s3_server, s3_bucket)
    refused = plain.run("init", "--immutable", "7")
    assert_clean_error(refused, 2, "Object Lock", "--object-lock-enabled-for-bucket")
    assert "Nothing was created" in refused.err
    assert not s3_server.admin.list_objects_v2(Bucket=s3_bucket).get("Contents")
    local = run(
        "--repo", tmp_path / "repo", "init", "--immutable", "7", env=plain.env
    )  # fmt: skip
    assert_clean_error(local, 2, "Object Lock", "repo-server --append-only")
    assert not (tmp_path / "repo" / "config").exists()
    bad = plain.run("init", "--lock-mode", "compliance")
    assert_clean_error(bad, 2, "--immutable")


def test_ransomware_drill_through_the_cli(
    s3_server: MotoServer, s3_lock_bucket: str, tmp_path: Path
) -> None:
    repo = S3Repo(s3_server, s3_lock_bucket)
    created = repo.ok("init", "--immutable", "30", "--lock-mode", "compliance")
    assert "immutable" in created.out and "compliance" in created.out
    stats = repo.ok("stats", "--json").json()
    assert stats["immutability"] == {"days": 30, "mode": "compliance"}

    src = tmp_path / "models"
    states = []
    for i in range(2):
        write_tree(
            src,
            {
                f"ckpt-{i}.safetensors": os.urandom(400_000),
                "train.csv": b"".join(b"%d,%d\n" % (n, n + i) for n in range(30_000)),
            },
        )
        repo.ok("backup", src)
        shutil.copytree(src, tmp_path / f"state-{i}")
        states.append(read_tree(src))
    snaps = [s["id"] for s in repo.ok("snapshots", "--json").json()]

    attacker = Attacker(s3_server, s3_lock_bucket, "prod")
    packs = attacker.names("data/")
    [key] = attacker.names("keys/")
    deleted = [packs[0], key, f"snapshots/{snaps[0]}"]
    overwritten = [packs[1], "config", f"snapshots/{snaps[1]}"]
    for name in deleted:
        attacker.delete(name)
        assert attacker.destroy(name) == ["AccessDenied"]
    for name in overwritten:
        attacker.overwrite(name)
    attacker.close()

    for n, sid in enumerate(snaps):
        target = tmp_path / f"restore-{n}"
        restored = repo.ok("restore", sid[:10], "--target", target)
        assert read_tree(target / str(src).lstrip("/")) == states[n]
        assert "read an older retained version" in restored.err
        for name in ("config", key):
            assert f"warning: {name} was" in restored.err

    checked = repo.run("check")
    assert checked.code == 1, checked
    for name in deleted:
        assert f"{name} was deleted in the store" in checked.err
    for name in overwritten:
        assert f"{name} was overwritten in the store" in checked.err
    assert "seawall repair versions" in checked.err

    repaired = repo.ok("repair", "versions")
    for name in deleted + overwritten:
        assert name in repaired.out
    assert "put back 6 objects" in repaired.out

    clean = repo.ok("check", "--read-data")
    assert "no errors were found" in clean.out and "warning" not in clean.err
    assert sorted(Attacker(s3_server, s3_lock_bucket, "prod").names("data/")) == packs

    # forget keeps what is retained, and says until when.
    kept = repo.ok("forget", "--keep-last", "1")
    assert "retained until" in kept.out
    assert len(repo.ok("snapshots", "--json").json()) == 2
    named = repo.ok("forget", snaps[0][:10])
    assert f"kept snapshot {snaps[0][:8]}: retained until" in named.out
