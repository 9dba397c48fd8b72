"""The plan's hooks: smoke tests that record golden outputs, and custom checks.

A **smoke test** (``smoke_test`` of a checkpoints or mlflow asset) runs the
model. At backup time it runs on the live model, picks its golden inputs
and returns them with the model's outputs; those goldens are stored in the
group's record. At drill time it runs on the *restored* model with the
recorded inputs, and its outputs must equal the recorded ones within the
test's tolerance. Either form writes ``{"inputs": ..., "outputs": ...}``
(JSON) to the file ``$SEAWALL_SMOKE_OUTPUT``:

- ``call: module:function``: seawall runs ``function(paths, inputs)`` in a new
  Python process (the interpreter running seawall, the plan's directory on
  ``sys.path``), so a restored model is loaded afresh, and a hung model is
  stopped at the timeout. ``paths`` are the asset's files and directories
  (restored ones in a drill); ``inputs`` is None at backup time, the recorded
  inputs in a drill. seawall writes what it returns.
- ``command``: a command (a string for ``/bin/sh -c``, or a list of
  arguments), run in the plan's directory with ``$SEAWALL_MODEL_PATHS``
  (the paths, joined with ``os.pathsep``) and, in a drill,
  ``$SEAWALL_GOLDEN_INPUTS`` (a JSON file holding ``{"inputs": ...}``).

For an mlflow asset, ``$MLFLOW_TRACKING_URI`` names the registry: its backend
store at backup time, the drill's fresh server in a drill; ``paths`` is its
artifact store.

A **check** (``checks`` of any asset) is a command run in the drill's sandbox
with a timeout; exit status 0 passes. Its environment says where everything
was restored (docs/drill.md lists the variables).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall.errors import SourceError
from seawall.plan.model import AnyAsset, MlflowAsset, SmokeTest

#: Goldens live in the snapshot object, which every listing reads: they must stay small.
GOLDEN_LIMIT = 256 * 1024

#: The process that runs ``call:`` hooks: import, call, write the result.
_CALL = """
import importlib, json, os, sys
from pathlib import Path
sys.path.insert(0, os.environ["SEAWALL_PLAN_DIR"])
module, _, name = sys.argv[1].partition(":")
function = getattr(importlib.import_module(module), name)
paths = [Path(p) for p in os.environ["SEAWALL_MODEL_PATHS"].split(os.pathsep) if p]
inputs = None
if os.environ.get("SEAWALL_GOLDEN_INPUTS"):
    with open(os.environ["SEAWALL_GOLDEN_INPUTS"]) as f:
        inputs = json.load(f)["inputs"]
result = function(paths, inputs)
with open(os.environ["SEAWALL_SMOKE_OUTPUT"], "w") as f:
    json.dump(result, f)
"""


@dataclass
class CommandResult:
    code: int | None
    #: the end of what it printed (stdout and stderr)
    output: str
    duration: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out

    def describe(self, timeout: float) -> str:
        if self.timed_out:
            return f"did not finish within {timeout:g} s (stopped)"
        last = self.output.strip().splitlines()[-3:]
        said = (": " + " | ".join(last)) if last else ""
        return f"exited with code {self.code}{said}"


def run_command(
    command: str | Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> CommandResult:
    """Run a hook: a string through ``/bin/sh -c``, a list as it is; in a session of its
    own, so that a timeout or an interrupt stops it with everything it started."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**_inherited(), **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            return CommandResult(None, f"cannot run {argv[0]}: {err.strerror}", 0.0, False)
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:  # timed out, or we are interrupted: its whole session goes
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0)
        text = out.read()[-4000:].decode(errors="replace")
    return CommandResult(proc.returncode, text, time.monotonic() - started, timed_out)


def _inherited() -> dict[str, str]:
    """The environment a hook inherits: seawall's own, less its repository passwords
    (a hook has no use for them, and its output ends up in reports)."""
    return {
        k: v for k, v in os.environ.items() if not (k.startswith("SEAWALL_") and "PASSWORD" in k)
    }


# --- smoke tests -------------------------------------------------------------------------------


def model_paths(asset: AnyAsset, restored: Path | None = None) -> list[Path]:
    """What a smoke test of ``asset`` runs on: its paths (each restored under its base
    name), or an mlflow asset's artifact store."""
    if isinstance(asset, MlflowAsset):
        return [restored] if restored is not None else [Path(asset.artifacts)]
    paths: list[Path] = getattr(asset, "paths", [])
    return [restored / p.name for p in paths] if restored is not None else list(paths)


