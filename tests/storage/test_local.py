"""Local storage specifics the conformance suite cannot express."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.errors import StorageError
from seawall.storage import LocalStorage


def test_put_under_a_file_is_a_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "repo")
    store.put("data/ab", b"a file where a directory is wanted")
    with pytest.raises(StorageError):
        store.put("data/ab/cdef", b"x")
    assert store.get("data/ab") == b"a file where a directory is wanted"
    assert [i.name for i in store.list("")] == ["data/ab"]
