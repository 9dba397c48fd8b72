"""Benchmark seawall's S3 backend: next to its local backend and next to restic's S3 backend.

A moto S3 server (``python -m moto.server``) runs on a free loopback port for the whole run.
For each tool and each repetition, with fresh repositories and buckets:

1. backup of the corpus into a local repository, then a full restore from it,
2. backup into an S3 repository on the server, then a full restore from it,
3. copy of the snapshot from the local repository into a new S3 repository
   (``seawall copy --to s3:...``, ``restic copy --from-repo LOCAL``).

Every restore is checked against the corpus (file list, sizes, sha256 of a sample), every
copy target must list the copied snapshot. Medians over the repetitions are reported.
A step that does not work against moto is reported as failed, with its error, not skipped
silently.

Usage: python benchmarks/s3.py --scale 0.1 --repeat 3 [--only seawall,restic] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

from corpus import MB
from run import (
    PASSWORD,
    Bench,
    BenchmarkError,
    Tool,
    _table,
    argument_parser,
    clean_environ,
    make_tools,
    medians,
    metadata,
    output_of,
    prepare_corpus,
    restored_root,
    verify_restore,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results-s3.json"
TOOLS = ("seawall", "restic")
STEPS = {
    "backup-local": "backup, local repo",
    "backup-s3": "backup to S3",
    "restore-local": "restore from local repo",
    "restore-s3": "restore from S3",
    "copy-s3": "copy local repo -> S3",
    "copy-s3-noverify": "copy local repo -> S3, no read-back",
}
#: seawall copy reads every copy back from the target by default; restic copy does not. The
#: extra seawall row (copy --no-verify) compares with restic's copy like for like.
RESTIC_COUNTERPART = {"copy-s3-noverify": "copy-s3"}
#: (S3 step, local step): how much of the local throughput survives the trip to S3.
BACKEND_RATIOS = {
    "backup": ("backup-s3", "backup-local"),
    "restore": ("restore-s3", "restore-local"),
}
NOTE = (
    "moto is a Python server on the same 2 cores: absolute S3 numbers measure the server as "
    "much as the client; read the ratios (same run, same server). Page cache not dropped."
)


def s3_server_module() -> ModuleType:
    """tests/s3_server.py: the moto server the S3 tests use, and its fake AWS environment."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import tests.s3_server

    return tests.s3_server


@dataclass
class S3Bench:
    bench: Bench
    server: Any  # tests.s3_server.MotoServer
    failures: dict[str, str] = field(default_factory=dict)

    def env(self, state: Path, tool_env: dict[str, str]) -> dict[str, str]:
        return {**clean_environ(), "XDG_CACHE_HOME": str(state / "xdg-cache"), **tool_env}

    def attempt(self, who: str, step: str, action: Callable[[], None]) -> bool:
        """Run one step; a failing command is recorded (and reported) instead of ending the run.

        A restore that does not match the corpus still ends the run: that is a bug, not a
        limitation of the server.
        """
        try:
            action()
        except BenchmarkError as exc:
            self.failures.setdefault(f"{who} {STEPS[step]}", str(exc))
            self.bench.log(f"  {who:8} {step:13} FAILED: {str(exc).splitlines()[0]}")
            return False
        return True

    def timed(self, who: str, step: str, env: dict[str, str], *argvs: list[str]) -> bool:
        """Untimed setup commands (argvs[:-1]), then the timed one (argvs[-1])."""

        def action() -> None:
            for argv in argvs[:-1]:
                output_of(argv, env)
            self.bench.timed(who, step, argvs[-1], env)

        return self.attempt(who, step, action)

    def restore(
        self, who: str, step: str, env: dict[str, str], argv: list[str], target: Path
    ) -> None:
        target.mkdir()
        if self.timed(who, step, env, argv):
            verify_restore(self.bench.corpus, restored_root(target, self.bench.corpus), [])
        shutil.rmtree(target, ignore_errors=True)

    def expect_one_snapshot(
        self, tool: Tool, step: str, env: dict[str, str], argv: list[str]
    ) -> None:
        def action() -> None:
            found = tool.count_snapshots(output_of(argv, env))
            if found != 1:
                raise BenchmarkError(f"the copy target lists {found} snapshots, expected 1")

        self.attempt(tool.name, step, action)


