"""The runtime environment: enough facts to rebuild it, and to see how another differs.

The capture records, for one Python interpreter (the one running seawall
unless the plan names another): its version and packages (``pip freeze``,
or the installed distributions when that interpreter has no pip), the lock
files the plan names, and the machine: OS, CPU, memory, and the NVIDIA
driver, CUDA version and GPUs when ``nvidia-smi`` is present (recorded as
absent otherwise). The asset's tree is ``environment.json`` (the facts),
``requirements.txt`` and ``locks/NAME``.

A restore leaves ``requirements.txt`` ready for ``pip install -r`` and
writes ``differences.txt``: how the machine it runs on differs from the
recorded one (Python, OS, CPU, CUDA, and every package missing, extra or at
another version).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seawall.errors import SourceError
from seawall.sources.base import (
    Captured,
    PathEntry,
    StreamEntry,
    bytes_entry,
    refuse_unknown_options,
)

OPTIONS = {"python": "the interpreter to compare with (default: the asset's, else seawall's)"}
FACTS = "environment.json"
#: Seconds an interpreter or nvidia-smi may take to answer.
_TIMEOUT = 300
REQUIREMENTS = "requirements.txt"
DIFFERENCES = "differences.txt"

#: Run by the recorded interpreter: its own facts, and its packages when it has no pip.
_INTERPRETER = """
import json, platform, sys
from importlib.metadata import distributions
print(json.dumps({
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "executable": sys.executable,
    "distributions": sorted(
        f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]
    ),
}))
"""


class EnvironmentSource:
    kind = "environment"

    def __init__(self, lock_files: list[Path] | None = None, python: Path | None = None) -> None:
        self.lock_files = lock_files or []
        self.python = python

    @contextmanager
    def capture(self, stage: Path) -> Iterator[Captured]:
        missing = [str(p) for p in self.lock_files if not p.is_file()]
        if missing:
            raise SourceError(f"cannot capture lock files {', '.join(missing)}: not found")
        facts = machine_facts(self.python)
        requirements = facts.pop("requirements")
        entries: list[PathEntry | StreamEntry] = [
            bytes_entry(FACTS, json.dumps(facts, indent=2).encode() + b"\n", 0o644),
            bytes_entry(REQUIREMENTS, requirements.encode(), 0o644),
            *(PathEntry(f"locks/{p.name}", p) for p in self.lock_files),
        ]
        yield Captured(
            entries,
            {
                "python": facts["python"]["version"],
                "packages": len(_packages(requirements)),
                "packages_from": facts["packages_from"],
                "os": facts["os"]["system"] + " " + facts["os"]["release"],
                "machine": facts["cpu"]["machine"],
                "cuda": facts["cuda"].get("cuda")
                or ("absent" if not facts["cuda"]["present"] else "unknown"),
                "lock_files": [p.name for p in self.lock_files],
            },
        )

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """Write ``differences.txt``: the recorded environment against this machine."""
        refuse_unknown_options(options, OPTIONS, self.kind)
        python = Path(options["python"]) if "python" in options else self.python
        notes = []
        if "python" not in options and python is not None and not python.exists():
            # The machine that ran it is gone: compare with what runs here.
            notes.append(
                f"interpreter: {python} recorded, absent here (compared with {sys.executable})"
            )
            python = None
        try:
            recorded = json.loads((restored / FACTS).read_text())
            wanted = _packages((restored / REQUIREMENTS).read_text())
        except (OSError, ValueError) as err:
            raise SourceError(
                f"the restored environment in {restored} is unreadable: {err}"
            ) from None
        here = machine_facts(python)
        lines = notes + differences(recorded, wanted, here, _packages(here.pop("requirements")))
        report = restored / DIFFERENCES
        report.write_text("".join(f"{line}\n" for line in lines) or "no differences\n")
        return {
            "requirements": str(restored / REQUIREMENTS),
            "report": str(report),
            "differences": lines,
        }


def machine_facts(python: Path | None = None) -> dict[str, Any]:
    """This machine and ``python``'s packages (``requirements``: the freeze text)."""
    interpreter = str(python or sys.executable)
    try:
        out = subprocess.run(
            [interpreter, "-c", _INTERPRETER],
            capture_output=True,
            text=True,
            check=True,
            timeout=_TIMEOUT,
        )
        py = json.loads(out.stdout)
        freeze = subprocess.run(
            [interpreter, "-m", "pip", "freeze"],
            capture_output=True,
            text=True,
            check=False,
            timeout=_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        raise SourceError(f"cannot run the Python interpreter {interpreter}: {err}") from None
    if freeze.returncode == 0:
        requirements, source = freeze.stdout, "pip freeze"
    else:  # no pip in that environment (uv, conda...): what is installed, without pip
        requirements, source = "".join(f"{d}\n" for d in py["distributions"]), "importlib.metadata"
    del py["distributions"]
    return {
        "python": py,
        "packages_from": source,
        "requirements": requirements,
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "distribution": _os_release(),
            "libc": " ".join(platform.libc_ver()).strip(),
        },
        "cpu": {"machine": platform.machine(), "model": _cpu_model(), "count": os.cpu_count()},
        "memory_bytes": _memory(),
        "cuda": nvidia(),
    }


