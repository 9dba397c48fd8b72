"""Operations through the API, end to end: the bytes restored equal the originals, the
replica holds the copies, retention keeps what it says, and the audit log tells it all."""

from __future__ import annotations

import threading
from pathlib import Path

from seawall.control.audit import AuditLog
from seawall.errors import StorageError
from seawall.plan.runner import list_groups
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from seawall.storage.wrappers import FaultyStorage
from tests.conftest import PASSWORD, reopen, tree_digest
from tests.interfaces.api.conftest import Api

P = "/api/v1"


def _backup(api: Api, assets: list[str] | None = None) -> dict[str, object]:
    r = api.call("POST", f"{P}/backups", "operator", json={"assets": assets})
    assert r.status_code == 202, r.text
    job = api.wait(r.json())
    assert job["state"] == "ok", job
    return job


def test_backup_then_restore_into_the_sandbox_gives_the_same_bytes(api: Api) -> None:
    job = _backup(api)
    result = job["result"]
    assert set(result["snapshots"]) == {"data", "models"}
    assets = {a["name"]: a for a in api.call("GET", f"{P}/assets", "viewer").json()}
    assert assets["data"]["status"]["group"] == result["group"]
    assert assets["data"]["status"]["snapshot"] == result["snapshots"]["data"]
    assert assets["data"]["retention"] == "last 2" and assets["data"]["schedule"] == {}
    assert [g["id"] for g in api.call("GET", f"{P}/groups", "viewer").json()] == [result["group"]]

    r = api.call("POST", f"{P}/restores", "operator", json={"asset": "data"})
    assert r.status_code == 202, r.text
    restored = api.wait(r.json())
    assert restored["state"] == "ok", restored
    target = Path(restored["result"]["target"])
    assert target.parent == api.plane.sandbox
    root = api.setup.root
    assert tree_digest(target / "data" / "data") == tree_digest(root / "data")
    assert not (target / "models").exists()


def test_restore_elsewhere_needs_admin_and_a_code_then_works(api: Api) -> None:
    _backup(api)
    target = api.setup.root / "production"
    body = {"target": str(target)}
    assert api.call("POST", f"{P}/restores", "operator", totp=True, json=body).status_code == 403
    r = api.call("POST", f"{P}/restores", "admin", totp=True, json=body)
    assert r.status_code == 202, r.text
    assert api.wait(r.json())["state"] == "ok"
    for asset in ("data", "models"):
        assert tree_digest(target / asset / asset) == tree_digest(api.setup.root / asset)


def test_a_scheduled_subset_backup_does_not_hide_the_other_asset(api: Api) -> None:
    _backup(api)
    _backup(api, ["models"])  # the newest group lacks data
    r = api.call("POST", f"{P}/restores", "operator", json={"asset": "data"})
    job = api.wait(r.json())
    assert job["state"] == "ok", job
    assert Path(job["result"]["target"], "data", "data", "train.csv").exists()


def test_copy_to_the_replica(api: Api) -> None:
    job = _backup(api)
    r = api.call("POST", f"{P}/copies", "operator", json={"assets": ["data"]})
    copied = api.wait(r.json())
    assert copied["state"] == "ok", copied
    assert copied["result"]["replicas"]["dr"]["copied"] == [job["result"]["snapshots"]["data"]]
    replica = Repository.open(LocalStorage(api.setup.root / "replica"), PASSWORD)
    assert [s.asset["name"] for s in replica.list_snapshots()] == ["data"]


def test_forget_by_retention_then_prune(api: Api) -> None:
    for _ in range(3):
        _backup(api)
    r = api.call("POST", f"{P}/forget", "admin", totp=True, json={})
    job = api.wait(r.json())
    assert job["state"] == "ok", job
    assert len(job["result"]["snapshots"]) == 2  # the oldest of each asset
    snaps = reopen(api.setup.repo).list_snapshots()
    assert len(snaps) == 4
    assert job["result"]["snapshots"][0] not in {s.id.hex() for s in snaps}


def test_overlapping_backups_are_refused_with_409(api: Api) -> None:
    release = threading.Event()
    held = api.plane.jobs.submit(
        "backup", lambda job: release.wait(30) and None, assets=["data"], user="t"
    )
    try:
        r = api.call("POST", f"{P}/backups", "operator", json={"assets": ["data"]})
        assert r.status_code == 409 and held.id in r.json()["error"]
    finally:
        release.set()
    held.done.wait(10)
    assert len(list_groups(reopen(api.setup.repo))) == 0


