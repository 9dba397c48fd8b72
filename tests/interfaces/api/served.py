"""A real ``seawall serve`` over a real plan and repository, and a real webhook receiver.

Used by the dashboard's browser tests and the alert and anomaly tests: the
server runs as a user runs it (a subprocess on a loopback port), the
receiver is a plain HTTP server in the test's process collecting what the
server POSTs.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from seawall.control.access import NewCredentials, Role, Users
from seawall.control.store import StateStore
from seawall.plan.model import Plan, load_plan
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK
from tests.interfaces.cli.conftest import SEAWALL, base_env

#: Where a copy of each screenshot goes, for people to look at.
SCREENS = Path("/tmp/seawall-screens")


def write_plan(
    root: Path, assets: str, *, webhooks: Sequence[str] = (), replica: bool = False
) -> Plan:
    """A plan of ``assets`` (YAML list items) over ``root/repo`` (and ``root/replica``)."""
    for name in ["repo", *(["replica"] if replica else [])]:
        Repository.init(
            LocalStorage(root / name),
            PASSWORD,
            kdf=FAST_KDF,
            chunker=SMALL_CHUNKS,
            pack_size=SMALL_PACK,
        )
    replicas = "\n  replicas: [{name: dr, location: replica}]" if replica else ""
    hooks = ", ".join(webhooks)
    text = (
        "version: 1\nrepositories:\n  primary: {location: repo}"
        + replicas
        + f"\nalerts: {{webhooks: [{hooks}], check_every: 1s}}\nassets:\n"
        + textwrap.indent(textwrap.dedent(assets), "  ")
    )
    (root / "seawall.yaml").write_text(text)
    return load_plan(root / "seawall.yaml")


def add_users(root: Path, *roles: Role) -> dict[str, NewCredentials]:
    """One user per role in the state directory ``seawall serve`` will use."""
    users = Users(StateStore(root / "state"))
    return {role.name: users.add(role.name, role) for role in roles}


class Server:
    """A running ``seawall serve``; everything it prints to stderr is kept in ``log``."""

    def __init__(self, url: str, proc: subprocess.Popen[str], first: str) -> None:
        self.url, self.proc, self.log = url, proc, [first]
        assert proc.stderr is not None
        self._stderr = proc.stderr
        # All of it is read (alert log lines), so it never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stderr:
            self.log.append(line)

    def stop(self) -> str:
        """Stop it as a user does (SIGTERM); everything it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        if not self._stderr.closed:
            self._stderr.close()
        return "".join(self.log)


@contextmanager
def serve(root: Path) -> Iterator[Server]:
    """``seawall serve --plan root/seawall.yaml`` on a free loopback port."""
    proc = subprocess.Popen(
        [
            SEAWALL,
            "serve",
            "--plan",
            str(root / "seawall.yaml"),
            "--state-dir",
            str(root / "state"),
            "--listen",
            "127.0.0.1:0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=base_env(SEAWALL_PASSWORD=PASSWORD),
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        rest = proc.stderr.read()
        proc.wait()
        proc.stderr.close()
        raise AssertionError(f"seawall serve did not start: {line}{rest}")
    server = Server(line.split(" on ", 1)[1].split(" ", 1)[0].rstrip("/"), proc, line)
    try:
        yield server
    finally:
        server.stop()


class Receiver:
    """A webhook receiver on loopback: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/s3cr3t-path"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(
        self, test: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for payload in list(self.received):
                if test(payload):
                    return payload
            time.sleep(0.1)
        raise AssertionError(f"no such alert within {timeout}s; received: {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(test: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or test}")


def keep_screenshot(path: Path) -> None:
    """A copy of a screenshot taken into the test's directory, for people to look at."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / path.name)
