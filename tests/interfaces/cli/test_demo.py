"""The README's first command: the whole stack backed up, destroyed, recovered and verified."""

from __future__ import annotations

from pathlib import Path

from .conftest import run


def test_demo_json_passes(tmp_path: Path) -> None:
    result = run("demo", "--json", "--workdir", tmp_path / "demo", timeout=300)
    assert result.code == 0, result
    report = result.json()
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["files"] > 0 and report["bytes"] > 0 and report["rto_seconds"] > 0
    assert report["steps"]
    # The demo ends with a drill of its plan: sandbox restore, golden outputs, fresh MLflow.
    assert report["drill"]["passed"] is True
    assert set(report["drill"]["assets"]) >= {"checkpoints", "registry"}
    assert "Traceback" not in result.err