def test_job_progress_and_listing(api: Api) -> None:
    job = _backup(api)
    listed = api.call("GET", f"{P}/jobs", "viewer", params={"kind": "backup"}).json()
    assert [j["id"] for j in listed] == [job["id"]]
    assert listed[0]["user"] == "operator" and listed[0]["trigger"] == "api"
    assert api.call("GET", f"{P}/jobs/nope", "viewer").status_code == 404


def test_users_and_keys_through_the_api(api: Api) -> None:
    r = api.call("POST", f"{P}/users", "admin", totp=True, json={"name": "erin", "role": "auditor"})
    assert r.status_code == 201, r.text
    erin = r.json()
    assert erin["totp_uri"].startswith("otpauth://totp/")
    who = api.client.get(f"{P}/whoami", headers={"Authorization": f"Bearer {erin['token']}"})
    assert who.json() == {"name": "erin", "role": "auditor"}
    listed = api.call("GET", f"{P}/users", "admin").json()
    assert "erin" in [u["name"] for u in listed] and "token" not in str(listed)
    assert api.call("DELETE", f"{P}/users/erin", "admin", totp=True).status_code == 200
    gone = api.client.get(f"{P}/whoami", headers={"Authorization": f"Bearer {erin['token']}"})
    assert gone.status_code == 401

    r = api.call("POST", f"{P}/keys", "admin", totp=True, json={"password": "second one"})
    assert r.status_code == 201
    new_key = r.json()["id"]
    assert Repository.open(LocalStorage(api.setup.root / "repo"), "second one")
    keys = api.call("GET", f"{P}/keys", "admin").json()
    assert sorted(k["current"] for k in keys) == [False, True]
    assert api.call("DELETE", f"{P}/keys/{new_key[:12]}", "admin", totp=True).status_code == 200
    assert len(api.call("GET", f"{P}/keys", "admin").json()) == 1
    r = api.call("POST", f"{P}/keys", "admin", totp=True, json={"password": ""})
    assert r.status_code == 422


def test_the_audit_log_tells_who_did_what(api: Api) -> None:
    job = _backup(api)
    api.call("POST", f"{P}/forget", "operator", json={})  # denied
    entries = api.call("GET", f"{P}/audit", "auditor").json()
    summary = [(e["user"], e["operation"], e["outcome"]) for e in entries]
    assert summary == [
        ("operator", "backup", "started"),
        ("operator", "backup", "ok"),
        ("operator", "forget", "denied"),
    ]
    ok = entries[1]
    assert ok["assets"] == ["data", "models"] and ok["via"] == "api"
    assert sorted(ok["snapshots"]) == sorted(job["result"]["snapshots"].values())
    assert ok["params"]["job"] == job["id"] and ok["remote"] == "testclient"
    only = api.call("GET", f"{P}/audit", "auditor", params={"outcome": "denied"}).json()
    assert [e["seq"] for e in only] == [3]
    by_op = api.call("GET", f"{P}/audit", "auditor", params={"operation": "backup"}).json()
    assert len(by_op) == 2
    verified = api.call("GET", f"{P}/audit/verify", "auditor").json()
    assert verified["ok"] and verified["entries"] == 3 and verified["head"]["seq"] == 3


def test_an_operation_that_cannot_be_audited_is_not_started(api: Api) -> None:
    def refuse(op: str, name: str) -> None:
        if op == "put" and name.startswith("records/"):
            raise StorageError("the store refuses writes")

    good = api.plane.audit_log.repo
    broken = FaultyStorage(LocalStorage(api.setup.root / "repo"), refuse)
    api.plane._audit = AuditLog(Repository(broken, good.config, good.key, good.key_id))
    r = api.call("POST", f"{P}/backups", "operator", json={})
    assert r.status_code == 503 and "not started" in r.json()["error"]
    assert api.plane.store.rows("SELECT id FROM runs") == []
    assert reopen(api.setup.repo).list_snapshots() == []


def test_a_drill_and_its_report(api: Api) -> None:
    _backup(api)
    r = api.call("POST", f"{P}/drills", "operator", json={"assets": ["data"]})
    assert r.status_code == 202, r.text
    job = api.wait(r.json())
    assert job["state"] == "ok", job
    (report,) = job["result"]["reports"]
    assert report["passed"] and list(report["assets"]) == ["data"]
    reports = api.call("GET", f"{P}/drills", "auditor").json()
    assert len(reports) == 1 and reports[0]["passed"] is True
    status = api.call("GET", f"{P}/assets/data", "viewer").json()["status"]
    assert status["last_drill"]["passed"] is True
    assert not any(api.plane.sandbox.glob("drill-*")), "the drill's sandbox is removed"
