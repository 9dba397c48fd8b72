"""A control plane over a plan of two file assets (and a replica), one user per role, and
FastAPI's TestClient on its app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seawall.control.access import NewCredentials, Role
from seawall.control.plane import ControlPlane
from seawall.interfaces.api.app import create_app
from tests.control.helpers import ROLES, Setup, code, make_setup


@dataclass
class Api:
    setup: Setup
    plane: ControlPlane
    client: TestClient
    users: dict[str, NewCredentials] = field(default_factory=dict)
    #: TOTP steps already spent per user (a step's code works once)
    _drift: dict[str, int] = field(default_factory=dict)

    def headers(self, role: str | None, *, totp: bool = False) -> dict[str, str]:
        if role is None:
            return {}
        code = self.totp(role) if totp else None  # first: it may move on to a new user
        out = {"Authorization": f"Bearer {self.users[role].token}"}
        if code is not None:
            out["X-Seawall-TOTP"] = code
        return out

    def totp(self, role: str) -> str:
        """A fresh code: drift -1, 0, +1 in turn, then a new user of the role."""
        drift = self._drift.get(role, -1)
        if drift > 1:
            self.users[role] = self.plane.users.add(f"{role}{len(self.users) + 5}", Role[role])
            drift = -1
        self._drift[role] = drift + 1
        return code(self.users[role], drift)

    def call(
        self, method: str, path: str, role: str | None, *, totp: bool = False, **kw: Any
    ) -> Any:
        return self.client.request(method, path, headers=self.headers(role, totp=totp), **kw)

    def wait(self, job: dict[str, Any], role: str = "viewer") -> dict[str, Any]:
        assert self.plane.jobs.wait(job["id"], 60) is not None
        final: dict[str, Any] = self.call("GET", f"/api/v1/jobs/{job['id']}", role).json()
        assert final["state"] not in ("queued", "running"), final
        return final


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    setup = make_setup(tmp_path, replica=True)
    plane = setup.plane()
    plane.start()
    users = {role.name: plane.users.add(role.name, role) for role in ROLES}
    with TestClient(create_app(plane)) as client:
        yield Api(setup, plane, client, users)
    plane.stop()
