"""The environment source: the interpreter's packages, the machine, lock files, and how
another machine (here: another interpreter) differs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seawall.errors import SourceError
from seawall.repository.repo import Repository
from seawall.sources.environment import EnvironmentSource, machine_facts
from tests.sources.helpers import bring_back, capture_and_store

SYSTEM_PYTHON = Path("/usr/bin/python3")


def test_capture_and_compare(local_repo: tuple[Path, Repository], tmp_path: Path) -> None:
    repo = local_repo[1]
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    source = EnvironmentSource([lock])
    snap, captured = capture_and_store(repo, source, tmp_path / "stage")
    facts = captured.consistency
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    assert facts["packages_from"] == "pip freeze" and facts["packages"] > 10
    assert facts["cuda"] == "absent"  # no nvidia-smi on this machine

    out = tmp_path / "out"
    same = bring_back(repo, source, snap, out)
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    assert (out / "requirements.txt").read_text() == freeze
    assert (out / "locks/uv.lock").read_text() == "version = 1\n"
    recorded = json.loads((out / "environment.json").read_text())
    assert recorded["cuda"] == {"present": False}
    assert recorded["cpu"]["machine"] and recorded["os"]["system"] == "Linux"
    assert same["differences"] == []
    assert (out / "differences.txt").read_text() == "no differences\n"

    # Another interpreter stands for another machine: its packages differ.
    other = bring_back(repo, source, snap, tmp_path / "out2", python=str(SYSTEM_PYTHON))
    assert any(d.startswith("Python: ") for d in other["differences"])  # 3.11.x vs system
    assert "package pydantic" in "\n".join(other["differences"])
    assert "not installed here" in (tmp_path / "out2/differences.txt").read_text()

    # The recorded interpreter is gone: the comparison is with the one running here.
    gone = EnvironmentSource(python=tmp_path / "venv/bin/python")
    lines = gone.restore(tmp_path / "out", {})["differences"]
    assert lines == [
        f"interpreter: {tmp_path}/venv/bin/python recorded, absent here "
        f"(compared with {sys.executable})"
    ]


def test_nvidia_facts_when_the_tool_is_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvidia-smi's two outputs (query CSV and the banner) parsed into the facts."""
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'if [ "$1" ]; then echo "NVIDIA A100-SXM4-40GB, 550.54.15, 40960 MiB"; '
        'else echo "| Driver Version: 550.54.15   CUDA Version: 12.4 |"; fi\n'
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    cuda = machine_facts()["cuda"]
    assert cuda == {
        "present": True,
        "driver": "550.54.15",
        "cuda": "12.4",
        "gpus": [{"name": "NVIDIA A100-SXM4-40GB", "memory": "40960 MiB"}],
    }


def test_missing_lock_file_or_interpreter(tmp_path: Path) -> None:
    with (
        pytest.raises(SourceError, match=r"poetry\.lock"),
        EnvironmentSource([tmp_path / "poetry.lock"]).capture(tmp_path),
    ):
        pass
    with (
        pytest.raises(SourceError, match="cannot run the Python interpreter"),
        EnvironmentSource(python=tmp_path / "python9").capture(tmp_path),
    ):
        pass