def nvidia() -> dict[str, Any]:
    """Driver, CUDA version and GPUs from ``nvidia-smi``; ``present: False`` without it."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return {"present": False}
    try:
        gpus = subprocess.run(
            [tool, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=_TIMEOUT,
        ).stdout
        header = subprocess.run([tool], capture_output=True, text=True, timeout=_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return {"present": True, "error": f"nvidia-smi failed: {err}"}
    rows = [[c.strip() for c in line.split(",")] for line in gpus.splitlines() if line.strip()]
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {
        "present": True,
        "driver": rows[0][1] if rows else None,
        "cuda": cuda[1] if cuda else None,
        "gpus": [{"name": r[0], "memory": r[2]} for r in rows if len(r) >= 3],
    }


def differences(
    recorded: dict[str, Any], wanted: dict[str, str], here: dict[str, Any], have: dict[str, str]
) -> list[str]:
    """One line per difference between the recorded facts and packages and this machine's."""
    lines = []
    for label, path in [
        ("Python", ("python", "version")),
        ("Python implementation", ("python", "implementation")),
        ("OS", ("os", "system")),
        ("OS release", ("os", "release")),
        ("OS distribution", ("os", "distribution")),
        ("libc", ("os", "libc")),
        ("CPU architecture", ("cpu", "machine")),
        ("CPU model", ("cpu", "model")),
        ("CPU count", ("cpu", "count")),
        ("NVIDIA driver", ("cuda", "driver")),
        ("CUDA", ("cuda", "cuda")),
        ("GPUs", ("cuda", "gpus")),
    ]:
        was, now = _get(recorded, path), _get(here, path)
        if was != now:
            lines.append(f"{label}: {_show(was)} recorded, {_show(now)} here")
    for name in sorted(wanted.keys() | have.keys()):
        if name not in have:
            lines.append(f"package {name} {wanted[name]}: not installed here")
        elif name not in wanted:
            lines.append(f"package {name} {have[name]}: installed here, not recorded")
        elif wanted[name] != have[name]:
            lines.append(f"package {name}: {wanted[name]} recorded, {have[name]} here")
    return lines


def _get(doc: dict[str, Any], path: tuple[str, str]) -> Any:
    section = doc.get(path[0])
    return section.get(path[1]) if isinstance(section, dict) else None


def _show(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, list):
        return (
            ", ".join(str(v.get("name", v)) if isinstance(v, dict) else str(v) for v in value)
            or "none"
        )
    return str(value)


def _packages(requirements: str) -> dict[str, str]:
    """Normalized name -> the rest of the line (``==1.2``, ``@ file:...``) of a freeze."""
    out = {}
    for line in requirements.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", line)
        if match:
            out[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2].strip()
    return out


def _os_release() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        return ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
