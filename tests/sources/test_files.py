"""The files and checkpoints source: paths stored under their own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.errors import SourceError
from seawall.repository.repo import Repository
from seawall.sources.files import FilesSource
from tests.conftest import make_files, tree_digest
from tests.sources.helpers import bring_back, capture_and_store


def test_paths_come_back_under_their_names_without_the_excluded(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    repo = local_repo[1]
    data = make_files(
        tmp_path / "src/data", {"a.csv": b"1,2\n", "cache/x.tmp": b"t", "b/c.bin": b"\0" * 999}
    )
    model = make_files(tmp_path / "other", {"model.pt": b"weights"}) / "model.pt"
    source = FilesSource([data, model], ["cache"], kind="checkpoints")
    snap, captured = capture_and_store(repo, source, tmp_path / "stage")
    assert captured.consistency["paths"] == {"data": str(data), "model.pt": str(model)}
    out = tmp_path / "out"
    report = bring_back(repo, source, snap, out)
    assert report["restored"] == [str(out / "data"), str(out / "model.pt")]
    assert (out / "model.pt").read_bytes() == b"weights"
    expected = tree_digest(data)
    del expected["cache"], expected["cache/x.tmp"]
    assert tree_digest(out / "data") == expected


def test_a_missing_path_fails_the_capture(tmp_path: Path) -> None:
    with (
        pytest.raises(SourceError, match="nope"),
        FilesSource([tmp_path / "nope"]).capture(tmp_path),
    ):
        pass
