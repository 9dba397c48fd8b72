"""Drills of a whole AI stack: a torch model checked on its golden outputs, a dataset,
SQLite and PostgreSQL databases, and an MLflow registry verified through a fresh
server; and a drill interrupted (SIGTERM, SIGINT) that leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import psycopg
import pytest

from seawall.plan.drill import run_drill
from seawall.plan.model import load_plan
from seawall.plan.runner import backup_plan
from tests.conftest import PASSWORD, make_files
from tests.operations.helpers import SEAWALL, cli_env, random_bytes
from tests.plan.drill_stack import Stack, new_repo, sha256, write_plan
from tests.postgres import PgDatabase, dsn
from tests.sources.mlflow_server import MLFLOW_ENV

TORCH_SMOKE = """\
import torch

def predict(paths, inputs):
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    model.load_state_dict(torch.load(paths[0] / "fraud.pt", weights_only=True))
    model.eval()
    if inputs is None:
        inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        outputs = model(torch.tensor(inputs)).squeeze(1).tolist()
    return {"inputs": inputs, "outputs": outputs}
"""

#: The registry's smoke test: the registered model's weights, found in the artifact
#: store it is given, on golden inputs; it insists on being told where the registry is.
REGISTRY_SMOKE = """\
import json, os, sys
from pathlib import Path
import numpy as np

assert os.environ["MLFLOW_TRACKING_URI"], "no registry"
store = Path(os.environ["SEAWALL_MODEL_PATHS"])
(weights,) = sorted(store.rglob("weights.npy"))
inputs = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]
if os.environ.get("SEAWALL_GOLDEN_INPUTS"):
    inputs = json.loads(Path(os.environ["SEAWALL_GOLDEN_INPUTS"]).read_text())["inputs"]
outputs = (np.array(inputs) @ np.load(weights)).tolist()
result = {"inputs": inputs, "outputs": outputs}
Path(os.environ["SEAWALL_SMOKE_OUTPUT"]).write_text(json.dumps(result))
"""


@pytest.fixture(autouse=True)
def _mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in MLFLOW_ENV.items():
        monkeypatch.setenv(key, value)


def _train_torch_model(path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    x = torch.randn(256, 4)
    y = (x @ torch.tensor([0.5, -1.0, 2.0, 0.25])).unsqueeze(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)


def _registry(root: Path) -> tuple[str, Path]:
    """An MLflow registry written through MlflowClient (no server needed to fill it):
    an experiment, a run with its model file, a registered model with one version."""
    with warnings.catch_warnings():
        # MLflow's own deprecations (its SQLAlchemy loaders), not this test's concern
        warnings.simplefilter("ignore")
        return _fill_registry(root)


def _fill_registry(root: Path) -> tuple[str, Path]:
    from mlflow.tracking import MlflowClient

    backend, artifacts = f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts"
    artifacts.mkdir()
    client = MlflowClient(tracking_uri=backend, registry_uri=backend)
    experiment = client.create_experiment("scoring", artifact_location=f"{artifacts.as_uri()}/1")
    run = client.create_run(experiment, run_name="train")
    work = root / "work"
    work.mkdir()
    np.save(work / "weights.npy", np.array([0.5, -1.0, 2.0]))
    client.log_artifact(run.info.run_id, str(work / "weights.npy"), "model")
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_metric(run.info.run_id, "loss", 0.25, timestamp=1_700_000_000_000, step=1)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("scorer", tags={"owner": "risk"})
    client.create_model_version("scorer", f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias("scorer", "champion", "1")
    return backend, artifacts


def _databases(prefix: str) -> list[str]:
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"]
        ).fetchall()
    return sorted(r[0] for r in rows)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def _pg_table(db: PgDatabase) -> None:
    with db.connect() as conn:
        conn.execute("CREATE TABLE features (user_id int PRIMARY KEY, f1 real, label text)")
        conn.execute(
            "INSERT INTO features SELECT i, i / 7.0, 'u' || i FROM generate_series(1, 800) i"
        )


def _mlflow_asset(backend: str, artifacts: Path, extra: str = "") -> str:
    return f"""\
- name: registry
  kind: mlflow
  backend_uri: {backend}
  artifacts: {artifacts}
  smoke_test:
    command: python3 registry_smoke.py
    timeout: 1m
{textwrap.indent(textwrap.dedent(extra), "  ")}"""


def test_whole_stack_drill_with_models_databases_and_registry(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    _train_torch_model(tmp_path / "models" / "fraud.pt")
    (tmp_path / "torch_smoke.py").write_text(TORCH_SMOKE)
    (tmp_path / "registry_smoke.py").write_text(REGISTRY_SMOKE)
    make_files(tmp_path / "data", {"train.parquet": random_bytes(150_000, 5)})
    import sqlite3

    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE predictions (id INTEGER PRIMARY KEY, score REAL)")
        conn.executemany("INSERT INTO predictions (score) VALUES (?)", [(i,) for i in range(50)])
    conn.close()
    _pg_table(pg_database)
    backend, artifacts = _registry(tmp_path)
    assets = f"""\
- name: dataset
  kind: files
  paths: [data]
- name: fraud-model
  kind: checkpoints
  paths: [models]
  rto: 10m
  smoke_test: {{call: "torch_smoke:predict", rtol: 1e-6, timeout: 2m}}
