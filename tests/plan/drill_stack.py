"""Small real AI stacks for drills: a plan file, its assets, a repository, replicas.

The model of the quick stack is a linear scorer saved with numpy; its smoke
test (``smoke.py`` beside the plan) multiplies recorded inputs by the
restored weights and adds the offset in ``offset.txt`` (a test changes it to
play a model that no longer gives what it gave at backup time).
"""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seawall.operations.copy import copy
from seawall.plan.drill import Repositories
from seawall.plan.model import Plan, load_plan
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files
from tests.operations.helpers import random_bytes

SMOKE = """\
import numpy as np
from pathlib import Path

def predict(paths, inputs):
    weights = np.load(paths[0] / "w.npy")
    offset = float((Path(__file__).parent / "offset.txt").read_text())
    if inputs is None:
        inputs = np.random.default_rng(7).normal(size=(6, 3)).tolist()
    return {"inputs": inputs, "outputs": (np.array(inputs) @ weights + offset).tolist()}
"""


@dataclass
class Stack:
    root: Path
    plan_file: Path
    repo: Repository
    replicas: dict[str, Repository] = field(default_factory=dict)

    @property
    def plan(self) -> Plan:
        return load_plan(self.plan_file)

    def repositories(self) -> Repositories:
        return Repositories(self.plan, PASSWORD)


def new_repo(path: Path) -> Repository:
    return Repository.init(
        LocalStorage(path), PASSWORD, kdf=FAST_KDF, chunker=SMALL_CHUNKS, pack_size=SMALL_PACK
    )


def write_plan(
    root: Path, assets: str, *, replicas: Sequence[str] = (), name: str = "seawall.yaml"
) -> Path:
    lines = ["version: 1", "repositories:", "  primary:", "    location: repo"]
    if replicas:
        lines.append("  replicas:")
        lines += [f"    - {{name: {r}, location: {r}}}" for r in replicas]
    lines.append("assets:")
    path = root / name
    path.write_text("\n".join(lines) + "\n" + textwrap.indent(textwrap.dedent(assets), "  "))
    return path


def quick_assets(root: Path) -> str:
    """Files, a numpy model with a smoke test, and a SQLite database."""
    make_files(
        root / "data", {"train.csv": b"a,b\n1,2\n" * 500, "img/x.png": random_bytes(90_000, 3)}
    )
    (root / "ckpt").mkdir(exist_ok=True)
    np.save(root / "ckpt" / "w.npy", np.random.default_rng(1).normal(size=(3, 2)))
    (root / "smoke.py").write_text(SMOKE)
    (root / "offset.txt").write_text("0.0")
    with sqlite3.connect(root / "app.db") as conn:
        conn.execute("CREATE TABLE scores (id INTEGER PRIMARY KEY, score REAL)")
        conn.executemany("INSERT INTO scores (score) VALUES (?)", [(i / 3,) for i in range(300)])
    conn.close()
    return """\
    - name: dataset
      kind: files
      paths: [data]
    - name: weights
      kind: checkpoints
      paths: [ckpt]
      smoke_test: smoke:predict
    - name: app-db
      kind: sqlite
      path: app.db
    """


def quick_stack(root: Path, *, replicas: Sequence[str] = (), extra: str = "") -> Stack:
    """The quick stack backed up once, and copied to each replica."""
    from seawall.plan.runner import backup_plan

    assets = textwrap.dedent(quick_assets(root)) + textwrap.dedent(extra)
    plan_file = write_plan(root, assets, replicas=replicas)
    stack = Stack(root, plan_file, new_repo(root / "repo"))
    backup_plan(stack.plan, stack.repo)
    for name in replicas:
        stack.replicas[name] = new_repo(root / name)
        copy(stack.repo, stack.replicas[name])
    return stack


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def objects(path: Path) -> dict[str, str]:
    """Every object of a local repository (but locks) -> its SHA-256."""
    return {
        str(p.relative_to(path)): sha256(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and not str(p.relative_to(path)).startswith("locks")
    }
