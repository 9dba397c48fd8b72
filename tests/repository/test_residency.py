"""Region labels in the config, residency rules and copy origins in snapshots, and the rule
that joins them; old configs and version-1 snapshots still read as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seawall.errors import FormatError, UsageError
from seawall.repository.config import RepoConfig
from seawall.repository.repo import Repository
from seawall.repository.residency import normalize_label, residency_allows, residency_violation
from seawall.repository.snapshot import Snapshot
from seawall.storage import LocalStorage, MemoryStorage
from tests.conftest import FAST_KDF, PASSWORD

FROZEN = Path(__file__).parents[1] / "data" / "frozen-v1" / "repo"


@pytest.mark.parametrize(
    ("given", "stored"), [("eu", "eu"), (" EU ", "eu"), ("us-east.1_b", "us-east.1_b"), ("", "")]
)
def test_labels_are_normalized(given: str, stored: str) -> None:
    assert normalize_label(given) == stored


@pytest.mark.parametrize("bad", ["-eu", "e u", "eu/west", "é", "x" * 64, "eu\n1"])
def test_invalid_labels_are_refused_with_an_example(bad: str) -> None:
    with pytest.raises(UsageError, match=r"invalid region .*e\.g\. 'eu'"):
        normalize_label(bad)


def test_the_rule_needs_the_same_region() -> None:
    assert residency_allows("", "") and residency_allows("", "us")
    assert residency_allows("eu", "eu") and residency_allows("eu", "EU")
    assert not residency_allows("eu", "us") and not residency_allows("eu", "")
    assert residency_violation("eu", "eu", "snapshot 1", "/r") is None
    why = residency_violation("eu", "us", "snapshot 1a2b3c4d", "/backups/us")
    assert why is not None
    assert "snapshot 1a2b3c4d" in why and "'eu'" in why and "'us'" in why and "/backups/us" in why
    unlabelled = residency_violation("eu", "", "snapshot 1a2b3c4d", "/r")
    assert unlabelled is not None and "no region label" in unlabelled


def test_init_records_the_region_in_the_public_config() -> None:
    storage = MemoryStorage()
    Repository.init(storage, PASSWORD, kdf=FAST_KDF, region="EU")
    assert json.loads(storage.get("config"))["region"] == "eu"
    assert Repository.open(storage, PASSWORD).config.region == "eu"


def test_init_refuses_an_invalid_region_before_writing_anything() -> None:
    storage = MemoryStorage()
    with pytest.raises(UsageError):
        Repository.init(storage, PASSWORD, kdf=FAST_KDF, region="eu west")
    assert storage.objects == {}


def test_an_unlabelled_config_keeps_its_old_bytes() -> None:
    config = RepoConfig()
    doc = json.loads(config.to_bytes())
    assert "region" not in doc
    assert RepoConfig.from_bytes(config.to_bytes()) == config
    labelled = RepoConfig(region="us")
    assert RepoConfig.from_bytes(labelled.to_bytes()) == labelled
    expected = dict(doc, id=labelled.id, created=labelled.created, region="us")
    assert json.loads(labelled.to_bytes()) == expected


def test_the_frozen_v1_repository_opens_unlabelled(tmp_path: Path) -> None:
    assert (FROZEN / "config").exists()
    repo = Repository.open(LocalStorage(FROZEN), _frozen_password())
    assert repo.config.region == ""
    snaps = repo.list_snapshots()
    assert snaps and all(s.residency == "" and s.original is None for s in snaps)


def _frozen_password() -> str:
    manifest = json.loads((FROZEN.parent / "manifest.json").read_text())
    password: str = manifest["password"]
    return password


def _snapshot(**kw: object) -> Snapshot:
    base: dict[str, object] = dict(
        time="2026-11-24T12:00:00+00:00",
        tree=b"\1" * 32,
        paths=["/data"],
        hostname="h",
        username="u",
    )
    return Snapshot(**(base | kw))  # type: ignore[arg-type]


def test_a_snapshot_without_new_fields_stays_version_1() -> None:
    snap = _snapshot()
    doc = json.loads(snap.to_bytes())
    assert doc["version"] == 1 and "residency" not in doc and "original" not in doc
    assert list(doc)[-1] == "version"


def test_residency_and_original_round_trip_as_version_2() -> None:
    snap = _snapshot(residency="eu", original=b"\2" * 32)
    doc = json.loads(snap.to_bytes())
    assert doc["version"] == 2 and doc["residency"] == "eu" and doc["original"] == "02" * 32
    back = Snapshot.from_bytes(snap.to_bytes(), b"\3" * 32)
    assert back.residency == "eu" and back.original == b"\2" * 32
    assert back.to_bytes() == snap.to_bytes()
    only_rule = Snapshot.from_bytes(_snapshot(residency="us").to_bytes(), b"\3" * 32)
    assert only_rule.residency == "us" and only_rule.original is None


def test_version_1_may_not_carry_version_2_fields() -> None:
    doc = json.loads(_snapshot().to_bytes()) | {"residency": "eu"}
    with pytest.raises(FormatError, match="malformed"):
        Snapshot.from_bytes(json.dumps(doc).encode(), b"\3" * 32)


def test_unknown_fields_are_still_rejected() -> None:
    doc = json.loads(_snapshot(residency="eu").to_bytes()) | {"retention": "forever"}
    with pytest.raises(FormatError, match="malformed"):
        Snapshot.from_bytes(json.dumps(doc).encode(), b"\3" * 32)
