"""Every endpoint is checked: 401 without a valid token, 403 for a role too low or a
destructive operation without a fresh TOTP code, and then nothing has changed."""

from __future__ import annotations

import os
from typing import Any

import pytest

from seawall.control.access import Role
from seawall.plan.runner import list_groups
from tests.conftest import reopen
from tests.control.helpers import code
from tests.interfaces.api.conftest import Api

P = "/api/v1"
#: (method, path, body, lowest role, needs a TOTP code)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str, bool]] = [
    ("GET", f"{P}/whoami", None, "viewer", False),
    ("GET", f"{P}/assets", None, "viewer", False),
    ("GET", f"{P}/assets/data", None, "viewer", False),
    ("GET", f"{P}/groups", None, "viewer", False),
    ("GET", f"{P}/schedule", None, "viewer", False),
    ("GET", f"{P}/jobs", None, "viewer", False),
    ("GET", f"{P}/jobs/nosuchjob", None, "viewer", False),
    ("GET", f"{P}/audit", None, "auditor", False),
    ("GET", f"{P}/audit/verify", None, "auditor", False),
    ("GET", f"{P}/drills", None, "auditor", False),
    ("POST", f"{P}/backups", {}, "operator", False),
    ("POST", f"{P}/restores", {}, "operator", False),
    ("POST", f"{P}/drills", {}, "operator", False),
    ("POST", f"{P}/copies", {}, "operator", False),
    ("POST", f"{P}/jobs/nosuchjob/cancel", None, "operator", False),
    ("GET", f"{P}/users", None, "admin", False),
    ("GET", f"{P}/keys", None, "admin", False),
    ("POST", f"{P}/restores", {"target": "PRODUCTION"}, "admin", True),
    ("POST", f"{P}/restores", {"options": {"data": {"x": "y"}}}, "admin", True),
    ("POST", f"{P}/forget", {}, "admin", True),
    ("POST", f"{P}/forget", {"prune": False}, "admin", True),
    ("POST", f"{P}/prune", None, "admin", True),
    ("POST", f"{P}/users", {"name": "mallory", "role": "admin"}, "admin", True),
    ("DELETE", f"{P}/users/operator", None, "admin", True),
    ("POST", f"{P}/users/admin/token", None, "admin", True),
    ("POST", f"{P}/keys", {"password": "new password"}, "admin", True),
    ("DELETE", f"{P}/keys/00", None, "admin", True),
]
ROLE_NAMES = ["viewer", "auditor", "operator", "admin"]


def _state(api: Api) -> dict[str, Any]:
    """Everything a refused request must leave as it was (the audit log aside)."""
    repo = reopen(api.setup.repo)
    root = api.setup.root
    return {
        "snapshots": sorted(s.id for s in repo.list_snapshots()),
        "groups": [g.id for g in list_groups(repo)],
        "keys": sorted(k.id for k in repo.list_keys()),
        "packs": sorted(i.name for i in repo.storage.list("data/")),
        "replica": sorted(os.listdir(root / "replica" / "snapshots"))
        if (root / "replica" / "snapshots").exists()
        else [],
        "users": [(u.name, u.role) for u in api.plane.users.all()],
        "tokens": api.plane.store.rows("SELECT id, user FROM tokens ORDER BY id"),
        "jobs": api.plane.store.rows("SELECT id FROM runs"),
        "sandbox": sorted(os.listdir(api.plane.sandbox)) if api.plane.sandbox.exists() else [],
        "production": (root / "production").exists(),
    }


def _body(body: dict[str, Any] | None, api: Api) -> dict[str, Any] | None:
    if body and body.get("target") == "PRODUCTION":
        return {"target": str(api.setup.root / "production")}
    return body


def test_refusals_change_nothing_and_are_audited(api: Api) -> None:
    # one backup so that there is something to forget, restore, prune
    api.wait(api.call("POST", f"{P}/backups", "operator", json={}).json())
    before = _state(api)
    refusals = 0
    for method, path, body, lowest, totp in ENDPOINTS:
        json_body = _body(body, api)
        for token in (None, "sw_00000000_" + "x" * 43, "not-a-token"):
            r = api.client.request(
                method,
                path,
                json=json_body,
                headers={"Authorization": f"Bearer {token}"} if token else {},
            )
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
        for role in ROLE_NAMES[: ROLE_NAMES.index(lowest)]:
            # even with a valid code, a role too low is refused (the code is not spent)
            headers = {**api.headers(role), "X-Seawall-TOTP": code(api.users[role])}
            r = api.client.request(method, path, json=json_body, headers=headers)
            assert r.status_code == 403, (method, path, role, r.text)
            assert "needs the" in r.json()["error"]
            refusals += 1
        if totp:
            for headers in ({}, {"X-Seawall-TOTP": "000000"}, {"X-Seawall-TOTP": "abc"}):
                r = api.client.request(
                    method, path, json=json_body, headers={**api.headers("admin"), **headers}
                )
                assert r.status_code == 403, (method, path, r.text)
                assert "TOTP" in r.json()["error"]
                refusals += 1
        assert _state(api) == before, (method, path)
    denied = [e for e in api.plane.audit_log.entries()[0] if e.outcome == "denied"]
    assert len(denied) == refusals
    assert {e.remote for e in denied} == {"testclient"}


