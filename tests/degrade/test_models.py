"""Fallback models from a real seawall repository: the newest version that passed a
drill, restored and verified by hash before it is loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from examples.degrade_service.model import SmallModel, train_small

from seawall.degrade import DrilledModel, load_drilled_model
from seawall.errors import IntegrityError, SnapshotNotFound
from seawall.operations.backup import backup
from seawall.operations.forget import forget_ids
from seawall.repository.repo import Repository

ASSET = "fraud-small"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Versions:
    """Versions of the small model, each backed up and drilled, in a real repository."""

    def __init__(self, repo: Repository, root: Path) -> None:
        self.repo = repo
        self.model = root / "models" / "fraud" / "small.npz"
        self.hashes: list[str] = []
        self.snapshots: list[str] = []

    def release(self, samples: int, *, drill: bool | None) -> None:
        """Train a version, back it up, and record a drill of it (passed or not; None: none)."""
        train_small(self.model, samples=samples)
        self.hashes.append(sha256(self.model))
        snap = backup(self.repo, [self.model.parent]).snapshot
        self.snapshots.append(snap.id.hex())
        if drill is not None:
            self.drill(drill, snap.id.hex(), {str(self.model): self.hashes[-1]})

    def drill(self, passed: bool, snapshot: str, files: dict[str, str]) -> None:
        entry = {"snapshot": snapshot, "passed": passed, "files": files}
        self.repo.save_record("drill", {"passed": passed, "assets": {ASSET: entry}})

    def load(self, dest: Path, loaded: list[Path] | None = None) -> DrilledModel[SmallModel]:
        def loader(path: Path) -> SmallModel:
            if loaded is not None:
                loaded.append(path)
            return SmallModel(path)

        return load_drilled_model(self.repo, ASSET, str(self.model), dest, loader)


@pytest.fixture
def versions(local_repo: tuple[Path, Repository], tmp_path: Path) -> Versions:
    return Versions(local_repo[1], tmp_path / "src")


def test_the_newest_version_that_passed_a_drill_is_loaded(
    versions: Versions, tmp_path: Path
) -> None:
    versions.release(1000, drill=True)
    versions.release(1200, drill=False)  # newer, but failed its drill
    versions.release(1400, drill=None)  # newer, never drilled
    drilled = versions.load(tmp_path / "out")
    assert drilled.snapshot == versions.snapshots[0]
    assert drilled.sha256 == sha256(drilled.path) == versions.hashes[0]
    assert drilled.path == tmp_path / "out" / str(versions.model).lstrip("/")
    assert drilled.drilled_at == versions.repo.list_records("drill")[0]["time"]
    model = drilled.model
    assert isinstance(model, SmallModel) and 0 <= model.score([0.5] * 8) <= 1

    versions.release(1600, drill=True)
    drilled = versions.load(tmp_path / "out")
    assert (drilled.snapshot, drilled.sha256) == (versions.snapshots[3], versions.hashes[3])
    with np.load(versions.model) as current:
        assert np.array_equal(drilled.model.weights, current["weights"])


def test_a_file_unlike_what_the_drill_verified_is_never_loaded(
    versions: Versions, tmp_path: Path
) -> None:
    versions.release(1000, drill=None)
    versions.release(1200, drill=None)
    # A record that does not match its snapshot: version 0's bytes, version 1's hash.
    versions.drill(True, versions.snapshots[0], {str(versions.model): versions.hashes[1]})
    loaded: list[Path] = []
    with pytest.raises(IntegrityError, match="was not loaded"):
        versions.load(tmp_path / "out", loaded)
    assert loaded == []
    assert not (tmp_path / "out" / str(versions.model).lstrip("/")).exists()


def test_forgotten_snapshots_are_passed_over(versions: Versions, tmp_path: Path) -> None:
    versions.release(1000, drill=True)
    versions.release(1200, drill=True)
    forget_ids(versions.repo, [versions.snapshots[1]])
    assert versions.load(tmp_path / "out").snapshot == versions.snapshots[0]
    forget_ids(versions.repo, [versions.snapshots[0]])
    with pytest.raises(SnapshotNotFound, match="forgotten"):
        versions.load(tmp_path / "out")


def test_no_passing_drill_of_that_file_is_a_clear_error(versions: Versions, tmp_path: Path) -> None:
    with pytest.raises(SnapshotNotFound, match="no drill"):
        versions.load(tmp_path / "out")  # no drill at all
    versions.release(1000, drill=False)
    versions.drill(True, versions.snapshots[0], {"/some/other/file": versions.hashes[0]})
    versions.repo.save_record(
        "drill", {"passed": True, "assets": {"another-asset": {"snapshot": versions.snapshots[0]}}}
    )
    versions.drill(True, "not hex", {str(versions.model): versions.hashes[0]})
    loaded: list[Path] = []
    with pytest.raises(SnapshotNotFound, match=f"no drill .* {ASSET!r} with the file"):
        versions.load(tmp_path / "out", loaded)
    assert loaded == []
