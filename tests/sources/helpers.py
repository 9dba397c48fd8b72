"""Capture a source into a repository and bring it back, as the plan runner does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seawall.operations.backup import backup
from seawall.operations.restore import restore
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot
from seawall.sources.base import Captured, Source
from tests.conftest import reopen


def capture_and_store(
    repo: Repository, source: Source, stage: Path, name: str = "asset"
) -> tuple[Snapshot, Captured]:
    stage.mkdir(parents=True, exist_ok=True)
    with source.capture(stage) as captured:
        asset = {"name": name, "kind": source.kind, "consistency": captured.consistency}
        result = backup(repo, [], entries=captured.entries, excludes=captured.excludes, asset=asset)
    return result.snapshot, captured


def bring_back(
    repo: Repository, source: Source, snap: Snapshot, target: Path, **options: str
) -> dict[str, Any]:
    restore(reopen(repo), snap, target)
    return source.restore(target, options)
