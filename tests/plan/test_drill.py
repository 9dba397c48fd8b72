"""Drills on a real stack: what they verify, what they catch, what they measure, the
record and the report they leave, and the command's exit codes."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seawall.errors import UsageError
from seawall.plan.drill import EXIT_FAILED, EXIT_TARGET_MISSED, run_drill, worst_gap
from seawall.plan.model import Retention
from seawall.plan.report import render_html, write_report
from seawall.plan.runner import backup_plan
from seawall.plan.status import plan_status
from tests.operations.helpers import run_cli
from tests.plan.drill_stack import quick_stack, sha256


def test_quick_stack_drill_verifies_every_asset_and_records_it(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    sandbox = tmp_path / "sandboxes"
    report = run_drill(stack.plan, stack.repositories(), sandbox=sandbox)

    assert report.passed and report.exit_code == 0, report.to_dict()
    checks = {a.name: {c.name: c.passed for c in a.checks} for a in report.assets}
    assert checks == {
        "dataset": {"bytes": True},
        "weights": {"bytes": True, "golden outputs": True},
        "app-db": {"bytes": True, "tables": True},
    }
    weights = next(a for a in report.assets if a.name == "weights")
    # The drill hashed what it restored: the very bytes of the live files.
    assert weights.files == {"/ckpt/w.npy": sha256(tmp_path / "ckpt" / "w.npy")}
    dataset = next(a for a in report.assets if a.name == "dataset")
    assert dataset.files["/data/img/x.png"] == sha256(tmp_path / "data" / "img" / "x.png")
    assert all(a.source == "primary" and a.rto_s is not None for a in report.assets)
    assert report.rto_s >= max(a.rto_s or 0 for a in report.assets)
    # Nothing is left in the sandbox directory.
    assert list(sandbox.iterdir()) == []

    records = stack.repo.list_records("drill")
    assert len(records) == 1 and records[0]["id"] == report.record
    doc = records[0]
    assert doc["passed"] is True and doc["group"] == report.group
    assert doc["plan_file"] == str(stack.plan_file)
    entry = doc["assets"]["weights"]
    assert entry["passed"] is True and entry["snapshot"] == weights.snapshot
    assert entry["files"] == weights.files and entry["rto_s"] == round(weights.rto_s or 0, 3)
    assert {c["name"] for c in entry["checks"]} == {"bytes", "golden outputs"}


def test_a_model_that_no_longer_gives_its_golden_outputs_fails_the_drill(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    (tmp_path / "offset.txt").write_text("0.001")  # the restored model now predicts otherwise
    report = run_drill(stack.plan, stack.repositories(), asset="weights")
    assert report.exit_code == EXIT_FAILED and not report.passed
    (golden,) = [c for c in report.assets[0].checks if c.name == "golden outputs"]
    assert not golden.passed
    assert "outputs[0][0]" in golden.detail and "difference 0.001" in golden.detail
    assert stack.repo.list_records("drill")[-1]["assets"]["weights"]["passed"] is False


def test_no_recorded_goldens_and_a_crashing_smoke_test_fail_clearly(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    plan_text = stack.plan_file.read_text()
    # A smoke test added after the backup: nothing to compare with.
    stack.plan_file.write_text(plan_text.replace("smoke_test: smoke:predict", ""))
    backup_plan(stack.plan, stack.repo)
    stack.plan_file.write_text(plan_text)
    report = run_drill(stack.plan, stack.repositories(), asset="weights", record=False)
    (golden,) = [c for c in report.assets[0].checks if c.name == "golden outputs"]
    assert not golden.passed and "no golden outputs were recorded" in golden.detail
    # A smoke test that crashes on the restored model.
    (tmp_path / "offset.txt").write_text("not a number")
    first = stack.repo.list_records("group")[0]["group"]
    report = run_drill(stack.plan, stack.repositories(), asset="weights", snapshot=first)
    (golden,) = [c for c in report.assets[0].checks if c.name == "golden outputs"]
    assert (
        not golden.passed
        and "ValueError" in golden.detail
        and "exited with code 1" in golden.detail
    )


#: A check: the restored database ($SEAWALL_DATABASE) has that many rows in that table.
COUNT = """\
import os, sqlite3, sys
table, expected = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(os.environ["SEAWALL_DATABASE"])
sys.exit(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] != expected)
"""


def test_checks_run_in_the_sandbox_with_the_restored_assets_and_a_timeout(tmp_path: Path) -> None:
    extra = """\
    - name: features
      kind: sqlite
      path: features.db
      checks:
        - name: rows
          command: python3 "$SEAWALL_PLAN_DIR/count.py" f 42
        - name: sees-the-model
          command:
            - sh
            - -c
            - test -f "$SEAWALL_ASSET_DIR_WEIGHTS/ckpt/w.npy" && test "$PWD" = "$SEAWALL_SANDBOX"
        - name: fails
          command: echo "feature drift detected" >&2; exit 3
        - name: hangs
          command: sleep 30
          timeout: 1s
    """
    import sqlite3

    (tmp_path / "count.py").write_text(COUNT)
    with sqlite3.connect(tmp_path / "features.db") as conn:
        conn.execute("CREATE TABLE f (x)")
        conn.executemany("INSERT INTO f VALUES (?)", [(i,) for i in range(42)])
    conn.close()
    stack = quick_stack(tmp_path, extra=extra)
    started = time.monotonic()
    report = run_drill(stack.plan, stack.repositories(), record=False)
    assert time.monotonic() - started < 20  # the hung check was stopped at its timeout
    checks = {c.name: c for c in next(a for a in report.assets if a.name == "features").checks}
    assert checks["check rows"].passed, checks["check rows"].detail
    assert checks["check sees-the-model"].passed, checks["check sees-the-model"].detail
    assert not checks["check fails"].passed
    assert checks["check fails"].detail == "exited with code 3: feature drift detected"
    assert not checks["check hangs"].passed and "within 1 s" in checks["check hangs"].detail
    assert report.exit_code == EXIT_FAILED


def test_targets_missed_exit_4_and_status_shows_the_history(tmp_path: Path) -> None:
    extra = """\
    - name: slow-db
      kind: sqlite
      path: app.db
      rto: 1s
      rpo: 1h
      checks: ["sleep 1.2"]
    """
    import sqlite3

    sqlite3.connect(tmp_path / "slow.db").close()
    stack = quick_stack(tmp_path, extra=extra.replace("path: app.db", "path: slow.db"))
    out = run_cli(stack.repo.storage.location, "drill", "--plan", str(stack.plan_file), "--json")
    assert out.returncode == EXIT_TARGET_MISSED, out.stderr
    doc = json.loads(out.stdout)
    assert doc["checks_passed"] is True and doc["passed"] is False
    assert doc["missed_targets"] == [
        f"slow-db: RTO {doc['assets']['slow-db']['rto_s']:.1f}s exceeds the target 1.0s"
    ]

    status = plan_status(stack.plan, stack.repo)
    slow = next(a for a in status.assets if a.name == "slow-db")
    assert slow.drill_passed is False and slow.drills == 1 and not slow.behind
    assert slow.age_s is not None and slow.age_s < 60
    out = run_cli(stack.repo.storage.location, "status", "--plan", str(stack.plan_file))
    assert out.returncode == 1  # its last drill failed
    assert "slow-db: its last drill failed" in out.stderr
    assert "never" not in out.stdout and "FAILED" in out.stdout

    # An RPO target the newest group misses; status exits 1 for it too.
    stack.plan_file.write_text(stack.plan_file.read_text().replace("rpo: 1h", "rpo: 1s"))
    time.sleep(1.1)
    report = run_drill(stack.plan, stack.repositories(), asset="slow-db")
    assert any("RPO: the restored data is" in m for m in report.missed_targets)
    out = run_cli(stack.repo.storage.location, "status", "--plan", str(stack.plan_file), "--json")
    doc = json.loads(out.stdout)
    slow_doc = next(a for a in doc["assets"] if a["name"] == "slow-db")
    assert out.returncode == 1 and slow_doc["within_rpo"] is False and slow_doc["drills"] == 2


def test_report_is_self_contained_html_with_charts_of_the_history(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path, extra="")
    plan_text = stack.plan_file.read_text().replace(
        "kind: files\n", "kind: files\n    rto: 10m\n    rpo: 1d\n"
    )
    stack.plan_file.write_text(plan_text)
    run_drill(stack.plan, stack.repositories())
    report = run_drill(stack.plan, stack.repositories())
    json_path, html_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["assets"]["dataset"]["rto_target_s"] == 600
    html = html_path.read_text()
    assert html == render_html(report)
    # Nothing loaded from elsewhere: no script, no stylesheet link, no remote URL.
    for needle in ("<script", "<link", "src=", "http://", "https://"):
        assert needle not in html.replace("http://www.w3.org/2000/svg", "")
    svgs = [ET.fromstring(s + "</svg>") for s in _svgs(html)]
    assert len(svgs) == 2 * len(report.assets)
    ns = "{http://www.w3.org/2000/svg}"
    dataset_rto = svgs[0]
    assert len(dataset_rto.findall(f"{ns}circle")) == 2  # two drills in the history
    assert any("target 10min" in (t.text or "") for t in dataset_rto.iter(f"{ns}text"))
    assert "PASSED" in html and "dataset" in html and report.group[:8] in html


def _svgs(html: str) -> list[str]:
    return ["<svg" + part.split("</svg>")[0] for part in html.split("<svg")[1:]]


def test_bad_input_is_refused_before_anything_is_restored(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    with pytest.raises(UsageError, match="has no asset 'nope'"):
        run_drill(stack.plan, stack.repositories(), asset="nope")
    with pytest.raises(UsageError, match="has no replica 'east'"):
        run_drill(stack.plan, stack.repositories(), from_replica="east")
    report = run_drill(stack.plan, stack.repositories(), snapshot="ffffffff", record=False)
    assert report.exit_code == EXIT_FAILED and "ffffffff" in report.error
    assert stack.repo.list_records("drill") == []


def test_drill_of_an_older_group_by_snapshot_id(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    first = stack.repo.list_records("group")[0]
    (tmp_path / "data" / "train.csv").write_text("changed\n")
    backup_plan(stack.plan, stack.repo)
    sid = first["assets"]["dataset"]
    report = run_drill(stack.plan, stack.repositories(), snapshot=sid[:10], asset="dataset")
    assert report.passed and report.group == first["group"]
    (item,) = report.assets
    assert item.snapshot == sid
    # The RPO it shows is the age of the data it restored: older than the newest group.
    newest = datetime.fromisoformat(stack.repo.list_records("group")[1]["time"])
    assert item.rpo_s is not None
    assert item.rpo_s > (report.time - newest).total_seconds()
    assert item.files["/data/train.csv"] != sha256(tmp_path / "data" / "train.csv")


def test_worst_gap_follows_the_retention_window() -> None:
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    times = [now - timedelta(days=9), now - timedelta(days=2), now - timedelta(hours=3)]
    assert worst_gap(times, now, None) == timedelta(days=7).total_seconds()
    # keep_hourly 24: only the last day counts, in which 21 hours passed without one.
    hourly = Retention(keep_hourly=24, keep_daily=30)
    assert worst_gap(times, now, hourly) == timedelta(hours=21).total_seconds()
    assert worst_gap(times, now, Retention(keep_last=1)) == timedelta(hours=3).total_seconds()
    assert worst_gap([], now, None) is None


def test_drill_command_writes_reports_and_names_failures(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    (tmp_path / "offset.txt").write_text("1")
    out = run_cli(
        stack.repo.storage.location,
        "drill",
        "--plan",
        str(stack.plan_file),
        "--report-dir",
        str(tmp_path / "reports"),
    )
    assert out.returncode == EXIT_FAILED, out.stderr
    assert "FAIL weights" in out.stdout and "golden outputs: the restored model" in out.stdout
    assert "drill failed" in out.stdout
    doc = json.loads((tmp_path / "reports" / "drill-report.json").read_text())
    assert doc["assets"]["weights"]["passed"] is False and doc["exit_code"] == EXIT_FAILED
    assert "FAILED" in (tmp_path / "reports" / "drill-report.html").read_text()


def test_each_asset_comes_from_the_newest_group_holding_it(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    first = stack.repo.list_records("group")[0]["group"]
    # A scheduled backup of the dataset alone makes a group of one asset.
    full = stack.plan_file.read_text()
    only = full.split("  - name: weights")[0]
    (tmp_path / "data" / "train.csv").write_text("newer\n")
    stack.plan_file.write_text(only)
    second = backup_plan(stack.plan, stack.repo).group
    # And an asset added to the plan since, never backed up.
    (tmp_path / "more").mkdir()
    stack.plan_file.write_text(full + "  - {name: extra, kind: files, paths: [more]}\n")
    report = run_drill(stack.plan, stack.repositories(), record=False)
    groups = {a.name: a.group for a in report.assets}
    assert groups == {"dataset": second, "weights": first, "app-db": first, "extra": ""}
    extra = next(a for a in report.assets if a.name == "extra")
    assert "no complete snapshot group" in extra.error and report.exit_code == EXIT_FAILED
    assert all(a.passed for a in report.assets if a.name != "extra")


def test_ci_example_runs_real_commands_with_real_options() -> None:
    """docs/examples/drill-workflow.yml is valid YAML, and each seawall command in it
    names a command and options that exist."""
    import shlex

    import click
    import yaml

    from seawall.interfaces.cli.main import cli

    root = Path(__file__).parents[2]
    workflow = yaml.safe_load((root / "docs" / "examples" / "drill-workflow.yml").read_text())
    runs = [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    commands = [
        line.strip().rstrip("\\")
        for run in runs
        for line in run.replace("\\\n", " ").splitlines()
        if line.strip().startswith("seawall ")
    ]
    assert {c.split()[1] for c in commands} == {"status", "drill", "chaos"}
    for command in commands:
        words = shlex.split(command.split("${{")[0])[1:]
        sub = cli.commands[words[0]]
        assert isinstance(sub, click.Command)
        known = {o for p in sub.params for o in getattr(p, "opts", [])}
        assert {w for w in words if w.startswith("--")} <= known, command


def test_status_before_any_drill_and_of_an_asset_never_backed_up(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    out = run_cli(stack.repo.storage.location, "status", "--plan", str(stack.plan_file))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("never") == 3 and out.stderr == ""
    (tmp_path / "more").mkdir()
    stack.plan_file.write_text(
        stack.plan_file.read_text() + "  - {name: extra, kind: files, paths: [more], rpo: 1h}\n"
    )
    status = plan_status(stack.plan, stack.repo)
    extra = next(a for a in status.assets if a.name == "extra")
    assert extra.group is None and extra.problems == ["no complete snapshot group holds it"]
    assert not status.ok


def test_hooks_do_not_see_the_repository_password(tmp_path: Path) -> None:
    from seawall.plan.hooks import run_command

    env = {"SEAWALL_PASSWORD": "hunter2", "SEAWALL_FROM_PASSWORD": "x", "SEAWALL_REPOSITORY": "r"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        ran = run_command(
            "env | grep ^SEAWALL_", env={"SEAWALL_ASSET": "a"}, cwd=tmp_path, timeout=10
        )
    assert ran.ok and "SEAWALL_ASSET=a" in ran.output and "SEAWALL_REPOSITORY=r" in ran.output
    assert "hunter2" not in ran.output and "SEAWALL_FROM_PASSWORD" not in ran.output
