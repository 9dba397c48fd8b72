"""Lineage: each model version captured from MLflow names the snapshots of its group's
datasets and environment, in the snapshot and in `seawall snapshots --json` / `ls`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from seawall.plan.runner import backup_plan
from seawall.repository.repo import Repository
from tests.conftest import PASSWORD, make_files, reopen
from tests.operations.helpers import SEAWALL
from tests.plan.test_runner import _plan

pytestmark = [
    # MLflow's own deprecations (model stages, SQLAlchemy loader options).
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
]
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def _registry(root: Path) -> tuple[str, str, list[str]]:
    """An MLflow SQLite registry with model 'fraud' at versions 1 and 2, each from a run
    that fitted weights on a dataset."""
    from mlflow.tracking import MlflowClient

    backend = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "mlartifacts"
    client = MlflowClient(tracking_uri=backend, registry_uri=backend)
    experiment = client.create_experiment("fraud", artifact_location=str(artifacts / "1"))
    client.create_registered_model("fraud")
    runs = []
    rng = np.random.default_rng(3)
    for version in (1, 2):
        run = client.create_run(experiment)
        x = rng.normal(size=(64, 3))
        w = np.linalg.lstsq(x, x @ np.array([1.0, -2.0, 0.5]), rcond=None)[0]
        weights = root / f"weights-{version}.npy"
        np.save(weights, w)
        client.log_param(run.info.run_id, "rows", 64)
        client.log_artifact(run.info.run_id, str(weights), "model")
        client.set_terminated(run.info.run_id)
        client.create_model_version("fraud", f"{run.info.artifact_uri}/model", run.info.run_id)
        runs.append(run.info.run_id)
    return backend, str(artifacts), runs


def test_model_versions_name_their_datasets_and_environment(
    local_repo: tuple[Path, Repository], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in MLFLOW_ENV.items():
        monkeypatch.setenv(key, value)
    repo_path, repo = local_repo
    root = tmp_path / "stack"
    make_files(root / "data", {"transactions.csv": b"amount,label\n12.5,0\n900,1\n"})
    backend, artifacts, runs = _registry(root)
    plan = _plan(
        root,
        repo_path,
        f"""\
        - {{name: registry, kind: mlflow, backend_uri: "{backend}", artifacts: "{artifacts}"}}
        - {{name: transactions, kind: files, paths: [data]}}
        - {{name: runtime, kind: environment}}
        """,
    )
    result = backup_plan(plan, repo)
    ids = {a.name: a.snapshot.id.hex() for a in result.assets}
    registry = reopen(repo).load_snapshot(bytes.fromhex(ids["registry"]))
    versions = registry.asset["lineage"]["model_versions"]
    assert sorted((v["name"], str(v["version"]), v["run_id"]) for v in versions) == [
        ("fraud", "1", runs[0]),
        ("fraud", "2", runs[1]),
    ]
    for version in versions:
        assert version["datasets"] == {"transactions": ids["transactions"]}
        assert version["environment"] == {"runtime": ids["runtime"]}

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")},
        "SEAWALL_REPOSITORY": str(repo_path),
        "SEAWALL_PASSWORD": PASSWORD,
    }
    shown = subprocess.run(
        [SEAWALL, "snapshots", "--json"], env=env, capture_output=True, text=True, check=True
    )
    by_id = {s["id"]: s for s in json.loads(shown.stdout)}
    assert by_id[ids["registry"]]["asset"]["lineage"]["model_versions"] == versions
    assert by_id[ids["transactions"]]["asset"]["group"] == result.group
    listed = subprocess.run(
        [SEAWALL, "ls", ids["registry"][:12]], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert listed[0].startswith(f"asset registry (mlflow) of group {result.group[:8]}")
    assert (
        f"model fraud version 1 (run {runs[0]}): datasets transactions {ids['transactions'][:8]}; "
        f"environment runtime {ids['runtime'][:8]}"
    ) in listed
