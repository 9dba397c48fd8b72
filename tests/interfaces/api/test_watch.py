"""Watching over recovery: /metrics scraped and its values checked against the repository;
alerts opened, not repeated, repeated after a while, resolved; and a real `seawall serve`
sending a real webhook receiver the alerts of a ransomware-like backup (naming the
encrypted files), a failed drill, a failed backup, a replica behind and an RPO breached,
each once, while a plain restore brings back the last clean group."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from seawall.control.access import Role
from seawall.control.alerts import Alerter, Condition, Webhooks
from seawall.control.plane import ControlPlane
from seawall.control.store import StateStore
from seawall.interfaces.api.app import create_app
from seawall.plan.drill import RECORD_KIND
from seawall.plan.runner import backup_plan, list_groups
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import PASSWORD, make_files, tree_digest
from tests.interfaces.api.served import Receiver, add_users, serve, wait_until, write_plan
from tests.plan.test_anomaly import encrypt_in_place, make_dataset


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def scrape(client: TestClient, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_show_assets_drills_and_failed_jobs(tmp_path: Path) -> None:
    make_files(tmp_path / "data", {"train.csv": b"a,b\n1,2\n" * 4000})
    make_files(tmp_path / "models", {"model.bin": bytes(range(256)) * 300})
    plan = write_plan(
        tmp_path,
        """\
        - {name: data, kind: files, paths: [data], rpo: 1h, rto: 30m}
        - {name: models, kind: files, paths: [models], rpo: 1s}
        """,
    )
    plane = ControlPlane(plan, StateStore(tmp_path / "state"), password=PASSWORD)
    plane.start()
    users = {r.name: plane.users.add(r.name, r) for r in (Role.viewer, Role.operator)}
    op = {"Authorization": f"Bearer {users['operator'].token}"}
    try:
        with TestClient(create_app(plane)) as client:
            assert client.get("/metrics").status_code == 401
            backup = client.post("/api/v1/backups", json={}, headers=op).json()
            assert plane.jobs.wait(backup["id"], 60)["state"] == "ok"  # type: ignore[index]
            drill = client.post("/api/v1/drills", json={"assets": ["data"]}, headers=op).json()
            assert plane.jobs.wait(drill["id"], 60)["state"] == "ok"  # type: ignore[index]
            shutil.rmtree(tmp_path / "models")
            failed = client.post("/api/v1/backups", json={"assets": ["models"]}, headers=op)
            assert plane.jobs.wait(failed.json()["id"], 60)["state"] == "failed"  # type: ignore[index]
            time.sleep(1.2)  # past the RPO of models (1 s)
            got = scrape(client, users["viewer"].token)
    finally:
        plane.stop()

    repo = Repository.open(LocalStorage(tmp_path / "repo"), PASSWORD)
    snaps = {s.asset["name"]: s for s in repo.list_snapshots()}
    [record] = repo.list_records(RECORD_KIND)

    def metric(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    data = snaps["data"].summary
    assert metric("seawall_asset_rpo_target_seconds", asset="data") == 3600
    assert metric("seawall_asset_rto_target_seconds", asset="data") == 1800
    assert ("seawall_asset_rto_target_seconds", (("asset", "models"),)) not in got
    assert 0 <= metric("seawall_asset_newest_snapshot_age_seconds", asset="data") < 60
    assert metric("seawall_asset_newest_snapshot_timestamp_seconds", asset="data") == (
        pytest.approx(list_groups(repo)[-1].time.timestamp())
    )
    assert metric("seawall_asset_rpo_met", asset="data") == 1
    assert metric("seawall_asset_rpo_met", asset="models") == 0  # 1 s is long gone
    assert metric("seawall_asset_last_backup_added_bytes", asset="data") == data["data_added"]
    assert metric("seawall_asset_size_bytes", asset="data") == data["bytes_total"] == 32_000
    assert metric("seawall_asset_last_backup_duration_seconds", asset="data") == data["duration_s"]
    assert metric("seawall_asset_last_drill_passed", asset="data") == 1
    rto = record["assets"]["data"]["rto_s"]
    assert metric("seawall_asset_last_drill_rto_seconds", asset="data") == rto > 0
    assert (
        metric("seawall_asset_last_drill_rpo_seconds", asset="data")
        == (record["assets"]["data"]["rpo_s"])
    )
    assert ("seawall_asset_last_drill_passed", (("asset", "models"),)) not in got
    assert metric("seawall_asset_suspect", asset="data") == 0
    assert metric("seawall_job_failures_total", kind="backup") == 1
    assert ("seawall_job_failures_total", (("kind", "drill"),)) not in got


def test_alerts_open_once_repeat_later_and_resolve(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    now = [datetime(2025, 6, 1, 12, 0, tzinfo=UTC)]
    dead = "http://127.0.0.1:9/hook/another-s3cr3t"  # nothing listens on port 9
    hooks = Webhooks([receiver.url, dead], backoff=0.01)
    alerter = Alerter(
        StateStore(tmp_path / "state"),
        hooks,
        repeat=timedelta(hours=1),
        context={"plan": "seawall.yaml"},
        clock=lambda: now[0],
    )
    breach = Condition("rpo_breach:data", "rpo_breach", "data", "data: 2h old, over 1h", {"a": 1})
    with caplog.at_level(logging.INFO, logger="seawall.alerts"):
        assert [a.key for a in alerter.update([breach])] == ["rpo_breach:data"]
        now[0] += timedelta(minutes=10)
        assert alerter.update([breach]) == []  # still firing: not sent again
        now[0] += timedelta(minutes=51)
        [again] = alerter.update([breach])  # an hour since it was sent: a reminder
        now[0] += timedelta(minutes=1)
        [resolved] = alerter.update([])
        assert alerter.update([]) == []
        [reopened] = alerter.update([breach])  # it came back: a new alert
        assert hooks.flush(30)
    statuses = [(p["status"], p["repeat"]) for p in receiver.received]
    assert statuses == [("firing", 0), ("firing", 1), ("resolved", None), ("firing", 0)]
    first = receiver.received[0]
    assert first["key"] == "rpo_breach:data" and first["severity"] == "critical"
    assert first["details"] == {"a": 1} and first["plan"] == "seawall.yaml"
    assert first["started"] == "2025-06-01T12:00:00+00:00"
    assert again.sends == 2 and resolved.status == "resolved" and reopened.id != resolved.id
    assert [a.status for a in alerter.alerts()] == ["firing", "resolved"]
    # One log line per send; the dead webhook is named without its secret path.
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert ")]
    assert len(sent) == 8, sent  # 4 sends, and 4 failures to the dead webhook
    assert any("not delivered to the webhook at http://127.0.0.1:9" in m for m in sent)
    assert not any("s3cr3t" in r.getMessage() for r in caplog.records)
    assert hooks.failures[-1][0] == "http://127.0.0.1:9"
    hooks.close()


def _wait_job(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found: dict[str, Any] = client.get(f"/api/v1/jobs/{job['id']}").json()
        return found if found["state"] not in ("queued", "running") else None

    result: dict[str, Any] = wait_until(done, 60, f"job {job['id']}")
    return result


def test_serve_alerts_a_webhook_and_restores_the_last_clean_group(
    tmp_path: Path, receiver: Receiver
) -> None:
    paths = make_dataset(tmp_path)
    make_files(tmp_path / "models", {"model.bin": bytes(range(256)) * 300})
    make_files(tmp_path / "logs", {"app.log": b"started\n" * 100})
    plan = write_plan(
        tmp_path,
        """\
        - {name: dataset, kind: files, paths: [data]}
        - {name: models, kind: files, paths: [models], checks: ["exit 3"]}
        - {name: logs, kind: files, paths: [logs], rpo: 2s}
        """,
        webhooks=[receiver.url],
        replica=True,
    )
    clean = backup_plan(plan, Repository.open(LocalStorage(tmp_path / "repo"), PASSWORD))
    before = tree_digest(tmp_path / "data")
    token = add_users(tmp_path, Role.operator)["operator"].token
    victims = paths[5:13]
    for path in victims:
        encrypt_in_place(path)

    with (
        serve(tmp_path) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client,
    ):
        # A backup that looks like ransomware: the alert names the encrypted files.
        job = client.post("/api/v1/backups", json={"assets": ["dataset"]}).json()
        assert _wait_job(client, job)["state"] == "ok"
        alert = receiver.wait_for(lambda p: p["key"] == "anomaly:dataset")
        assert alert["status"] == "firing" and alert["severity"] == "critical"
        assert "looks like ransomware" in alert["summary"]
        named = {f["path"] for f in alert["details"]["files"]}
        assert named == {f"/data/tables/{p.name}" for p in victims}
        marks = client.get("/api/v1/anomalies").json()
        assert [m["snapshot"] for m in marks] == [alert["details"]["snapshot"]]

        # A plain restore passes over the suspect group: the data comes back clean.
        job = client.post("/api/v1/restores", json={"asset": "dataset"}).json()
        restored = _wait_job(client, job)
        assert restored["state"] == "ok", restored
        assert restored["result"]["group"] == clean.group
        assert tree_digest(Path(restored["result"]["target"]) / "dataset" / "data") == before

        # A drill whose check fails, a backup whose files are gone.
        job = client.post("/api/v1/drills", json={"assets": ["models"]}).json()
        assert _wait_job(client, job)["state"] == "failed"
        alert = receiver.wait_for(lambda p: p["key"] == "drill_failed:models")
        assert "check 1 failed" in alert["summary"]
        shutil.rmtree(tmp_path / "models")
        job = client.post("/api/v1/backups", json={"assets": ["models"]}).json()
        assert _wait_job(client, job)["state"] == "failed"
        alert = receiver.wait_for(lambda p: p["key"] == "backup_failed:models")
        assert "models is missing" in alert["summary"]

        # logs: no copy ever reached the replica, and its RPO of 2 s has passed.
        receiver.wait_for(lambda p: p["key"] == "replica_behind:dr:logs")
        receiver.wait_for(lambda p: p["key"] == "rpo_breach:logs")
        metrics = client.get("/metrics").text
        assert 'seawall_asset_suspect{asset="dataset"} 1.0' in metrics
        assert 'seawall_alerts_firing{kind="anomaly"} 1.0' in metrics
    log = server.stop()
    keys = [p["key"] for p in receiver.received if p["status"] == "firing"]
    # Checked every second, each sent once (dedupe; the plan's repeat is 6 h).
    assert sorted(keys) == sorted(set(keys)), keys
    assert {"anomaly:dataset", "drill_failed:models", "backup_failed:models"} <= set(keys)
    assert "alert firing anomaly:dataset" in log
    assert "s3cr3t" not in log  # the webhook's URL may hold a secret: never logged