def test_a_totp_code_cannot_be_replayed(api: Api) -> None:
    code = api.totp("admin")
    headers = {**api.headers("admin"), "X-Seawall-TOTP": code}
    r = api.client.post(f"{P}/users", json={"name": "carol", "role": "viewer"}, headers=headers)
    assert r.status_code == 201, r.text
    r = api.client.post(f"{P}/users", json={"name": "dave", "role": "viewer"}, headers=headers)
    assert r.status_code == 403 and "works once" in r.json()["error"]
    assert "dave" not in [u.name for u in api.plane.users.all()]


def test_another_users_code_does_not_count(api: Api) -> None:
    headers = {**api.headers("admin"), "X-Seawall-TOTP": api.totp("viewer")}
    r = api.client.delete(f"{P}/users/operator", headers=headers)
    assert r.status_code == 403
    assert "operator" in [u.name for u in api.plane.users.all()]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_each_role_can_do_what_it_should(api: Api, role: str) -> None:
    """The other side of the matrix: what a role may do, it can (reads here; the
    operations in test_operations.py)."""
    for method, path, _body, lowest, _totp in ENDPOINTS:
        if method == "GET" and "nosuchjob" not in path:
            r = api.call(method, path, role)
            allowed = Role[role] >= Role[lowest]
            assert r.status_code == (200 if allowed else 403), (path, role, r.text)


def test_anyone_may_rotate_their_own_token_with_their_code(api: Api) -> None:
    old = api.users["viewer"].token
    r = api.call("POST", f"{P}/users/viewer/token", "viewer")
    assert r.status_code == 403
    r = api.call("POST", f"{P}/users/viewer/token", "viewer", totp=True)
    assert r.status_code == 200, r.text
    new = r.json()["token"]
    assert new != old and r.json()["totp_uri"] is None
    assert (
        api.client.get(f"{P}/whoami", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    )
    who = api.client.get(f"{P}/whoami", headers={"Authorization": f"Bearer {new}"})
    assert who.json() == {"name": "viewer", "role": "viewer"}


def test_token_lifetimes_through_the_api(api: Api) -> None:
    headers = {**api.headers("admin"), "X-Seawall-TOTP": api.totp("admin")}
    body = {"name": "carol", "role": "viewer", "expires_in_days": None}
    r = api.client.post(f"{P}/users", json=body, headers=headers)
    assert r.status_code == 201 and r.json()["token_expires"] is None, r.text
    r = api.call("POST", f"{P}/users/viewer/token", "viewer", totp=True)
    assert r.status_code == 200, r.text
    assert r.json()["token_expires"] > "2026"  # the 90-day default
    bad = {"name": "dave", "role": "viewer", "expires_in_days": -1}
    r = api.client.post(f"{P}/users", json=bad, headers=api.headers("admin"))
    assert r.status_code == 422
    assert "dave" not in [u.name for u in api.plane.users.all()]


def test_the_description_of_the_api_needs_no_token_and_nothing_external(api: Api) -> None:
    schema = api.client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert f"{P}/restores" in paths and f"{P}/audit/verify" in paths
    assert "token" in schema.json()["components"]["securitySchemes"]
    page = api.client.get("/docs")
    assert page.status_code == 200 and f"{P}/backups" in page.text
    for external in ("http://", "https://", "//cdn", "<script"):
        assert external not in page.text.replace("href='/openapi.json'", "")
    assert api.client.get("/redoc").status_code == 404
    assert api.client.get("/health").json() == {"status": "ok"}


def test_clearing_an_anomaly_mark_is_for_an_admin_with_a_code(api: Api) -> None:
    from seawall.plan.anomaly import marks

    repo = api.plane.primary()
    snapshot = "ab" * 32
    repo.save_record(
        "anomaly", {"snapshot": snapshot, "asset": "data", "group": "g1", "summary": "encrypted"}
    )
    path = f"{P}/anomalies/{snapshot[:10]}/clear"
    body = {"reason": "we re-encrypted the archive on purpose"}
    assert api.call("POST", path, "operator", json=body).status_code == 403
    assert api.call("POST", path, "admin", json=body).status_code == 403  # no TOTP code
    assert snapshot in marks(repo)  # nothing changed
    r = api.call("POST", path, "admin", totp=True, json=body)
    assert r.status_code == 200, r.text
    assert marks(repo) == {}
    cleared = [e for e in api.plane.audit_log.entries()[0] if e.operation == "anomalies.clear"]
    assert [e.outcome for e in cleared] == ["denied", "denied", "ok"]