- name: app-db
  kind: sqlite
  path: app.db
- name: features
  kind: postgres
  dsn: "{pg_database.dsn}"
  checks:
    - name: rows
      command: test "$(psql "$SEAWALL_DATABASE" -tAc 'SELECT count(*) FROM features')" = 800
      timeout: 30s
""" + _mlflow_asset(backend, artifacts)
    stack = Stack(tmp_path, write_plan(tmp_path, assets), new_repo(tmp_path / "repo"))
    group = backup_plan(stack.plan, stack.repo)
    goldens = {
        a.name: a.snapshot.asset["goldens"] for a in group.assets if "goldens" in a.snapshot.asset
    }
    assert set(goldens) == {"fraud-model", "registry"}
    assert len(goldens["fraud-model"]["inputs"]) == 8 and "error" not in goldens["registry"]

    report = run_drill(stack.plan, stack.repositories(), sandbox=tmp_path / "sandbox")

    assert report.passed, report.to_dict()
    checks = {a.name: {c.name for c in a.checks} for a in report.assets}
    assert checks["fraud-model"] == {"bytes", "golden outputs"}
    assert checks["features"] == {"bytes", "tables", "check rows"}
    assert checks["registry"] == {"bytes", "registry", "golden outputs"}
    by_name = {a.name: a for a in report.assets}
    assert [a.name for a in report.assets][-1] == "registry"  # MLflow last, as captured
    model = by_name["fraud-model"]
    assert model.files == {"/models/fraud.pt": sha256(tmp_path / "models" / "fraud.pt")}
    registry_check = next(c for c in by_name["registry"].checks if c.name == "registry")
    assert "1 registered models, 1 model versions" in registry_check.detail
    assert "start mlflow server" in by_name["registry"].steps
    assert by_name["features"].facts["tables"]["public.features"]["rows"] == 800
    # Fresh databases and servers, all gone afterwards; the source database untouched.
    assert _databases(pg_database.name) == [pg_database.name]
    assert _processes_mentioning(str(tmp_path / "sandbox")) == []
    assert list((tmp_path / "sandbox").iterdir()) == []
    record = stack.repo.list_records("drill")[-1]
    assert record["passed"] and record["assets"]["fraud-model"]["files"] == model.files


def test_interrupted_drill_leaves_no_database_server_or_files(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    _pg_table(pg_database)
    (tmp_path / "registry_smoke.py").write_text(REGISTRY_SMOKE)
    backend, artifacts = _registry(tmp_path)
    marker = tmp_path / "check-started"
    blocking = f'touch "{marker}"; sleep 60'
    assets = f"""\
- name: features
  kind: postgres
  dsn: "{pg_database.dsn}"
""" + _mlflow_asset(backend, artifacts, f"checks: ['{blocking}']")
    stack = Stack(tmp_path, write_plan(tmp_path, assets), new_repo(tmp_path / "repo"))
    backup_plan(stack.plan, stack.repo)
    sandbox = tmp_path / "sandbox"
    env = {**cli_env(stack.repo.storage.location, PASSWORD), **MLFLOW_ENV}

    def interrupted(sig: signal.Signals, plan: Path) -> subprocess.CompletedProcess[str]:
        marker.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [SEAWALL, "drill", "--plan", str(plan), "--sandbox", str(sandbox)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the drill never reached its check"
            time.sleep(0.05)
        # Mid-drill: a restored database and, for the registry, a server are up.
        assert len(_databases(pg_database.name)) == 2
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    done = interrupted(signal.SIGTERM, stack.plan_file)
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr
    assert _databases(pg_database.name) == [pg_database.name]
    assert _processes_mentioning(str(sandbox)) == []
    assert _processes_mentioning(str(marker)) == []  # the check was stopped too
    assert list(sandbox.iterdir()) == []
    assert stack.repo.list_records("drill") == []  # an interrupted drill proves nothing

    # Ctrl-C while the database's own check runs, before the registry is restored.
    plan2 = write_plan(
        tmp_path,
        assets.replace(
            f'dsn: "{pg_database.dsn}"\n', f"dsn: \"{pg_database.dsn}\"\n  checks: ['{blocking}']\n"
        ),
        name="plan2.yaml",
    )
    done = interrupted(signal.SIGINT, plan2)
    assert done.returncode == 130, done.stderr
    assert _databases(pg_database.name) == [pg_database.name]
    assert _processes_mentioning(str(sandbox)) == [] and list(sandbox.iterdir()) == []

    # SIGKILL: nothing can run in the dying process. What it left (a restored database,
    # an MLflow server, the sandbox) is undone by the next drill, from its ledger.
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [SEAWALL, "drill", "--plan", str(stack.plan_file), "--sandbox", str(sandbox)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert len(_databases(pg_database.name)) == 2
    assert _processes_mentioning(str(sandbox)) != []  # the orphaned mlflow server
    calm = write_plan(tmp_path, assets.replace(f"checks: ['{blocking}']", ""), name="calm.yaml")
    report = run_drill(load_plan(calm), stack.repo, sandbox=sandbox, record=False)
    assert any("cleaned up after a drill killed" in f for f in report.findings), report.findings
    assert report.passed, report.findings
    assert _databases(pg_database.name) == [pg_database.name]
    assert _processes_mentioning(str(sandbox)) == [] and list(sandbox.iterdir()) == []
