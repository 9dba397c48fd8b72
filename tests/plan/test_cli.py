"""`seawall plan check`, `backup --plan`, `restore --plan` and `groups`, run as a user
would: the repository and its password come from the plan; secrets never show."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import make_files
from tests.interfaces.cli.conftest import SEAWALL, Result, assert_clean_error, base_env, run
from tests.postgres import PgDatabase

SECRET = "tok-9QvX27LmZp"
PASSWORD = "plan cli password"


def _env(**extra: str) -> dict[str, str]:
    return base_env(PLAN_PW=PASSWORD, MODEL_STAGE="prod", SERVE_TOKEN=SECRET, **extra)


def _stack(root: Path, extra: str = "") -> Path:
    make_files(root / "data", {"a.csv": b"x,y\n1,2\n", "b/c.txt": b"c" * 5000})
    (root / "serve.yaml").write_text("threshold: 0.5\n")
    (root / "seawall.yaml").write_text(
        "version: 1\n"
        "repositories:\n"
        "  primary: {location: ./repo, password_env: PLAN_PW}\n"
        "defaults: {rpo: 1h, retention: {keep_daily: 7}}\n"
        "assets:\n"
        "  - {name: dataset, kind: files, paths: [data], rto: 30m}\n"
        "  - name: serving\n"
        "    kind: config\n"
        "    files: [serve.yaml]\n"
        "    env: [MODEL_STAGE]\n"
        "    secret_env: [SERVE_TOKEN]\n" + extra
    )
    init = run("init", env=_env(SEAWALL_REPOSITORY=str(root / "repo"), SEAWALL_PASSWORD=PASSWORD))
    assert init.code == 0, init
    return root / "seawall.yaml"


def _ok(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    result = run(*args, env=env or _env(), cwd=cwd)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result


def _stored_bytes(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*") if p.is_file()}


def test_plan_check_shows_what_is_protected(tmp_path: Path) -> None:
    plan = _stack(tmp_path)
    out = _ok("plan", "check", plan).out
    assert f"plan {plan} is valid: 2 assets" in out
    assert f"repository: {tmp_path / 'repo'} (no region; password from $PLAN_PW)" in out
    assert "dataset (files)  rpo 1h  rto 30m  keep daily 7" in out
    assert f"{tmp_path / 'data'}  2 files  4.9 KiB" in out
    assert "secret variable $SERVE_TOKEN  (set)" in out
    assert SECRET not in out
    report = _ok("plan", "check", plan, "--json").json()
    assert [a["kind"] for a in report["assets"]] == ["files", "config"]
    assert report["problems"] == [] and report["repository"]["password_env"] == "PLAN_PW"

    # What this machine lacks is a problem (exit 1); the file itself is fine.
    (tmp_path / "serve.yaml").unlink()
    result = run("plan", "check", plan, env=base_env(PLAN_PW=PASSWORD))
    assert result.code == 1, result
    assert "problems (a backup would fail):" in result.out
    assert f"serving: {tmp_path / 'serve.yaml'} is missing" in result.out
    assert "serving: $SERVE_TOKEN is missing" in result.out
    assert _ok("plan", "check", "--offline", plan).out.count("is missing") == 0


def test_an_invalid_plan_changes_nothing(tmp_path: Path) -> None:
    plan = _stack(tmp_path)
    before = _stored_bytes(tmp_path / "repo")
    plan.write_text(plan.read_text().replace("rto: 30m", "rto: soon"))
    for args in (
        ("plan", "check", plan),
        ("backup", "--plan", plan),
        ("restore", "--plan", plan, "--target", tmp_path / "out"),
    ):
        result = run(*args, env=_env())
        assert_clean_error(result, 2, f"{plan}:6:", "assets[0].rto", "invalid duration 'soon'")
    assert _stored_bytes(tmp_path / "repo") == before
    assert not (tmp_path / "out").exists()
    assert_clean_error(run("plan", "check", tmp_path / "nope.yaml", env=_env()), 2, "cannot read")


def test_backup_and_restore_with_a_plan(tmp_path: Path) -> None:
    plan = _stack(tmp_path)
    outputs = []
    first = _ok("backup", "--plan", plan, "--json").json()
    assert [a["name"] for a in first["assets"]] == ["dataset", "serving"]
    assert first["assets"][0]["asset"]["group"] == first["group"]
    (tmp_path / "data/a.csv").write_bytes(b"changed\n")
    second = _ok("backup", "--plan", plan)
    outputs.append(second.out + second.err)
    saved = re.search(r"group (\w{8}) saved: 2 assets captured", second.out)
    assert saved, second

    groups = _ok("groups", "--plan", plan, "--json").json()
    assert [g["id"][:8] for g in groups] == [first["group"][:8], saved[1]]
    listing = _ok("groups", "--plan", plan)
    outputs.append(listing.out)
    assert first["group"][:8] in listing.out and "2 groups" in listing.out

    restored = _ok(
        "restore", "--plan", plan, "--at", first["group"][:8], "--target", tmp_path / "out"
    )
    outputs.append(restored.out + restored.err)
    assert (tmp_path / "out/dataset/data/a.csv").read_bytes() == b"x,y\n1,2\n"
    env_file = tmp_path / "out/serving/.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert f"SERVE_TOKEN={SECRET}" in env_file.read_text()
    assert f"restored group {first['group'][:8]}" in restored.out

    one = _ok(
        "restore", "--plan", plan, "--asset", "dataset", "--target", tmp_path / "two", "--json"
    ).json()
    assert [a["name"] for a in one["assets"]] == ["dataset"]
    assert (tmp_path / "two/dataset/data/a.csv").read_bytes() == b"changed\n"

    repo_env = base_env(SEAWALL_REPOSITORY=str(tmp_path / "repo"), SEAWALL_PASSWORD=PASSWORD)
    outputs.append(_ok("snapshots", "--json", env=repo_env).out)
    config_snapshot = first["assets"][1]["snapshot"]
    listed = _ok("ls", config_snapshot, env=repo_env).out
    outputs.append(listed)
    assert "/.env" in listed
    outputs.append(_ok("plan", "check", plan).out)
    for text in outputs:
        assert SECRET not in text
    for data in _stored_bytes(tmp_path / "repo").values():
        assert SECRET.encode() not in data


def test_command_line_and_options(tmp_path: Path) -> None:
    plan = _stack(tmp_path)
    _ok("backup", "--plan", plan)
    assert_clean_error(run("backup", "--plan", plan, "data", env=_env()), 2, "give no PATHS")
    assert_clean_error(run("backup", env=_env()), 2, "PATHS", "--plan")
    assert_clean_error(
        run("restore", "--plan", plan, "latest", "-t", tmp_path / "o", env=_env()), 2, "SNAPSHOT"
    )
    assert_clean_error(run("restore", "--at", "x", "-t", tmp_path / "o", env=_env()), 2, "--plan")
    assert_clean_error(
        run("restore", "--plan", plan, "-t", tmp_path / "o", "-o", "bad", env=_env()),
        2,
        "ASSET.KEY=VALUE",
    )
    # An asset's source refuses its option: the others come back, and it can again later.
    result = run("restore", "--plan", plan, "-t", tmp_path / "o", "-o", "dataset.to=x", env=_env())
    assert_clean_error(result, 1, "takes no restore option 'to'", "--asset NAME")
    assert not (tmp_path / "o/dataset").exists() and (tmp_path / "o/serving/.env").exists()
    _ok("restore", "--plan", plan, "-t", tmp_path / "o", "--asset", "dataset")
    assert_clean_error(
        run("restore", "--plan", plan, "-t", tmp_path / "p", "--at", "2000-01-01", env=_env()),
        1,
        "no complete snapshot group at or before",
    )
    # The password comes from the plan's variable, which must be set.
    assert_clean_error(
        run("backup", "--plan", plan, env=base_env(SERVE_TOKEN=SECRET, MODEL_STAGE="x")),
        2,
        "$PLAN_PW",
    )
    # --repo and --password-file on the command line win over the plan.
    pw = tmp_path / "pw"
    pw.write_text("wrong password\n")
    assert_clean_error(run("backup", "--plan", plan, "--password-file", pw, env=_env()), 12)
    for command in (["plan", "check"], ["groups"]):
        help_text = _ok(*command, "--help").out
        assert "PLAN" in help_text


def test_a_killed_backup_leaves_no_group(pg_database: PgDatabase, tmp_path: Path) -> None:
    """Killed (SIGKILL) while pg_dump streams: no group, a valid repository, and the next
    run completes a group."""
    with pg_database.connect() as conn:
        conn.execute(
            "CREATE TABLE big AS SELECT i, repeat(md5(i::text), 20) AS pad "
            "FROM generate_series(1, 60000) AS i"
        )
    plan = _stack(tmp_path, f'  - {{name: features, kind: postgres, dsn: "{pg_database.dsn}"}}\n')
    proc = subprocess.Popen(
        [SEAWALL, "backup", "--plan", str(plan)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _pg_dump_running(pg_database):
            assert proc.poll() is None, "the backup ended before pg_dump was seen"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # seawall and its pg_dump
        proc.wait()
    assert _ok("groups", "--plan", plan, "--json").json() == []
    repo_env = _env(SEAWALL_REPOSITORY=str(tmp_path / "repo"), SEAWALL_PASSWORD=PASSWORD)
    _ok("unlock", env=repo_env)  # the killed run's stale lock
    assert "no errors were found" in _ok("check", env=repo_env).out
    again = _ok("backup", "--plan", plan, "--json").json()
    assert [g["id"] for g in _ok("groups", "--plan", plan, "--json").json()] == [again["group"]]
    features = again["assets"][2]["asset"]["consistency"]["tables"]["public.big"]
    assert features["rows"] == 60000


def _pg_dump_running(db: PgDatabase) -> bool:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
            "AND datname = %s",
            [db.name],
        ).fetchone()
    return bool(row and row[0])


@pytest.fixture(autouse=True)
def _no_ambient_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("SEAWALL_")]:
        monkeypatch.delenv(name)
