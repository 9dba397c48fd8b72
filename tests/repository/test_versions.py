"""The immutability policy in the config, and an immutable repository on a store
without Object Lock (the view itself is tested against S3 in
tests/operations/test_immutable.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from seawall.codec.ids import storage_id
from seawall.errors import FormatError, StorageError
from seawall.operations.backup import backup
from seawall.operations.forget import KeepPolicy, forget
from seawall.operations.prune import prune
from seawall.operations.versions import repair_versions
from seawall.repository.config import CONFIG_NAME, Immutability, RepoConfig
from seawall.repository.repo import Repository
from seawall.repository.versions import is_intact
from tests.conftest import PASSWORD, make_files, reopen


def test_the_policy_is_written_only_when_set() -> None:
    plain = RepoConfig()
    assert b"immutability" not in plain.to_bytes()
    assert RepoConfig.from_bytes(plain.to_bytes()).immutability is None
    locked = replace(plain, immutability=Immutability(90, "compliance"))
    doc = json.loads(locked.to_bytes())
    assert doc["immutability"] == {"days": 90, "mode": "compliance"}
    assert list(doc)[-1] == "immutability"
    assert RepoConfig.from_bytes(locked.to_bytes()) == locked


@pytest.mark.parametrize(
    "value", [{"days": 0}, {"days": "7"}, {"days": True}, {"days": 7, "mode": "legal"}, 7]
)
def test_a_malformed_policy_is_a_format_error(value: object) -> None:
    doc = json.loads(RepoConfig().to_bytes())
    doc["immutability"] = value
    with pytest.raises(FormatError, match="malformed"):
        RepoConfig.from_bytes(json.dumps(doc).encode())


def test_an_object_is_intact_when_its_bytes_hash_to_its_name() -> None:
    data = b"sealed bytes"
    name = f"data/{storage_id(data).hex()[:2]}/{storage_id(data).hex()}"
    assert is_intact(name, data)
    assert not is_intact(name, data + b"!")
    assert not is_intact("config", data)


def test_an_immutable_repository_on_a_store_without_object_lock(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    """A copy of an immutable repository on a local disk: readable, but forget and
    prune refuse (they cannot tell what is retained), and the user is told."""
    _path, repo = local_repo
    backup(repo, [make_files(tmp_path / "src", {"a": b"a" * 1000})])
    backup(repo, [make_files(tmp_path / "src", {"a": b"b" * 1000})])
    config = replace(repo.config, immutability=Immutability(30))
    repo.storage.delete(CONFIG_NAME)
    repo.storage.put(CONFIG_NAME, config.to_bytes())
    copy = reopen(repo)
    assert copy.view is None
    assert any("no Object Lock" in w for w in copy.warnings)
    assert len(copy.list_snapshots()) == 2
    with pytest.raises(StorageError, match="Nothing was changed"):
        forget(copy, KeepPolicy(last=1))
    with pytest.raises(StorageError, match="Nothing was changed"):
        prune(copy)
    with pytest.raises(StorageError, match="no versions"):
        repair_versions(copy)
    assert len(reopen(repo).list_snapshots()) == 2
    assert Repository.open(repo.storage, PASSWORD).config.immutability == Immutability(30)
