"""`seawall report compliance` on a plan whose copies are in two regions, one of them an
immutable S3 replica (moto with Object Lock) and one unreachable; `seawall anomalies`
and `restore --plan` after a ransomware-like backup, and a mark cleared (audited)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seawall.operations.copy import copy
from seawall.plan.drill import run_drill
from seawall.plan.model import load_plan
from seawall.plan.runner import backup_plan
from seawall.repository.config import Immutability
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from seawall.storage.s3 import S3Storage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files, tree_digest
from tests.interfaces.cli.conftest import base_env, run
from tests.plan.test_anomaly import encrypt_in_place, make_dataset
from tests.s3_server import MotoServer

DAYS = 30


def _init(storage: LocalStorage | S3Storage, region: str, **kw: object) -> Repository:
    return Repository.init(
        storage,
        PASSWORD,
        kdf=FAST_KDF,
        chunker=SMALL_CHUNKS,
        pack_size=SMALL_PACK,
        region=region,
        **kw,  # type: ignore[arg-type]
    )


def test_compliance_report_names_copies_regions_locks_and_drills(
    tmp_path: Path, s3_server: MotoServer, s3_lock_bucket: str
) -> None:
    make_files(tmp_path / "tx", {"2025-06.csv": b"id,amount\n" + b"1,9.5\n" * 2000})
    make_files(tmp_path / "weights", {"model.bin": bytes(range(256)) * 200})
    primary = _init(LocalStorage(tmp_path / "repo"), "eu")
    locked = S3Storage(s3_lock_bucket, "dr", endpoint_url=s3_server.endpoint)
    dr_eu = _init(locked, "eu", immutability=Immutability(DAYS))
    dr_us = _init(LocalStorage(tmp_path / "us"), "us-east")
    (tmp_path / "seawall.yaml").write_text(
        textwrap.dedent(
            f"""\
            version: 1
            repositories:
              primary: {{location: repo, region: eu}}
              replicas:
                - {{name: dr-eu, location: "s3:{s3_lock_bucket}/dr", region: eu,
                    s3_endpoint: "{s3_server.endpoint}"}}
                - {{name: dr-us, location: us, region: us-east}}
                - {{name: gone, location: nowhere, region: eu}}
            assets:
              - {{name: transactions, kind: files, paths: [tx], residency: eu, rpo: 1d,
                  retention: {{keep_daily: 14}}}}
              - {{name: weights, kind: files, paths: [weights]}}
            """
        )
    )
    plan = load_plan(tmp_path / "seawall.yaml")
    group = backup_plan(plan, primary)
    snaps = {a.name: a.snapshot.id.hex() for a in group.assets}
    copy(primary, dr_eu, list(snaps.values()))
    copy(primary, dr_us, [snaps["weights"]])  # transactions must stay in the EU
    assert run_drill(plan, primary, asset="transactions").passed

    env = base_env(SEAWALL_PASSWORD=PASSWORD)
    out = tmp_path / "report"
    result = run("report", "compliance", "--plan", tmp_path / "seawall.yaml", "--out", out, env=env)
    assert result.code == 1, result  # there are findings
    report = json.loads((out / "compliance.json").read_text())
    assets = {a["name"]: a for a in report["assets"]}
    tx, weights = assets["transactions"], assets["weights"]

    copies = {c["repository"]: c for c in tx["copies"]}
    assert set(copies) == {"primary", "dr-eu", "gone"}  # none in dr-us: residency eu
    assert copies["primary"]["region"] == "eu" and copies["primary"]["immutability"] is None
    assert copies["primary"]["snapshots"] == 1 and copies["primary"]["keys"] == 1
    assert "AES-256-GCM" in copies["primary"]["encryption"]
    lock = copies["dr-eu"]["immutability"]
    assert lock["mode"] == "governance" and lock["days"] == DAYS
    until = datetime.fromisoformat(lock["newest_until"])
    assert abs(until - (datetime.now(UTC) + timedelta(days=DAYS))) < timedelta(minutes=10)
    assert copies["dr-eu"]["residency_ok"] and copies["dr-eu"]["region"] == "eu"
    assert "nowhere" in copies["gone"]["location"] and copies["gone"]["error"]
    assert tx["residency"] == "eu" and tx["retention"] == "daily 14" and tx["rpo"] == "1d"
    drill = tx["last_successful_drill"]
    assert drill is not None and drill["passed"] and drill["rto_s"] > 0
    assert tx["last_drill"] == drill
    assert tx["findings"] == [f"gone cannot be read: {copies['gone']['error']}"]

    assert {c["repository"] for c in weights["copies"] if c["snapshots"]} == {
        "primary",
        "dr-eu",
        "dr-us",
    }
    assert weights["last_successful_drill"] is None
    assert "never drilled" in weights["findings"]
    assert "no retention policy" in weights["findings"]

    html = (out / "compliance.html").read_text()
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    assert "dr-eu (eu)" in html and "governance mode, 30 days" in html
    assert "weights: never drilled" in result.err and "compliance.html" in result.out + result.err


def test_anomalies_listed_passed_over_by_restore_and_cleared(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path)
    _init(LocalStorage(tmp_path / "repo"), "")
    plan = tmp_path / "seawall.yaml"
    plan.write_text(
        "version: 1\nrepositories:\n  primary: {location: repo}\n"
        "assets:\n  - {name: dataset, kind: files, paths: [data]}\n"
    )
    env = base_env(SEAWALL_PASSWORD=PASSWORD)
    assert run("backup", "--plan", plan, env=env).code == 0
    clean = tree_digest(tmp_path / "data")
    for path in paths[:9]:
        encrypt_in_place(path)
    backup = run("backup", "--plan", plan, env=env)
    assert backup.code == 0, backup
    assert "SUSPECT" in backup.err and "part-000.csv" in backup.err

    listed = run("anomalies", "--plan", plan, "--json", env=env)
    [mark] = listed.json()
    assert mark["asset"] == "dataset" and len(mark["files"]) == 9
    assert run("anomalies", "--plan", plan, env=env).out.count("dataset") == 1

    restore = run("restore", "--plan", plan, "--target", tmp_path / "back", env=env)
    assert restore.code == 0, restore
    assert f"passing over group {mark['group'][:8]}" in restore.out
    assert tree_digest(tmp_path / "back" / "dataset" / "data") == clean

    refused = run("anomalies", "clear", mark["id"][:12], "--plan", plan, "--reason", " ", env=env)
    assert refused.code == 2 and "reason" in refused.err
    cleared = run(
        "anomalies", "clear", mark["snapshot"][:12], "--plan", plan,
        "--reason", "we encrypted the tables ourselves", env=env,
    )  # fmt: skip
    assert cleared.code == 0, cleared
    assert run("anomalies", "--plan", plan, "--json", env=env).json() == []
    entries = run("audit", "log", "--plan", plan, "--json", env=env).json()
    assert [e["operation"] for e in entries][-1] == "anomaly.clear"
    again = run("restore", "--plan", plan, "--target", tmp_path / "again", env=env)
    assert again.code == 0 and "passing over" not in again.out
    encrypted = (tmp_path / "again" / "dataset" / "data" / "tables" / paths[0].name).read_bytes()
    assert encrypted == paths[0].read_bytes()
