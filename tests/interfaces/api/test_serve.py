"""`seawall serve` as a user runs it: over TLS on a real socket, its schedule running real
backups (every two seconds here), then stopped; users, jobs and the audit log from the CLI."""

from __future__ import annotations

import itertools
import json
import signal
import ssl
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from seawall.control.audit import AuditLog
from tests.conftest import PASSWORD, reopen
from tests.control.helpers import make_setup
from tests.interfaces.cli.conftest import SEAWALL, base_env, run
from tests.rest_server import self_signed_cert


def _serve(plan: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [SEAWALL, "serve", "--plan", str(plan), "--listen", "127.0.0.1:0", *args],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"no ready line: {line}{proc.stderr.read()}")
    return proc, line.split(" on ", 1)[1].split(" ", 1)[0]


def test_serve_over_tls_runs_its_schedule_without_overlap(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, schedule="{backup: '* * * * * */2'}")
    plan = tmp_path / "seawall.yaml"
    env = base_env(SEAWALL_PASSWORD=PASSWORD)
    added = run("user", "add", "root", "--role", "admin", "--plan", plan, "--json", env=env)
    assert added.code == 0, added
    token = added.json()["token"]
    cert, key = self_signed_cert(tmp_path / "tls")

    proc, url = _serve(plan, "--tls-cert", str(cert), "--tls-key", str(key), env=env)
    try:
        assert url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=context, timeout=10) as client:
            auth = {"Authorization": f"Bearer {token}"}
            assert client.get("/api/v1/whoami", headers=auth).json()["role"] == "admin"
            assert client.get("/api/v1/whoami").status_code == 401
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = client.get("/api/v1/jobs", headers=auth, params={"state": "ok"}).json()
                if len(done) >= 2:
                    break
                time.sleep(0.3)
            assert len(done) >= 2, done
            schedule = client.get("/api/v1/schedule", headers=auth).json()
            assert {s["asset"] for s in schedule} == {"data", "models"}
        with pytest.raises(httpx.ConnectError):  # a client that does not trust it
            httpx.get(url + "health", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in err, err

    jobs = run("jobs", "--plan", plan, "--json", env=env).json()
    backups = sorted((j for j in jobs if j["kind"] == "backup"), key=lambda j: j["created"])
    assert len(backups) >= 2 and all(j["trigger"] == "schedule" for j in backups)
    finished = [j for j in backups if j["state"] == "ok"]
    spans = [
        (datetime.fromisoformat(j["started"]), datetime.fromisoformat(j["finished"]))
        for j in finished
    ]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "one backup of the same assets never starts beside another"
    groups = {s.asset["group"] for s in reopen(setup.repo).list_snapshots()}
    assert len(groups) >= len(finished)

    log = run("audit", "log", "--plan", plan, "--json", env=env).json()
    assert log[0]["operation"] == "user.add" and log[0]["via"] == "cli"
    assert log[0]["params"]["name"] == "root" and token not in json.dumps(log)
    assert {e["user"] for e in log[1:]} == {"scheduler"}
    verified = run("audit", "verify", "--plan", plan, "--json", env=env)
    assert verified.code == 0, verified
    assert verified.json()["ok"] and verified.json()["anchored"]
    assert AuditLog(reopen(setup.repo)).entries()[0][-1].seq == len(log)


def test_plain_http_on_a_public_address_is_warned_about(tmp_path: Path) -> None:
    make_setup(tmp_path)
    result = run(
        "serve",
        "--plan",
        tmp_path / "seawall.yaml",
        "--listen",
        "0.0.0.0:0",
        env=base_env(SEAWALL_PASSWORD="wrong password"),
    )
    assert result.code == 12, result  # the wrong password stops it before it listens
    assert "plain HTTP" in result.err and "--tls-cert" in result.err


def test_half_a_tls_setup_is_refused(tmp_path: Path) -> None:
    make_setup(tmp_path)
    cert, _key = self_signed_cert(tmp_path / "tls")
    result = run(
        "serve",
        "--plan",
        tmp_path / "seawall.yaml",
        "--tls-cert",
        cert,
        env=base_env(SEAWALL_PASSWORD=PASSWORD),
    )
    assert result.code == 2 and "both --tls-cert and --tls-key" in result.err
