"""A whole plan backed up as one group, destroyed, and brought back; groups chosen by
time or id; failed runs leave no group and a valid repository."""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.errors import (
    DamagedSnapshot,
    ResidencyViolation,
    SnapshotNotFound,
    SourceError,
    UsageError,
)
from seawall.operations.check import check
from seawall.plan.model import Plan, load_plan
from seawall.plan.runner import (
    GroupRestore,
    backup_plan,
    find_group,
    list_groups,
    parse_at,
    restore_plan,
)
from seawall.repository.repo import Repository
from tests.conftest import make_files, reopen, tree_digest
from tests.operations.helpers import random_bytes
from tests.postgres import PgDatabase

SECRET = "sk-test-Zq81mWv3"


def _plan(root: Path, repo: Path, assets: str) -> Plan:
    text = f"version: 1\nrepositories:\n  primary:\n    location: {repo}\nassets:\n"
    path = root / "seawall.yaml"
    path.write_text(text + textwrap.indent(textwrap.dedent(assets), "  "))
    return load_plan(path)


def _stack(root: Path, db: PgDatabase) -> str:
    make_files(root / "data", {"train.csv": b"a,b\n1,2\n", "images/x.png": random_bytes(70_000, 1)})
    make_files(root / "ckpt", {"model.safetensors": random_bytes(120_000, 2)})
    with sqlite3.connect(root / "app.db") as conn:
        conn.execute("CREATE TABLE predictions (id INTEGER PRIMARY KEY, score REAL)")
        conn.executemany(
            "INSERT INTO predictions (score) VALUES (?)", [(i / 7,) for i in range(500)]
        )
    conn.close()
    with db.connect() as pg:
        pg.execute("CREATE TABLE features (user_id int PRIMARY KEY, f1 real, seen timestamptz)")
        pg.execute("INSERT INTO features SELECT i, i / 3.0, now() FROM generate_series(1, 800) i")
    (root / "serve.yaml").write_text("model: fraud\nthreshold: 0.7\n")
    (root / "api.key").write_text(SECRET + "-file\n")
    (root / "requirements.lock").write_text("numpy==2.4.6\n")
    return f"""\
    - name: dataset
      kind: files
      paths: [data]
      tags: [training]
    - name: weights
      kind: checkpoints
      paths: [ckpt]
    - name: app-db
      kind: sqlite
      path: app.db
    - name: features
      kind: postgres
      dsn: "{db.dsn}"
    - name: serving
      kind: config
      files: [serve.yaml]
      env: [MODEL_STAGE]
      secret_env: [FRAUD_API_TOKEN]
      secret_files: [api.key]
    - name: runtime
      kind: environment
      lock_files: [requirements.lock]
    """