def run_smoke(
    test: SmokeTest,
    paths: list[Path],
    *,
    plan_dir: Path,
    inputs: Any = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Run a smoke test; its ``{"inputs", "outputs"}``, or SourceError saying why not."""
    with tempfile.TemporaryDirectory(prefix="seawall-smoke-") as work:
        output = Path(work) / "output.json"
        env = {
            "SEAWALL_PLAN_DIR": str(plan_dir),
            "SEAWALL_MODEL_PATHS": os.pathsep.join(map(str, paths)),
            "SEAWALL_SMOKE_OUTPUT": str(output),
        }
        if inputs is not None:
            golden = Path(work) / "inputs.json"
            golden.write_text(json.dumps({"inputs": inputs}))
            env["SEAWALL_GOLDEN_INPUTS"] = str(golden)
        if tracking_uri:
            env["MLFLOW_TRACKING_URI"] = tracking_uri
        command: str | list[str] = (
            [sys.executable, "-c", _CALL, test.call] if test.call else test.command or []
        )
        timeout = test.timeout.total_seconds()
        ran = run_command(command, env=env, cwd=plan_dir, timeout=timeout)
        if not ran.ok:
            raise SourceError(f"the smoke test {test.describe()} {ran.describe(timeout)}")
        try:
            if output.stat().st_size > GOLDEN_LIMIT:
                raise SourceError(
                    f"the smoke test {test.describe()} wrote more than {GOLDEN_LIMIT} bytes of "
                    "goldens: pick fewer inputs (goldens are kept in the snapshot)"
                )
            result = json.loads(output.read_text())
        except FileNotFoundError:
            raise SourceError(
                f"the smoke test {test.describe()} wrote nothing to $SEAWALL_SMOKE_OUTPUT"
            ) from None
        except ValueError as err:
            raise SourceError(
                f"the smoke test {test.describe()} wrote no valid JSON: {err}"
            ) from None
    if not isinstance(result, dict) or "inputs" not in result or "outputs" not in result:
        raise SourceError(
            f'the smoke test {test.describe()} must give {{"inputs": ..., "outputs": ...}}'
        )
    return {"inputs": result["inputs"], "outputs": result["outputs"]}


def goldens_of(asset: AnyAsset, plan_dir: Path, log: Callable[[str], None] | None = None) -> Any:
    """Run the asset's smoke test on the live model, for its snapshot's facts: its
    goldens, ``{"error": why}`` (a smoke test that fails does not fail the backup; the
    drills of that snapshot will), or None if the asset has no smoke test."""
    test: SmokeTest | None = getattr(asset, "smoke_test", None)
    if test is None:
        return None
    if log:
        log(f"  {asset.name}: smoke test, recording golden outputs")
    tracking = asset.backend_uri if isinstance(asset, MlflowAsset) else None
    try:
        return run_smoke(test, model_paths(asset), plan_dir=plan_dir, tracking_uri=tracking)
    except SourceError as err:
        if log:
            log(f"warning: {asset.name}: {err}: drills of this snapshot will fail")
        return {"error": str(err)}


def compare_outputs(
    expected: Any, actual: Any, rtol: float, atol: float, at: str = ""
) -> str | None:
    """The first difference between two JSON values (numbers within the tolerance:
    ``|a - b| <= atol + rtol * |b|``, NaN equal to NaN), or None."""
    where = at or "outputs"
    if _number(expected) and _number(actual):
        a, b = float(actual), float(expected)
        if math.isnan(a) and math.isnan(b):
            return None
        if a == b or abs(a - b) <= atol + rtol * abs(b):
            return None
        return f"{where}: {a!r} instead of {b!r} (difference {abs(a - b):.3g})"
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{where}: {len(actual)} values instead of {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            diff = compare_outputs(e, a, rtol, atol, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return f"{where}: keys {sorted(actual)} instead of {sorted(expected)}"
        for key in expected:
            diff = compare_outputs(expected[key], actual[key], rtol, atol, f"{where}.{key}")
            if diff:
                return diff
        return None
    return None if expected == actual else f"{where}: {actual!r} instead of {expected!r}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