def seawall_cycle(run: S3Bench, tool: Tool, base: Path) -> None:
    sw, corpus, local = tool.binary, str(run.bench.corpus), str(base / "repo")
    env = run.env(base, {"SEAWALL_PASSWORD": PASSWORD, "SEAWALL_TO_PASSWORD": PASSWORD})
    s3 = [sw, "--s3-endpoint", run.server.endpoint]
    repo = f"s3:{run.server.new_bucket()}/repo"
    copy_to = f"s3:{run.server.new_bucket()}/repo"

    if run.timed(
        "seawall",
        "backup-local",
        env,
        [sw, "--repo", local, "init"],
        [sw, "--repo", local, "backup", corpus],
    ):
        run.restore(
            "seawall",
            "restore-local",
            env,
            [sw, "--repo", local, "restore", "latest", "--target", str(base / "r1")],
            base / "r1",
        )
        if run.timed(
            "seawall",
            "copy-s3",
            env,
            [*s3, "--repo", copy_to, "init"],
            [*s3, "--repo", local, "copy", "--to", copy_to],
        ):
            run.expect_one_snapshot(
                tool, "copy-s3", env, [*s3, "--repo", copy_to, "snapshots", "--json"]
            )
        copy_again = f"s3:{run.server.new_bucket()}/repo"
        run.timed(
            "seawall",
            "copy-s3-noverify",
            env,
            [*s3, "--repo", copy_again, "init"],
            [*s3, "--repo", local, "copy", "--no-verify", "--to", copy_again],
        )
    if run.timed(
        "seawall",
        "backup-s3",
        env,
        [*s3, "--repo", repo, "init"],
        [*s3, "--repo", repo, "backup", corpus],
    ):
        run.restore(
            "seawall",
            "restore-s3",
            env,
            [*s3, "--repo", repo, "restore", "latest", "--target", str(base / "r2")],
            base / "r2",
        )


def restic_cycle(run: S3Bench, tool: Tool, base: Path) -> None:
    rc, corpus, local = tool.binary, str(run.bench.corpus), str(base / "repo")
    password_file = base / "password"
    password_file.write_text(PASSWORD)
    env = run.env(base, tool.env(base))
    repo = f"s3:{run.server.endpoint}/{run.server.new_bucket()}/repo"
    copy_to = f"s3:{run.server.endpoint}/{run.server.new_bucket()}/repo"
    backup = ["backup", "--compression", "auto", corpus]

    if run.timed(
        "restic", "backup-local", env, [rc, "-r", local, "init"], [rc, "-r", local, *backup]
    ):
        run.restore(
            "restic",
            "restore-local",
            env,
            [rc, "-r", local, "restore", "latest", "--target", str(base / "r1")],
            base / "r1",
        )
        copy = ["copy", "--from-repo", local, "--from-password-file", str(password_file)]
        if run.timed(
            "restic", "copy-s3", env, [rc, "-r", copy_to, "init"], [rc, "-r", copy_to, *copy]
        ):
            run.expect_one_snapshot(
                tool, "copy-s3", env, [rc, "-r", copy_to, "snapshots", "--json"]
            )
    if run.timed("restic", "backup-s3", env, [rc, "-r", repo, "init"], [rc, "-r", repo, *backup]):
        run.restore(
            "restic",
            "restore-s3",
            env,
            [rc, "-r", repo, "restore", "latest", "--target", str(base / "r2")],
            base / "r2",
        )


CYCLES = {"seawall": seawall_cycle, "restic": restic_cycle}


def run_all(run: S3Bench, tools: list[Tool], repeat: int) -> None:
    for rep in range(repeat):
        run.bench.log(f"repetition {rep + 1}/{repeat}")
        shift = rep % len(tools)  # rotate the order, as run.py does
        for tool in tools[shift:] + tools[:shift]:
            base = run.bench.workdir / f"{tool.name}-s3-{rep}"
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)
            try:
                CYCLES[tool.name](run, tool, base)
            finally:
                for bucket in run.server.admin.list_buckets()["Buckets"]:
                    run.server.remove_bucket(bucket["Name"])  # keeps moto's memory flat
            run.bench.cleanup(base)