def test_stack_backup_destroy_restore(
    local_repo: tuple[Path, Repository],
    pg_database: PgDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo_path, repo = local_repo
    root = tmp_path / "stack"
    root.mkdir()
    monkeypatch.setenv("MODEL_STAGE", "production")
    monkeypatch.setenv("FRAUD_API_TOKEN", SECRET)
    plan = _plan(root, repo_path, _stack(root, pg_database))
    before = {name: tree_digest(root / name) for name in ("data", "ckpt")}
    result = backup_plan(plan, repo)

    assert [a.name for a in result.assets] == [a.name for a in plan.assets]
    (group,) = list_groups(reopen(repo))
    assert group.id == result.group and group.plan_text == plan.text
    assert group.assets == {a.name: a.snapshot.id.hex() for a in result.assets}
    for item in result.assets:
        snap = reopen(repo).load_snapshot(item.snapshot.id)
        assert snap.paths == [f"asset:{item.name}"] and f"asset:{item.name}" in snap.tags
        assert snap.asset["group"] == result.group and snap.asset["kind"] == item.kind
        assert datetime.fromisoformat(snap.asset["captured_at"]) >= result.time
    features = reopen(repo).load_snapshot(result.assets[3].snapshot.id).asset
    assert features["consistency"]["tables"]["public.features"]["rows"] == 800
    assert "training" in result.assets[0].snapshot.tags

    # The disaster: every asset gone.
    for name in ("data", "ckpt", "app.db", "serve.yaml", "api.key"):
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pg_database.connect() as pg:
        pg.execute("DROP TABLE features")
    monkeypatch.delenv("FRAUD_API_TOKEN")

    target = tmp_path / "restored"
    restored_db = pg_database.name + "_restored"
    report = restore_plan(
        plan, reopen(repo), target, options={"features": {"database": restored_db}}
    )
    assert report.group.id == result.group
    assert all(not a.mismatches for a in report.assets)
    assert tree_digest(target / "dataset/data") == before["data"]
    assert tree_digest(target / "weights/ckpt") == before["ckpt"]
    with sqlite3.connect(target / "app-db/app.db") as conn:
        assert conn.execute("SELECT count(*) FROM predictions").fetchone() == (500,)
    conn.close()
    with PgDatabase(restored_db).connect() as pg:
        assert pg.execute("SELECT count(*), sum(user_id) FROM features").fetchone() == (800, 320400)
    env_file = (target / "serving/.env").read_text()
    assert f"FRAUD_API_TOKEN={SECRET}\n" in env_file and "MODEL_STAGE=production" in env_file
    assert (target / "serving/secrets/api.key").stat().st_mode & 0o777 == 0o600
    assert (target / "serving/files/serve.yaml").read_text().startswith("model: fraud")
    runtime = next(a for a in report.assets if a.name == "runtime")
    assert runtime.facts["differences"] == []
    assert (target / "runtime/locks/requirements.lock").read_text() == "numpy==2.4.6\n"
    assert check(reopen(repo)).ok

    # Again: the database exists now, so that asset fails and every other comes back;
    # its files are removed so the same target takes it once given a new name.
    with pytest.raises(DamagedSnapshot, match="already exists") as err:
        restore_plan(plan, reopen(repo), tmp_path / "again")
    partial = err.value.result
    assert isinstance(partial, GroupRestore)
    assert [a.name for a in partial.assets] == [a.name for a in plan.assets if a.name != "features"]
    assert not (tmp_path / "again/features").exists()
    assert (tmp_path / "again/dataset/data/train.csv").exists()
    retry = restore_plan(
        plan,
        reopen(repo),
        tmp_path / "again",
        asset="features",
        options={"features": {"database": pg_database.name + "_again"}},
    )
    assert retry.assets[0].facts["tables"] == features["consistency"]["tables"]

    # One asset, again, elsewhere; an existing target is refused before anything is written.
    one = restore_plan(plan, reopen(repo), tmp_path / "one", asset="app-db")
    assert [a.name for a in one.assets] == ["app-db"]
    with pytest.raises(UsageError, match="not empty"):
        restore_plan(plan, reopen(repo), tmp_path / "one", asset="app-db")
    with pytest.raises(UsageError, match="no asset 'nope'"):
        restore_plan(plan, reopen(repo), tmp_path / "two", asset="nope")


def test_at_picks_the_right_group(local_repo: tuple[Path, Repository], tmp_path: Path) -> None:
    repo_path, repo = local_repo
    root = tmp_path / "stack"
    make_files(root / "data", {"v.txt": b"version 1"})
    plan = _plan(root, repo_path, "- {name: data, kind: files, paths: [data]}\n")
    first = backup_plan(plan, repo)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    (root / "data/v.txt").write_bytes(b"version 2")
    second = backup_plan(plan, repo)
    assert second.assets[0].snapshot.parent == first.assets[0].snapshot.id

    def restored(at: datetime | str | None, name: str) -> bytes:
        restore_plan(plan, reopen(repo), tmp_path / name, at=at)
        return (tmp_path / name / "data/data/v.txt").read_bytes()

    assert restored(None, "latest") == b"version 2"
    assert restored(between, "between") == b"version 1"
    assert restored(between.astimezone().replace(tzinfo=None), "local") == b"version 1"
    assert restored(first.group[:8], "by-group") == b"version 1"
    assert restored(first.assets[0].snapshot.id.hex()[:10], "by-snap") == b"version 1"
    assert restored(datetime.now(UTC) + timedelta(days=1), "future") == b"version 2"
    with pytest.raises(SnapshotNotFound, match="no complete snapshot group at or before"):
        find_group(reopen(repo), first.time - timedelta(seconds=1))
    with pytest.raises(SnapshotNotFound, match="no snapshot matches"):
        find_group(reopen(repo), "ffffffff")
    assert parse_at("2025-06-01T12:00") == datetime(2025, 6, 1, 12, 0)
    assert parse_at("1a2b3c4d") == "1a2b3c4d"
    with pytest.raises(UsageError, match="neither a time"):
        parse_at("2025-13-45")


def test_a_failed_capture_records_no_group(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo_path, repo = local_repo
    root = tmp_path / "stack"
    make_files(root / "data", {"v.txt": b"kept"})
    plan = _plan(
        root,
        repo_path,
        """\
        - {name: data, kind: files, paths: [data]}
        - name: gone
          kind: postgres
          dsn: host=127.0.0.1 port=5432 user=postgres dbname=no_such_database_here
        """,
    )
    with pytest.raises(SourceError, match="asset 'gone' \\(postgres\\) failed") as err:
        backup_plan(plan, repo)
    assert "no_such_database_here" in str(err.value) and "data are kept" in str(err.value)
    assert list_groups(reopen(repo)) == []
    assert [s.paths for s in reopen(repo).list_snapshots()] == [["asset:data"]]
    assert check(reopen(repo)).ok
    with pytest.raises(SnapshotNotFound, match="no complete snapshot group"):
        restore_plan(plan, reopen(repo), tmp_path / "out")
    # The orphan snapshot's group is named as incomplete.
    orphan = reopen(repo).list_snapshots()[0]
    with pytest.raises(SnapshotNotFound):
        find_group(reopen(repo), orphan.short_id)


def test_nothing_is_captured_when_something_is_missing(
    local_repo: tuple[Path, Repository], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_path, repo = local_repo
    root = tmp_path / "stack"
    make_files(root / "data", {"v.txt": b"x"})
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    plan = _plan(
        root,
        repo_path,
        """\
        - {name: data, kind: files, paths: [data]}
        - {name: db, kind: sqlite, path: missing.db}
        - {name: cfg, kind: config, secret_env: [NOT_SET_ANYWHERE]}
        """,
    )
    with pytest.raises(SourceError, match="nothing was backed up") as err:
        backup_plan(plan, repo)
    assert "missing.db is missing" in str(err.value) and "$NOT_SET_ANYWHERE" in str(err.value)
    assert reopen(repo).list_snapshots() == []
    assert list(repo.storage.list("packs/")) == []


def test_residency_against_the_repository(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo_path, repo = local_repo  # a repository without a region label
    root = tmp_path / "stack"
    make_files(root / "data", {"v.txt": b"x"})
    path = root / "seawall.yaml"
    path.write_text(
        f"version: 1\nrepositories:\n  primary: {{location: {repo_path}, region: eu}}\n"
        "assets:\n  - {name: data, kind: files, paths: [data], residency: eu}\n"
    )
    with pytest.raises(ResidencyViolation, match="plan says the primary repository is in region"):
        backup_plan(load_plan(path), repo)
    path.write_text(
        f"version: 1\nrepositories:\n  primary: {{location: {repo_path}}}\n"
        "assets:\n  - {name: data, kind: files, paths: [data]}\n"
    )
    plan = load_plan(path)
    plan.assets[0].residency = "eu"  # as a plan valid for another repository would say
    with pytest.raises(ResidencyViolation):
        backup_plan(plan, repo)
    assert reopen(repo).list_snapshots() == []


def test_a_replica_gets_the_groups_and_restores_from_them(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    from seawall.operations.copy import copy
    from seawall.plan.runner import copy_groups
    from seawall.storage import LocalStorage
    from tests.conftest import FAST_KDF, PASSWORD

    repo_path, repo = local_repo
    root = tmp_path / "stack"
    make_files(root / "data", {"v.txt": b"version 1"})
    make_files(root / "more", {"w.txt": b"other asset"})
    plan = _plan(
        root,
        repo_path,
        "- {name: data, kind: files, paths: [data]}\n- {name: more, kind: files, paths: [more]}\n",
    )
    group = backup_plan(plan, repo)
    replica = Repository.init(LocalStorage(tmp_path / "replica"), PASSWORD, kdf=FAST_KDF)
    # Half a group copied is no group: nothing is recorded until all of it is there.
    copy(reopen(repo), replica, [group.assets[0].snapshot.id.hex()])
    assert copy_groups(reopen(repo), replica) == 0
    copy(reopen(repo), replica)
    assert copy_groups(reopen(repo), replica) == 1
    assert copy_groups(reopen(repo), replica) == 0  # once
    [copied] = list_groups(reopen(replica))
    assert copied.id == group.group
    restore_plan(plan, reopen(replica), tmp_path / "out")
    assert (tmp_path / "out/data/data/v.txt").read_bytes() == b"version 1"
    assert (tmp_path / "out/more/more/w.txt").read_bytes() == b"other asset"
