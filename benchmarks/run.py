"""Benchmark seawall against restic and borg on one generated AI corpus.

For each tool, each repetition uses a fresh repository and measures: initial backup, unchanged
re-backup, incremental backup after small changes, full restore of the latest snapshot into an
empty directory, repository size after each backup, and the peak RSS of every step. A plain
``cp -a`` of the same tree is the restore baseline. Medians over the repetitions are reported.

Usage: python benchmarks/run.py --scale 1 --repeat 3 [--only seawall,restic] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from corpus import MB, SEED, ChangeLog, apply_small_changes, build_corpus, revert_small_changes

PASSWORD = "benchmark-password-not-secret"
STEPS = ("initial", "unchanged", "incremental", "restore")
STEP_TITLES = {
    "initial": "initial backup",
    "unchanged": "unchanged re-backup",
    "incremental": "incremental backup",
    "restore": "full restore",
}
BACKUP_STEPS = STEPS[:3]
TOOL_ORDER = ("seawall", "restic", "borg")
APT_HINT = "install it with `apt-get install -y restic borgbackup` (or `bash benchmarks/setup.sh`)"
CACHE_NOTE = (
    "page cache not dropped (needs root, unsafe on a shared machine): every step reads a warm "
    "corpus; os.sync() runs before each timed step so earlier writes are not flushed inside it"
)
HASH_SAMPLE = 100
TIME_BINARY = "/usr/bin/time"
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"  # git-ignored
TOOL_ENV_PREFIXES = ("SEAWALL_", "RESTIC_", "BORG_")
Medians = dict[str, dict[str, dict[str, float]]]  # who -> step -> metric -> value


class BenchmarkError(RuntimeError):
    pass


# --- running commands --------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_kb: int


def _describe(argv: list[str], cwd: Path | None, code: int, log: Path) -> str:
    tail = log.read_text(errors="replace").splitlines()[-30:]
    where = f" (in {cwd})" if cwd else ""
    return f"command failed with exit code {code}{where}:\n  {' '.join(argv)}\n" + "\n".join(
        "  | " + line for line in tail
    )


def measure(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Measurement:
    """Run argv to completion; wall time and peak RSS as reported by GNU time.

    GNU time is the parent because a child forked from this (large) Python process would
    inherit its RSS high-water mark, which wait4 would then report.
    """
    os.sync()
    rss_file = log.with_suffix(".rss")
    timed_argv = [TIME_BINARY, "-f", "%M", "-o", str(rss_file), *argv]
    with log.open("wb") as out:
        start = time.perf_counter()
        code = subprocess.call(
            timed_argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        seconds = time.perf_counter() - start
    if code != 0:
        raise BenchmarkError(_describe(argv, cwd, code, log))
    return Measurement(seconds, int(rss_file.read_text().split()[-1]))  # KiB


def output_of(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BenchmarkError(
            f"command failed with exit code {proc.returncode}:\n  {' '.join(argv)}\n"
            + proc.stdout[-2000:]
            + proc.stderr[-2000:]
        )
    return proc.stdout


def du_bytes(path: Path) -> int:
    return int(output_of(["du", "-sb", str(path)]).split()[0])


# --- tools -------------------------------------------------------------------------------


class Tool(ABC):
    name: ClassVar[str]

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @abstractmethod
    def env(self, state: Path) -> dict[str, str]: ...

    @abstractmethod
    def init(self, repo: Path) -> list[str]: ...

    @abstractmethod
    def backup(self, repo: Path, source: Path, name: str) -> list[str]: ...

    @abstractmethod
    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        """argv and working directory that restore snapshot `name` (the latest) into target."""

    @abstractmethod
    def snapshots(self, repo: Path) -> list[str]: ...

    def count_snapshots(self, listing: str) -> int:
        parsed = json.loads(listing)
        if isinstance(parsed, dict):
            parsed = parsed.get("snapshots", parsed.get("archives", []))
        return len(parsed)

    def version(self) -> str:
        try:
            return output_of([self.binary, "--version"]).strip().splitlines()[0]
        except (BenchmarkError, IndexError):
            return "unknown"


class Restic(Tool):
    name = "restic"

    def env(self, state: Path) -> dict[str, str]:
        return {"RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(state / "cache")}

    def init(self, repo: Path) -> list[str]:
        return [self.binary, "-r", str(repo), "init"]

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        return [self.binary, "-r", str(repo), "backup", "--compression", "auto", str(source)]

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        return [self.binary, "-r", str(repo), "restore", "latest", "--target", str(target)], None

    def snapshots(self, repo: Path) -> list[str]:
        return [self.binary, "-r", str(repo), "snapshots", "--json"]

    def version(self) -> str:
        return output_of([self.binary, "version"]).strip()


class Borg(Tool):
    name = "borg"

    def env(self, state: Path) -> dict[str, str]:
        return {
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_BASE_DIR": str(state),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        }

    def init(self, repo: Path) -> list[str]:
        return [self.binary, "init", "--encryption=repokey-blake2", str(repo)]

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        return [self.binary, "create", "--compression", "zstd,3", f"{repo}::{name}", str(source)]

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        return [self.binary, "extract", f"{repo}::{name}"], target

    def snapshots(self, repo: Path) -> list[str]:
        return [self.binary, "list", "--json", str(repo)]


class Seawall(Tool):
    name = "seawall"

    def env(self, state: Path) -> dict[str, str]:
        return {"SEAWALL_PASSWORD": PASSWORD}

    def init(self, repo: Path) -> list[str]:
        return [self.binary, "--repo", str(repo), "init"]

    def backup(self, repo: Path, source: Path, name: str) -> list[str]:
        return [self.binary, "--repo", str(repo), "backup", str(source)]

    def restore(self, repo: Path, target: Path, name: str) -> tuple[list[str], Path | None]:
        return [
            self.binary,
            "--repo",
            str(repo),
            "restore",
            "latest",
            "--target",
            str(target),
        ], None

    def snapshots(self, repo: Path) -> list[str]:
        return [self.binary, "--repo", str(repo), "snapshots", "--json"]


def default_seawall() -> str:
    on_path = shutil.which("seawall")
    return on_path or str(Path(sys.executable).parent / "seawall")


def make_tools(only: list[str], seawall_binary: str) -> list[Tool]:
    if not os.access(TIME_BINARY, os.X_OK):
        raise BenchmarkError(f"{TIME_BINARY} is missing: apt-get install -y time")
    classes: dict[str, type[Tool]] = {"seawall": Seawall, "restic": Restic, "borg": Borg}
    tools = []
    for name in only:
        if name not in classes:
            raise BenchmarkError(f"unknown tool {name!r}; choose from {', '.join(TOOL_ORDER)}")
        binary = seawall_binary if name == "seawall" else shutil.which(name)
        if binary is None:
            raise BenchmarkError(f"{name} is not installed: {APT_HINT}")
        if name == "seawall" and shutil.which(binary) is None:
            raise BenchmarkError(
                f"seawall CLI not found at {binary}: install the package into this Python "
                "(pip install -e .) or pass --seawall PATH"
            )
        tools.append(classes[name](binary))
    return tools


# --- restore verification ----------------------------------------------------------------


def listing(root: Path) -> dict[str, int]:
    sizes = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            sizes[str(path.relative_to(root))] = path.lstat().st_size
    return sizes


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _must_hash(source: Path, changed: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in changed:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        names.update(str(p.relative_to(source)) for p in files)
    return names


def verify_restore(source: Path, restored: Path, changed: list[Path]) -> None:
    """Same file set and sizes; same sha256 for the changed files and a random sample."""
    expected, got = listing(source), listing(restored)
    if expected.keys() != got.keys():
        missing = sorted(expected.keys() - got.keys())[:5]
        extra = sorted(got.keys() - expected.keys())[:5]
        raise BenchmarkError(
            f"restore of {source} into {restored} differs: {len(expected)} files expected, "
            f"{len(got)} restored; missing e.g. {missing}, unexpected e.g. {extra}"
        )
    wrong_size = [name for name, size in expected.items() if got[name] != size]
    if wrong_size:
        raise BenchmarkError(f"restored files have the wrong size: {wrong_size[:5]}")
    sample = random.Random(SEED).sample(sorted(expected), min(HASH_SAMPLE, len(expected)))
    for name in sorted(_must_hash(source, changed).union(sample)):
        if sha256(source / name) != sha256(restored / name):
            raise BenchmarkError(f"restored file has different content: {restored / name}")


# --- one benchmark run -------------------------------------------------------------------


@dataclass
class Samples:
    seconds: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    peak_rss_kb: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    repo_bytes: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, step: str, m: Measurement) -> None:
        self.seconds[step].append(m.seconds)
        self.peak_rss_kb[step].append(m.peak_rss_kb)


@dataclass
class Bench:
    workdir: Path
    corpus: Path
    keep: bool
    step_bytes: dict[str, int] = field(default_factory=dict)
    samples: dict[str, Samples] = field(default_factory=lambda: defaultdict(Samples))

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def timed(self, who: str, step: str, argv: list[str], env: dict[str, str], **kw: Any) -> None:
        m = measure(argv, env, self.workdir / f"{who}-{step}.log", **kw)
        self.samples[who].add(step, m)
        rate = self.step_bytes[step] / MB / m.seconds
        self.log(
            f"  {who:8} {step:12} {m.seconds:8.2f} s {rate:8.1f} MB/s"
            f"  rss {m.peak_rss_kb / 1024:7.1f} MB"
        )

    def cleanup(self, path: Path) -> None:
        if not self.keep:
            shutil.rmtree(path, ignore_errors=True)


def restored_root(target: Path, source: Path) -> Path:
    # restic, borg and seawall all recreate the absolute source path under the target.
    return target / source.relative_to(source.anchor)


def clean_environ() -> dict[str, str]:
    # A user's RESTIC_REPOSITORY, BORG_REPO, SEAWALL_PASSWORD_FILE... must not leak into runs.
    return {k: v for k, v in os.environ.items() if not k.startswith(TOOL_ENV_PREFIXES)}


def run_tool_cycle(bench: Bench, tool: Tool, rep: int) -> None:
    base = bench.workdir / f"{tool.name}-{rep}"
    repo, state, target = base / "repo", base / "state", base / "restore"
    shutil.rmtree(base, ignore_errors=True)  # left over by an earlier failed run
    state.mkdir(parents=True)
    env = {**clean_environ(), "XDG_CACHE_HOME": str(state / "xdg-cache"), **tool.env(state)}
    try:
        output_of(tool.init(repo), env)
        for step, snapshot in (("initial", "snap-1"), ("unchanged", "snap-2")):
            bench.timed(tool.name, step, tool.backup(repo, bench.corpus, snapshot), env)
            bench.samples[tool.name].repo_bytes[step].append(du_bytes(repo))
        changes = apply_small_changes(bench.corpus)
        try:
            bench.timed(tool.name, "incremental", tool.backup(repo, bench.corpus, "snap-3"), env)
            bench.samples[tool.name].repo_bytes["incremental"].append(du_bytes(repo))
            check_snapshot_count(tool, repo, env, 3)
            restore_and_verify(bench, tool, repo, target, env, changes)
        finally:
            revert_small_changes(changes)
    except BaseException:
        bench.log(f"  {tool.name} failed; its repository and restore are kept in {base}")
        raise
    bench.cleanup(base)


def check_snapshot_count(tool: Tool, repo: Path, env: dict[str, str], expected: int) -> None:
    found = tool.count_snapshots(output_of(tool.snapshots(repo), env))
    if found != expected:
        raise BenchmarkError(
            f"{tool.name}: expected {expected} snapshots, repository lists {found}"
        )


def restore_and_verify(
    bench: Bench, tool: Tool, repo: Path, target: Path, env: dict[str, str], changes: ChangeLog
) -> None:
    target.mkdir()
    argv, cwd = tool.restore(repo, target, "snap-3")
    bench.timed(tool.name, "restore", argv, env, cwd=cwd)
    verify_restore(bench.corpus, restored_root(target, bench.corpus), changes.changed_paths())


def run_copy_baseline(bench: Bench, rep: int) -> None:
    target = bench.workdir / f"cp-{rep}"
    changes = apply_small_changes(bench.corpus)
    try:
        bench.timed(
            "cp -a", "restore", ["cp", "-a", str(bench.corpus), str(target)], dict(os.environ)
        )
    finally:
        revert_small_changes(changes)
        shutil.rmtree(target, ignore_errors=True)


def tree_bytes(root: Path) -> tuple[int, int]:
    sizes = listing(root)
    return len(sizes), sum(sizes.values())


def prepare_corpus(bench: Bench, scale: float) -> dict[str, int]:
    """Build (or reuse) the corpus; returns file counts and sizes before and after the changes."""
    marker = bench.workdir / "corpus.json"
    if marker.exists() and json.loads(marker.read_text()).get("scale") == scale:
        info: dict[str, int] = json.loads(marker.read_text())["stats"]
        if tree_bytes(bench.corpus) == (info["files"], info["bytes"]):
            bench.log(f"reusing corpus {bench.corpus}")
            return info
    shutil.rmtree(bench.corpus, ignore_errors=True)
    bench.log(f"building corpus at scale {scale} in {bench.corpus} ...")
    build_corpus(bench.corpus, scale)
    files, size = tree_bytes(bench.corpus)
    changes = apply_small_changes(bench.corpus)
    changed_files, changed_size = tree_bytes(bench.corpus)
    revert_small_changes(changes)
    info = {
        "files": files,
        "bytes": size,
        "changed_files": changed_files,
        "changed_bytes": changed_size,
    }
    marker.write_text(json.dumps({"scale": scale, "stats": info}))
    return info


def run_all(bench: Bench, tools: list[Tool], repeat: int) -> None:
    for rep in range(repeat):
        bench.log(f"repetition {rep + 1}/{repeat}")
        # Rotating the order spreads slow phases of a noisy machine over all tools.
        shift = rep % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            run_tool_cycle(bench, tool, rep)
        run_copy_baseline(bench, rep)


# --- reporting ---------------------------------------------------------------------------


def medians(bench: Bench) -> Medians:
    out: Medians = {}
    for who, s in bench.samples.items():
        out[who] = {}
        for step, secs in s.seconds.items():
            median_s = statistics.median(secs)
            entry = {
                "seconds": median_s,
                "mb_per_s": bench.step_bytes[step] / MB / median_s,
                "peak_rss_mb": statistics.median(s.peak_rss_kb[step]) / 1024,
            }
            if s.repo_bytes.get(step):
                entry["repo_mb"] = statistics.median(s.repo_bytes[step]) / MB
            out[who][step] = entry
    return out


def _step_ratios(sw: dict[str, float], other: dict[str, float]) -> dict[str, float]:
    out = {
        "throughput": other["seconds"] / sw["seconds"],
        "peak_rss": sw["peak_rss_mb"] / other["peak_rss_mb"],
    }
    if "repo_mb" in sw:
        out["repo_size"] = sw["repo_mb"] / other["repo_mb"]
    return out


def ratios(med: Medians) -> Medians:
    """seawall/other: throughput ratio (>1 = seawall faster), size and RSS ratios (<1 = smaller)."""
    if "seawall" not in med:
        return {}
    return {
        f"seawall/{other}": {s: _step_ratios(med["seawall"][s], med[other][s]) for s in STEPS}
        for other in ("restic", "borg")
        if other in med
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown(med: Medians, rat: Medians) -> str:
    tools = [t for t in TOOL_ORDER if t in med]
    pairs = list(rat)

    def cell(who: str, step: str, key: str, fmt: str) -> str:
        return fmt.format(med[who][step][key]) if step in med.get(who, {}) else "-"

    speed = [
        [STEP_TITLES[step]]
        + [
            f"{cell(t, step, 'seconds', '{:.2f} s')} ({cell(t, step, 'mb_per_s', '{:.0f}')} MB/s)"
            for t in tools
        ]
        + ([cell("cp -a", step, "seconds", "{:.2f} s")] if "cp -a" in med else [])
        + [f"{rat[p][step]['throughput']:.2f}x" for p in pairs]
        for step in STEPS
    ]
    sizes = [
        [f"repo after {STEP_TITLES[step]} (MB)"]
        + [cell(t, step, "repo_mb", "{:.1f}") for t in tools]
        + [f"{rat[p][step]['repo_size']:.2f}" for p in pairs]
        for step in BACKUP_STEPS
    ]
    rss = [
        [f"peak RSS, {STEP_TITLES[step]} (MB)"]
        + [cell(t, step, "peak_rss_mb", "{:.0f}") for t in tools]
        + [f"{rat[p][step]['peak_rss']:.2f}" for p in pairs]
        for step in STEPS
    ]
    copy = ["cp -a"] if "cp -a" in med else []
    return "\n\n".join(
        [
            "Time (median) and throughput; ratio = seawall throughput / other (>1: seawall faster)",
            _table(["step", *tools, *copy, *(f"{p} speed" for p in pairs)], speed),
            "Repository size (median, du -sb) and peak RSS; ratio = seawall / other (<1: smaller)",
            _table(["metric", *tools, *pairs], sizes + rss),
        ]
    )


def metadata(args: argparse.Namespace, tools: list[Tool], stats: dict[str, int]) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "scale": args.scale,
        "repeat": args.repeat,
        "corpus": stats,
        "versions": {t.name: t.version() for t in tools},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "loadavg_start": os.getloadavg(),
        "note": CACHE_NOTE,
    }


# --- entry point -------------------------------------------------------------------------


def argument_parser(
    doc: str, *, scale: float, tools: tuple[str, ...], out: Path
) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--scale", type=float, default=scale, help="corpus size; 1.0 is about 3 GB")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--only", default=",".join(tools), help="comma-separated tools")
    parser.add_argument("--seawall", default=default_seawall(), help="seawall executable")
    parser.add_argument("--out", type=Path, default=out, help="JSON output")
    parser.add_argument("--workdir", type=Path, help="reused between runs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep repositories and restores")
    return parser


def parse_args() -> argparse.Namespace:
    return argument_parser(__doc__, scale=1.0, tools=TOOL_ORDER, out=DEFAULT_OUT).parse_args()


def main() -> int:
    args = parse_args()
    try:
        tools = make_tools([n.strip() for n in args.only.split(",") if n.strip()], args.seawall)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    temp = args.workdir is None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="seawall-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(workdir=workdir, corpus=workdir / "corpus", keep=args.keep)
    try:
        stats = prepare_corpus(bench, args.scale)
        meta = metadata(args, tools, stats)
        bench.step_bytes = {s: stats["bytes"] for s in ("initial", "unchanged")}
        bench.step_bytes |= {s: stats["changed_bytes"] for s in ("incremental", "restore")}
        bench.log(f"corpus: {stats['files']} files, {stats['bytes'] / MB:.1f} MB; {CACHE_NOTE}")
        run_all(bench, tools, args.repeat)
    except BenchmarkError as exc:
        print(f"error: {exc}\n(logs and data kept in {workdir})", file=sys.stderr)
        return 1
    med = medians(bench)
    rat = ratios(med)
    table = markdown(med, rat)
    print(table)
    print(f"\nNote: {CACHE_NOTE}.")
    raw = {
        w: {"seconds": s.seconds, "peak_rss_kb": s.peak_rss_kb, "repo_bytes": s.repo_bytes}
        for w, s in bench.samples.items()
    }
    result = {"meta": meta, "medians": med, "ratios": rat, "samples": raw, "table": table}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out}", file=sys.stderr)
    if temp and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
