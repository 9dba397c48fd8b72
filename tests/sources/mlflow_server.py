"""A real MLflow tracking server for the tests, and a registry made by real training runs.

The server is ``mlflow server`` in a process group of its own
(seawall.sources.mlflow.MlflowServer) on a free loopback port, with one
worker and without MLflow's background job runner (a tree of Huey workers
the registry does not need), so it starts in seconds and stops whole.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seawall.sources.mlflow import MlflowServer
from tests.s3_server import free_port

#: For the servers and the tests' own MLflow client: no telemetry (no network but
#: loopback), no job runner.
MLFLOW_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
#: Metric timestamps are fixed, so two registries built alike compare equal.
EPOCH_MS = 1_700_000_000_000
MODEL = "fraud-detector"


@contextmanager
def mlflow_server(
    backend_uri: str, artifacts: str | Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[MlflowServer]:
    """A running ``mlflow server`` on the stores; stopped (with all its processes) after."""
    server = MlflowServer(
        backend_uri, str(artifacts), port=free_port(), log=log, env={**MLFLOW_ENV, **(env or {})}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def train(seed: int, steps: int = 8) -> tuple[np.ndarray, list[float]]:
    """A linear fraud score fitted by gradient descent on synthetic transactions (CPU)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 4))
    y = x @ np.array([0.5, -1.0, 2.0, 0.25]) + 0.1 * rng.normal(size=256)
    w = np.zeros(4)
    losses = []
    for _ in range(steps):
        error = x @ w - y
        losses.append(float(np.mean(error**2)))
        w -= 0.1 * 2 * x.T @ error / len(x)
    return w, losses


@dataclass
class Sample:
    experiment_id: str
    #: the two training runs whose models became versions 1 and 2
    run_ids: list[str]
    #: a run moved to the trash (lifecycle_stage "deleted")
    deleted_run: str
    #: an experiment in the trash, and its one run
    deleted_experiment: str
    probe_run: str


def log_training_run(mlflow: Any, experiment_id: str, seed: int, work: Path) -> str:
    """One real training run: params, a loss per step, a NaN point, the model file."""
    from mlflow.entities import Metric, Param, RunTag

    run = mlflow.create_run(experiment_id, run_name=f"train-seed-{seed}")
    run_id: str = run.info.run_id
    weights, losses = train(seed)
    metrics = [Metric("loss", v, EPOCH_MS + step, step) for step, v in enumerate(losses)]
    metrics.append(Metric("grad_norm", math.nan, EPOCH_MS, 0))
    mlflow.log_batch(
        run_id,
        metrics=metrics,
        params=[Param("lr", "0.1"), Param("seed", str(seed)), Param("steps", str(len(losses)))],
        tags=[RunTag("framework", "numpy")],
    )
    model_dir = work / f"model-{seed}"
    model_dir.mkdir(parents=True, exist_ok=True)
    np.save(model_dir / "weights.npy", weights)
    (model_dir / "meta.json").write_text(json.dumps({"features": 4, "seed": seed}))
    mlflow.log_artifacts(run_id, str(model_dir), "model")
    mlflow.set_terminated(run_id)
    return run_id


def populate(uri: str, work: Path) -> Sample:
    """An experiment with two training runs and a trashed one, an experiment in the trash,
    and a registered model whose two versions come from the training runs, with a stage,
    an alias and tags."""
    mlflow = client(uri)
    experiment_id = mlflow.create_experiment("fraud-detection", tags={"team": "risk"})
    run_ids = [log_training_run(mlflow, experiment_id, seed, work) for seed in (1, 2)]
    deleted = mlflow.create_run(experiment_id, run_name="aborted").info.run_id
    mlflow.log_param(deleted, "lr", "5.0")
    mlflow.delete_run(deleted)
    # An experiment in the trash, with its run.
    scratch = mlflow.create_experiment("scratch")
    probe = mlflow.create_run(scratch, run_name="probe").info.run_id
    mlflow.set_terminated(probe)
    mlflow.delete_experiment(scratch)
    mlflow.create_registered_model(MODEL, tags={"owner": "risk"}, description="card fraud")
    for run_id in run_ids:
        version = mlflow.create_model_version(MODEL, f"runs:/{run_id}/model", run_id)
        _wait_ready(mlflow, version.version)
    mlflow.transition_model_version_stage(MODEL, "1", "Production")
    mlflow.set_registered_model_alias(MODEL, "champion", "2")
    mlflow.set_model_version_tag(MODEL, "2", "validated", "true")
    return Sample(experiment_id, run_ids, deleted, scratch, probe)


def _wait_ready(mlflow: Any, version: str) -> None:
    deadline = time.monotonic() + 30
    while mlflow.get_model_version(MODEL, version).status != "READY":
        assert time.monotonic() < deadline, f"model version {version} never became READY"
        time.sleep(0.1)
