"""Each chaos fault, injected for real, and the outcome it must have; the user's
repositories are left as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seawall.errors import UsageError
from seawall.operations.check import check
from seawall.plan.chaos import data_packs, run_chaos
from seawall.plan.drill import EXIT_DEGRADED, PRIMARY
from seawall.plan.runner import list_groups
from seawall.repository.pack import pack_name
from tests.conftest import reopen
from tests.operations.helpers import run_cli
from tests.plan.drill_stack import new_repo, objects, quick_stack


@pytest.mark.parametrize("fault", ["lose-pack", "corrupt-pack"])
def test_damaged_pack_is_named_recovered_from_the_replica_and_healed(
    tmp_path: Path, fault: str
) -> None:
    stack = quick_stack(tmp_path, replicas=["west"])
    before = objects(tmp_path / "repo")
    result = run_chaos(stack.plan, stack.repositories(), fault, seed=1)

    assert result.passed, result.to_dict()
    assert "a copy of the primary repository" in result.injected_into
    report = result.drill
    assert report is not None and report.checks_passed and report.exit_code == EXIT_DEGRADED
    hurt = result.injected.rsplit("holds data of ", 1)[1].split(", ")
    pack = result.injected.split("pack ")[1][:12]
    for asset in report.assets:
        if asset.name in hurt:
            assert asset.source == "west", asset.findings
            text = " ".join(asset.findings)
            why = "missing" if fault == "lose-pack" else "corrupted"
            assert f"pack {pack} is {why}" in text and "damaged assets: " in text
            assert asset.name in text.split("damaged assets: ")[1]
        else:
            assert asset.source == PRIMARY
    assert result.after is not None and result.after.passed
    assert all(a.source == PRIMARY for a in result.after.assets)
    assert "healed" in result.repair
    # The real primary was never touched, nor recorded in.
    assert objects(tmp_path / "repo") == before
    assert stack.repo.list_records("drill") == []


def test_lost_pack_without_replica_is_detected_and_named(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    result = run_chaos(stack.plan, stack.repositories(), "lose-pack")
    assert result.passed, result.to_dict()
    assert result.drill is not None and not result.drill.checks_passed
    failed = [a for a in result.drill.assets if a.error]
    assert failed and all("could not be restored from any repository" in a.error for a in failed)
    assert "no replica is configured" in result.expected


def test_in_place_damages_the_real_primary(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path, replicas=["west"])
    packs = data_packs(stack.repo, stack.plan)
    result = run_chaos(stack.plan, stack.repositories(), "lose-pack", in_place=True)
    assert result.passed and "itself" in result.injected_into
    # Healed in place: every pack the data needs is back (with a new name), and it checks clean.
    assert check(reopen(stack.repo), read_data=True).ok
    missing = [p for p in packs if not (tmp_path / "repo" / pack_name(p)).exists()]
    assert len(missing) == 1


def test_corrupt_index_is_named_and_repair_index_fixes_it(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path, replicas=["west"])
    result = run_chaos(stack.plan, stack.repositories(), "corrupt-index")
    assert result.passed, result.to_dict()
    assert result.drill is not None and result.drill.exit_code == EXIT_DEGRADED
    assert all(a.source == "west" for a in result.drill.assets)
    assert "repair index" in result.repair


def test_primary_down_recovers_everything_from_the_replica(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path, replicas=["west"])
    result = run_chaos(stack.plan, stack.repositories(), "primary-down")
    assert result.passed, result.to_dict()
    report = result.drill
    assert report is not None and {a.source for a in report.assets} == {"west"}
    assert any("unreachable" in f for f in report.findings)
    assert "fault wrapper" in result.injected_into
    # Golden outputs travel with the snapshots: the replica's copies have them.
    weights = next(a for a in report.assets if a.name == "weights")
    assert any(c.name == "golden outputs" and c.passed for c in weights.checks)


def test_primary_down_without_replica_cannot_pass(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    result = run_chaos(stack.plan, stack.repositories(), "primary-down")
    assert not result.passed
    assert (
        result.drill is not None and "no repository of the plan could be read" in result.drill.error
    )


def test_slow_storage_still_verifies_and_measures(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    result = run_chaos(stack.plan, stack.repositories(), "slow-storage", latency=0.005, seed=3)
    assert result.passed, result.to_dict()
    assert result.observed[0].startswith("faults injected:") and "calls" in result.observed[0]
    # An RTO target the slowed drill cannot meet is reported and fails the fault.
    stack.plan_file.write_text(
        stack.plan_file.read_text().replace("kind: files\n", "kind: files\n    rto: 1s\n")
    )
    slow = run_chaos(stack.plan, stack.repositories(), "slow-storage", asset="dataset", latency=0.1)
    assert not slow.passed and any("exceeds the target 1.0s" in o for o in slow.observed)


def test_killed_backup_leaves_a_valid_repository_and_resumes(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    groups = len(list_groups(stack.repo))
    result = run_chaos(stack.plan, stack.repositories(), "kill-backup")
    assert result.passed, result.to_dict()
    assert "killed with SIGKILL while writing snapshot 2 of 3" in result.injected
    assert "checks clean and records no new group" in result.observed[0]
    assert result.after is not None and result.after.checks_passed
    assert len(list_groups(stack.repo)) == groups  # it all happened in a copy


def test_chaos_command_exit_codes_and_reports(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path, replicas=["west"])
    location = stack.repo.storage.location
    out = run_cli(
        location, "chaos", "--plan", str(stack.plan_file), "primary-down",
        "--report-dir", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] and doc["drill"]["exit_code"] == EXIT_DEGRADED
    assert (
        json.loads((tmp_path / "out" / "chaos-report.json").read_text())["fault"] == "primary-down"
    )
    assert "RECOVERED FROM A REPLICA" in (tmp_path / "out" / "drill-report.html").read_text()
    out = run_cli(location, "chaos", "--plan", str(stack.plan_file), "melt-disk")
    assert out.returncode == 2 and "melt-disk" in out.stderr

    # The drill command itself falls back to the replica when the primary is gone.
    (tmp_path / "repo").rename(tmp_path / "repo-gone")
    out = run_cli(location, "drill", "--plan", str(stack.plan_file))
    assert out.returncode == EXIT_DEGRADED, out.stderr
    assert "from west" in out.stdout and "unreachable" in out.stderr
    record = stack.replicas["west"].list_records("drill")[-1]  # the primary is gone
    assert record["degraded"] and record["assets"]["weights"]["source"] == "west"


def test_unknown_fault_and_a_repository_without_groups(tmp_path: Path) -> None:
    stack = quick_stack(tmp_path)
    with pytest.raises(UsageError, match="unknown fault"):
        run_chaos(stack.plan, stack.repositories(), "flood")
    empty = stack.repositories()
    empty.opened[PRIMARY] = new_repo(tmp_path / "empty")
    with pytest.raises(UsageError, match="no complete snapshot group"):
        run_chaos(stack.plan, empty, "lose-pack")
