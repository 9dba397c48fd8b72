"""Immutable repositories on S3 Object Lock, against a real S3 API server.

The attacker plays ransomware with the backup client's own credentials:
deletes objects, tries to destroy retained versions, overwrites objects with
garbage. Every snapshot must still restore bit-identical, check must say what
was touched, and repair must put it back. forget and prune must delete
nothing under retention, say until when, and delete it once it ran out
(the tests make time pass by shortening retention dates as an administrator).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.codec.ids import storage_id
from seawall.errors import ObjectRetained, RepositoryExists, UsageError
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.forget import KeepPolicy, forget, forget_ids
from seawall.operations.prune import prune
from seawall.operations.restore import restore
from seawall.operations.retention import needs_extension, split_by_retention
from seawall.operations.versions import repair_versions
from seawall.repository.config import Immutability, RepoConfig
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage, Storage, open_storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files, tree_digest
from tests.operations.helpers import random_bytes
from tests.s3_lock import Attacker, retention, set_retention, versions
from tests.s3_server import MotoServer

DAYS = 30


@dataclass
class Bucket:
    server: MotoServer
    name: str
    prefix: str = "repo"

    @property
    def location(self) -> str:
        return f"s3:{self.name}/{self.prefix}"

    def store(self) -> Storage:
        return open_storage(self.location, s3_endpoint=self.server.endpoint)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def names(self, under: str = "") -> list[str]:
        """Current objects, as a plain listing shows them."""
        pages = self.server.admin.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=self.key(under)
        )
        skip = len(self.prefix) + 1
        return sorted(i["Key"][skip:] for p in pages for i in p.get("Contents", ()))

    def retention(self, name: str) -> datetime | None:
        return retention(self.server, self.name, self.key(name))

    def expire(self, *names: str) -> None:
        """Make the retention of these objects run out (as time would)."""
        past = datetime.now(UTC) - timedelta(minutes=1)
        for name in names:
            set_retention(self.server, self.name, self.key(name), past)

    def open(self) -> Repository:
        return Repository.open(self.store(), PASSWORD)


@pytest.fixture
def bucket(s3_server: MotoServer, s3_lock_bucket: str) -> Bucket:
    return Bucket(s3_server, s3_lock_bucket)


def init(bucket: Bucket, mode: str = "governance") -> Repository:
    return Repository.init(
        bucket.store(),
        PASSWORD,
        kdf=FAST_KDF,
        chunker=SMALL_CHUNKS,
        pack_size=SMALL_PACK,
        immutability=Immutability(DAYS, mode),
    )


def near(when: datetime | None, expected: datetime) -> bool:
    return when is not None and abs((when - expected).total_seconds()) < 300


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def snapshot_states(
    repo: Repository, src: Path, tmp: Path, rounds: int
) -> list[dict[str, tuple[str, str]]]:
    """Back up ``src`` ``rounds`` times, changing it in between; the tree digest of each."""
    states = []
    for i in range(rounds):
        shutil.rmtree(src / f"round{i - 1}", ignore_errors=True)
        make_files(
            src,
            {
                f"round{i}/weights.bin": random_bytes(300_000, seed=i),
                "shared/dataset.csv": b"".join(b"%d,%d\n" % (n, n * i) for n in range(20_000)),
                "notes.txt": f"round {i}\n".encode(),
            },
        )
        backup(repo, [src])
        states.append(dict(tree_digest(src)))
    return states


def restored(repo: Repository, src: Path, tmp: Path) -> list[dict[str, tuple[str, str]]]:
    out = []
    for n, snap in enumerate(repo.list_snapshots()):
        target = tmp / f"restore-{n}"
        restore(repo, snap, target)
        out.append(dict(tree_digest(target / src.relative_to(src.anchor))))
        shutil.rmtree(target)
    return out


# --- the pure rules -----------------------------------------------------------------------------


def test_split_by_retention_and_needs_extension_are_pure_rules_of_dates() -> None:
    now = datetime(2030, 6, 1, 12, tzinfo=UTC)
    until = {
        "a": None,
        "b": now - timedelta(seconds=1),
        "c": now,
        "d": now + timedelta(seconds=1),
        "e": now + timedelta(days=400),
    }
    free, held = split_by_retention(until, now)
    assert free == ["a", "b", "c"]
    assert held == {"d": now + timedelta(seconds=1), "e": now + timedelta(days=400)}
    assert needs_extension(None, now, 30)
    assert needs_extension(now + timedelta(days=14, hours=23), now, 30)
    assert not needs_extension(now + timedelta(days=15), now, 30)
    assert needs_extension(now - timedelta(days=1), now, 1)


# --- init ---------------------------------------------------------------------------------------


def test_every_object_but_locks_is_retained_and_the_policy_is_in_the_config(
    bucket: Bucket, tmp_path: Path
) -> None:
    repo = init(bucket, "compliance")
    snapshot_states(repo, tmp_path / "src", tmp_path, 1)
    config = json.loads(
        bucket.server.admin.get_object(Bucket=bucket.name, Key=bucket.key("config"))["Body"].read()
    )
    assert config["immutability"] == {"days": DAYS, "mode": "compliance"}
    names = bucket.names()
    kinds = {n.split("/")[0] for n in names}
    assert kinds == {"config", "keys", "data", "index", "snapshots"}  # no lock left behind
    for name in names:
        head = bucket.server.admin.head_object(Bucket=bucket.name, Key=bucket.key(name))
        assert head["ObjectLockMode"] == "COMPLIANCE", name
        assert near(head["ObjectLockRetainUntilDate"], in_days(DAYS)), name
    # Locks were deletable: not even a delete marker or a version of one remains.
    page = bucket.server.admin.list_object_versions(Bucket=bucket.name, Prefix=bucket.key("locks/"))
    assert not page.get("Versions") and not page.get("DeleteMarkers")
    assert bucket.open().config.immutability == Immutability(DAYS, "compliance")
    repo.close()


def test_init_immutable_is_refused_without_object_lock(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    plain = open_storage(f"s3:{s3_bucket}/repo", s3_endpoint=s3_server.endpoint)
    with pytest.raises(UsageError, match="Object Lock") as refused:
        Repository.init(plain, PASSWORD, kdf=FAST_KDF, immutability=Immutability(7))
    assert "Nothing was created" in str(refused.value)
    assert list(plain.list()) == []
    local = LocalStorage(tmp_path / "repo")
    with pytest.raises(UsageError, match="append-only"):
        Repository.init(local, PASSWORD, kdf=FAST_KDF, immutability=Immutability(7))
    assert list(local.list()) == []
    plain.close()


# --- the attacker ---------------------------------------------------------------------------------


def test_ransomware_with_the_backup_credentials_cannot_destroy_the_snapshots(
    bucket: Bucket, tmp_path: Path
) -> None:
    repo = init(bucket, "compliance")
    src = tmp_path / "src"
    states = snapshot_states(repo, src, tmp_path, 2)
    repo.close()

    attacker = Attacker(bucket.server, bucket.name, bucket.prefix)
    packs = attacker.names("data/")
    index = attacker.names("index/")
    snaps = attacker.names("snapshots/")
    [key] = attacker.names("keys/")
    assert len(packs) >= 4 and len(snaps) == 2
    deleted = [*packs[0::2], snaps[0], index[0], key]
    overwritten = [*packs[1::2], snaps[1], *index[1:], "config"]
    for name in deleted:
        attacker.delete(name)
    for name in overwritten[1:]:
        attacker.overwrite(name)
    # One overwrite even puts a retention of its own on the garbage.
    attacker.overwrite(
        overwritten[0], ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=in_days(365)
    )
    # Destroying the retained versions is refused, bypass or not (compliance mode).
    for name in deleted[:3]:
        refusals = attacker.destroy(name)
        assert refusals and set(refusals) == {"AccessDenied"}
    attacker.close()
    assert attacker.names("snapshots/") == [snaps[1]]  # what a plain listing now shows

    # Every snapshot still restores bit-identical, and seawall says what it read.
    victim = bucket.open()
    assert restored(victim, src, tmp_path) == states
    warnings = "\n".join(victim.warnings)
    for name in ["config", key, snaps[0], snaps[1], packs[0], packs[1]]:
        assert f"{name} was" in warnings, name
    assert "read an older retained version" in warnings
    # Backups go on meanwhile, deduplicated against the hidden data.
    make_files(src, {"late.txt": b"after the attack\n"})
    late = backup(victim, [src])
    assert late.written.bytes_added < 10_000  # the new file and trees, nothing hidden again
    states.append(dict(tree_digest(src)))
    victim.close()

    # check says exactly what was touched, and nothing else is wrong.
    victim = bucket.open()
    result = check(victim, read_data=True)
    expected = {n: "deleted" for n in deleted} | {n: "overwritten" for n in overwritten}
    assert result.touched == expected
    assert not result.ok and len(result.errors) == len(expected)
    assert not result.damaged
    # repair puts the intact versions back on top.
    repaired = repair_versions(victim)
    assert set(repaired.restored) == set(expected) and not repaired.lost
    assert "copied" in repaired.restored[overwritten[0]]  # the attacker's retained junk stays below
    assert "removed 1 delete marker" in repaired.restored[packs[0]]
    victim.close()

    after = bucket.open()
    assert after.warnings == []
    clean = check(after, read_data=True)
    assert clean.ok and not clean.touched, clean.errors
    assert set(snaps) < set(bucket.names("snapshots/")) and set(packs) < set(bucket.names("data/"))
    for name in bucket.names():
        data = bucket.server.admin.get_object(Bucket=bucket.name, Key=bucket.key(name))[
            "Body"
        ].read()
        if name == "config":
            assert RepoConfig.from_bytes(data) == after.config
        else:
            assert storage_id(data).hex() == name.rsplit("/", 1)[1], name
    assert near(bucket.retention(overwritten[0]), in_days(DAYS))  # the copy is retained too
    assert restored(after, src, tmp_path) == states
    after.close()


def test_an_object_without_any_intact_version_is_reported_lost(
    bucket: Bucket, tmp_path: Path
) -> None:
    repo = init(bucket)
    snapshot_states(repo, tmp_path / "src", tmp_path, 1)
    [snap] = bucket.names("snapshots/")
    # An administrator removes the retention and every version; junk takes the name.
    bucket.expire(snap)
    for version in versions(bucket.server, bucket.name, bucket.key(snap)):
        bucket.server.admin.delete_object(
            Bucket=bucket.name, Key=bucket.key(snap), VersionId=version["id"]
        )
    bucket.server.admin.put_object(Bucket=bucket.name, Key=bucket.key(snap), Body=b"junk")
    bucket.server.admin.put_object(Bucket=bucket.name, Key=bucket.key(snap), Body=b"more junk")
    result = check(bucket.open())
    assert result.touched == {snap: "lost"}
    assert any("no retained version is intact" in e for e in result.errors)
    assert repair_versions(bucket.open()).lost == [snap]
    repo.close()


# --- forget, prune and retention ------------------------------------------------------------------


def test_forget_keeps_retained_snapshots_and_says_until_when(
    bucket: Bucket, tmp_path: Path
) -> None:
    repo = init(bucket)
    snapshot_states(repo, tmp_path / "src", tmp_path, 3)
    old = repo.list_snapshots()[:2]
    [group] = forget(repo, KeepPolicy(last=1))
    assert group.remove == []
    assert set(group.retained) == {s.id for s in old}
    assert all(near(until, in_days(DAYS)) for until in group.retained.values())
    assert all(any("retained until" in r for r in group.reasons[s.id]) for s in old)
    named = forget_ids(repo, [old[0].id.hex()])
    assert named.remove == [] and set(named.retained) == {old[0].id}
    assert len(repo.list_snapshots()) == 3

    # Once their retention ran out, they go, every version of them.
    bucket.expire(*(f"snapshots/{s.id.hex()}" for s in old))
    [group] = forget(repo, KeepPolicy(last=1))
    assert {s.id for s in group.remove} == {s.id for s in old} and not group.retained
    assert len(bucket.open().list_snapshots()) == 1
    for s in old:
        assert versions(bucket.server, bucket.name, bucket.key(f"snapshots/{s.id.hex()}")) == []
    repo.close()


def test_prune_keeps_retained_packs_then_deletes_them_once_retention_ran_out(
    bucket: Bucket, tmp_path: Path
) -> None:
    repo = init(bucket)
    src = tmp_path / "src"
    states = snapshot_states(repo, src, tmp_path, 2)
    first, second = repo.list_snapshots()
    before = set(bucket.names("data/"))
    bucket.expire(f"snapshots/{first.id.hex()}")
    assert forget_ids(repo, [first.id.hex()]).remove == [first]

    kept = prune(bucket.open())
    assert kept.packs_deleted == 0 and kept.packs_repacked == 0
    packs_kept = set(kept.retained)
    assert packs_kept and packs_kept < before  # the packs only the forgotten snapshot used
    assert all(near(datetime.fromisoformat(d), in_days(DAYS)) for d in kept.retained.values())
    assert set(bucket.names("data/")) == before
    assert check(bucket.open(), read_data=True).ok
    assert restored(bucket.open(), src, tmp_path) == states[1:]

    # Time passes: nothing is retained any more. prune deletes what no snapshot
    # needs, and extends the retention of everything the kept snapshot needs.
    bucket.expire(*bucket.names())
    done = prune(bucket.open())
    assert done.retained == {}
    assert done.packs_deleted + done.packs_repacked >= len(packs_kept)
    assert done.retention_extended > 0
    for name in packs_kept:
        assert versions(bucket.server, bucket.name, bucket.key(name)) == []
    for name in bucket.names():
        assert near(bucket.retention(name), in_days(DAYS)), name
    after = bucket.open()
    assert check(after, read_data=True).ok
    assert [s.id for s in after.list_snapshots()] == [second.id]
    assert restored(after, src, tmp_path) == states[1:]
    repo.close()


def test_backup_extends_retention_when_the_config_says_a_pass_is_due(
    bucket: Bucket, tmp_path: Path
) -> None:
    repo = init(bucket)
    src = tmp_path / "src"
    snapshot_states(repo, src, tmp_path, 1)
    pack = bucket.names("data/")[0]
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    set_retention(bucket.server, bucket.name, bucket.key(pack), soon)
    backup(bucket.open(), [src])  # not due: the config still has its full retention
    assert bucket.retention(pack) == soon
    set_retention(bucket.server, bucket.name, bucket.key("config"), soon)
    backup(bucket.open(), [src])  # due: every object the snapshots need is extended
    assert near(bucket.retention(pack), in_days(DAYS))
    assert near(bucket.retention("config"), in_days(DAYS))
    repo.close()


def test_keys_and_config_stay_put_under_retention(bucket: Bucket) -> None:
    repo = init(bucket)
    # A password change adds the new key; the old one is retained and says until when.
    with pytest.raises(ObjectRetained, match=r"old key .* is retained until .*key remove"):
        repo.change_password("new password", FAST_KDF)
    assert Repository.open(bucket.store(), "new password").config.id == repo.config.id
    assert bucket.open().config.id == repo.config.id
    # init does not write over a repository whose config was deleted.
    attacker = Attacker(bucket.server, bucket.name, bucket.prefix)
    attacker.delete("config")
    attacker.close()
    with pytest.raises(RepositoryExists, match="retains an older version"):
        Repository.init(bucket.store(), PASSWORD, kdf=FAST_KDF, immutability=Immutability(1))
    opened = bucket.open()
    assert opened.config == repo.config
    assert any(w.startswith("config was deleted or overwritten") for w in opened.warnings)
    repo.close()