# --- reporting ---------------------------------------------------------------------------


def ratios(med: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """seawall/restic throughput per step (>1: seawall faster); S3/local throughput per tool."""
    out: dict[str, dict[str, float]] = {}
    sw, rc = med.get("seawall", {}), med.get("restic", {})
    pairs = {s: RESTIC_COUNTERPART.get(s, s) for s in STEPS}
    out["seawall/restic"] = {
        s: rc[r]["seconds"] / sw[s]["seconds"] for s, r in pairs.items() if s in sw and r in rc
    }
    for who, steps in med.items():
        out[f"{who} S3/local"] = {
            kind: steps[local]["seconds"] / steps[remote]["seconds"]
            for kind, (remote, local) in BACKEND_RATIOS.items()
            if remote in steps and local in steps
        }
    return out


def markdown(med: dict[str, dict[str, dict[str, float]]], rat: dict[str, dict[str, float]]) -> str:
    tools = [t for t in TOOLS if t in med]

    def cell(who: str, step: str) -> str:
        if who == "restic" and step in RESTIC_COUNTERPART:
            return "-"
        m = med[who].get(step)
        return f"{m['seconds']:.2f} s ({m['mb_per_s']:.0f} MB/s)" if m else "failed"

    def ratio(name: str, key: str) -> str:
        value = rat.get(name, {}).get(key)
        return f"{value:.2f}x" if value is not None else "-"

    speed = [
        [title, *(cell(t, step) for t in tools), ratio("seawall/restic", step)]
        for step, title in STEPS.items()
    ]
    backend = [
        [
            f"{kind}: S3 throughput / local throughput",
            *(ratio(f"{t} S3/local", kind) for t in tools),
        ]
        for kind in BACKEND_RATIOS
    ]
    return "\n\n".join(
        [
            "Time (median) and throughput; seawall/restic = seawall throughput / restic's",
            _table(["step", *tools, "seawall/restic"], speed),
            "What the S3 backend keeps of the local backend's speed",
            _table(["ratio", *tools], backend),
        ]
    )


# --- entry point -------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    return argument_parser(__doc__, scale=0.1, tools=TOOLS, out=DEFAULT_OUT).parse_args()


def main() -> int:
    args = parse_args()
    try:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        if unknown := set(names) - set(TOOLS):
            raise BenchmarkError(f"unknown tool(s) {sorted(unknown)}; choose from {TOOLS}")
        tools = make_tools(names, args.seawall)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    temp = args.workdir is None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="seawall-bench-s3-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(workdir=workdir, corpus=workdir / "corpus", keep=args.keep)
    s3_server = s3_server_module()
    # Fake credentials and no real endpoint or profile, for this process and the tools alike.
    for name in s3_server.CLEARED_AWS_ENV:
        os.environ.pop(name, None)
    os.environ.update(s3_server.FAKE_AWS_ENV)
    server = s3_server.MotoServer(workdir / "moto.log")
    run = S3Bench(bench, server)
    try:
        stats = prepare_corpus(bench, args.scale)
        meta = metadata(args, tools, stats) | {"moto": version("moto"), "note": NOTE}
        bench.step_bytes = dict.fromkeys(STEPS, stats["bytes"])
        bench.log(
            f"corpus: {stats['files']} files, {stats['bytes'] / MB:.1f} MB; moto at "
            f"{server.endpoint}"
        )
        run_all(run, tools, args.repeat)
    except BenchmarkError as exc:
        print(f"error: {exc}\n(logs and data kept in {workdir})", file=sys.stderr)
        return 1
    finally:
        server.stop()
    med = medians(bench)
    rat = ratios(med)
    table = markdown(med, rat)
    print(table)
    print(f"\nNote: {NOTE}")
    for what, error in run.failures.items():
        print(f"\nFAILED against moto: {what}\n{error}")
    raw = {
        w: {"seconds": s.seconds, "peak_rss_kb": s.peak_rss_kb} for w, s in bench.samples.items()
    }
    result = {
        "meta": meta,
        "medians": med,
        "ratios": rat,
        "failures": run.failures,
        "samples": raw,
        "table": table,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out}", file=sys.stderr)
    if temp and not args.keep and not run.failures:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
