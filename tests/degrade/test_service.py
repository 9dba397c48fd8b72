"""The example service under traffic while its primary model server is killed: every
request is answered, the answers degrade, the breaker opens, and traffic goes back to
the primary once it is up again."""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples.degrade_service.app import create_app
from examples.degrade_service.model import (
    FEATURES,
    PrimaryModel,
    SmallModel,
    accuracy,
    train_primary,
    train_small,
)
from examples.degrade_service.primary import spawn
from examples.degrade_service.serve import serve_in_thread
from prometheus_client import CollectorRegistry

from seawall.degrade import PredictionCache, load_drilled_model
from seawall.operations.backup import backup
from seawall.repository.repo import Repository


class PrimaryServer:
    """The primary model server as a process of its own, on a fixed loopback port."""

    def __init__(self, weights: Path, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.weights = weights
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = spawn(self.weights, self.port, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@dataclass
class Result:
    started: float
    ended: float
    step: str  # or "FAILED: why"
    decision: str = ""


class Traffic:
    """Clients sending transactions to the service from threads until stopped: mostly
    ones seen before (the cache can answer), some new."""

    def __init__(self, url: str, clients: int = 6) -> None:
        rng = random.Random(0)
        self.known = [[rng.gauss(0, 1) for _ in range(FEATURES)] for _ in range(40)]
        self.results: list[Result] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(url, seed)) for seed in range(clients)
        ]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _client(self, url: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self._stop.is_set():
                if rng.random() < 0.7:
                    features = rng.choice(self.known)
                else:
                    features = [rng.gauss(0, 1) for _ in range(FEATURES)]
                started = time.monotonic()
                try:
                    response = client.post("/predict", json={"features": features})
                    body = response.json()
                    if response.status_code == 200:
                        result = Result(started, time.monotonic(), body["step"], body["decision"])
                    else:
                        result = Result(started, time.monotonic(), f"FAILED: {body}")
                except Exception as err:
                    result = Result(started, time.monotonic(), f"FAILED: {err!r}")
                self.results.append(result)

    def wait_for(self, what: str, condition: Callable[[list[Result]], bool]) -> None:
        deadline = time.monotonic() + 60
        while not condition(list(self.results)):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[PrimaryServer]:
    server = PrimaryServer(train_primary(tmp_path / "primary.npz"), tmp_path / "primary.log")
    yield server
    server.stop()


def drilled_small_model(repo: Repository, tmp_path: Path) -> SmallModel:
    """The small model as the service gets it: from the repository, as a drill passed it."""
    weights = train_small(tmp_path / "models" / "small.npz")
    snap = backup(repo, [weights.parent]).snapshot
    files = {str(weights): hashlib.sha256(weights.read_bytes()).hexdigest()}
    entry = {"snapshot": snap.id.hex(), "passed": True, "files": files}
    repo.save_record("drill", {"passed": True, "assets": {"fraud-small": entry}})
    weights.unlink()  # only the repository has it now
    return load_drilled_model(repo, "fraud-small", str(weights), tmp_path / "out", SmallModel).model


def test_killing_the_primary_mid_traffic(
    primary: PrimaryServer, local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    small = drilled_small_model(local_repo[1], tmp_path)
    # Real models: the primary is the better one, so falling back is a real degradation.
    assert accuracy(PrimaryModel(primary.weights).score) > accuracy(small.score) > 0.7
    primary.start()
    registry = CollectorRegistry()

    def metric(name: str, **labels: str) -> float:
        value = registry.get_sample_value(name, {"chain": "fraud", **labels})
        return 0.0 if value is None else value

    def breaker(client: httpx.Client) -> str:
        return str(client.get("/health").json()["breakers"]["primary"])

    with (
        PredictionCache(tmp_path / "cache.sqlite") as cache,
        serve_in_thread(
            # A generous timeout: on a loaded test machine the healthy primary stays healthy.
            create_app(
                primary.url, small, cache, registry=registry, primary_timeout=2, cooldown=0.5
            )
        ) as url,
        httpx.Client(base_url=url) as client,
        Traffic(url) as traffic,
    ):
        traffic.wait_for("answers from the primary", lambda r: len(r) >= 150)
        healthy_share = metric("seawall_degrade_degraded_share")

        primary.kill()
        killed = time.monotonic()
        traffic.wait_for("degraded answers", lambda r: sum(x.started > killed for x in r) >= 300)
        assert breaker(client) in ("open", "half_open")  # half open: trying it again
        assert 'seawall_degrade_breaker_state{chain="fraud",state="closed",step="primary"} 0.0' in (
            client.get("/metrics").text
        )
        outage_share = metric("seawall_degrade_degraded_share")

        primary.start()
        restarted = time.monotonic()
        traffic.wait_for(
            "the primary to answer again",
            lambda r: sum(x.started > restarted and x.step == "primary" for x in r) >= 100,
        )
        assert breaker(client) == "closed"
        recovered_share = metric("seawall_degrade_degraded_share")

    results = traffic.results
    failed = [r.step for r in results if r.step.startswith("FAILED")]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:3]}"
    assert all(r.decision in ("approve", "decline", "review") for r in results)

    before = [r for r in results if r.ended < killed]
    outage = [r for r in results if killed < r.started and r.ended < restarted]
    after = [r for r in results if r.started > restarted]
    assert sum(r.step == "primary" for r in before) >= 0.95 * len(before)
    assert len(outage) >= 300 and {r.step for r in outage} <= {"cache", "small", "default"}
    assert {"cache", "small"} <= {r.step for r in outage}  # known inputs: cached
    assert after[-50:] and all(r.step == "primary" for r in after[-50:])
    assert healthy_share < 0.1 and outage_share > 0.5 and recovered_share < outage_share

    # While open, the breaker kept requests off the dead primary: only trial calls reached it.
    tried = sum(
        metric("seawall_degrade_step_calls_total", step="primary", outcome=o)
        for o in ("error", "timeout")
    )
    rejected = metric("seawall_degrade_step_calls_total", step="primary", outcome="rejected")
    assert rejected >= len(outage) - tried and tried < len(outage) / 4
    assert metric("seawall_degrade_cache_lookups_total", step="cache", result="hit") > 0
