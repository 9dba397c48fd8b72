"""Anomaly signals: a dataset partly encrypted between two backups is marked suspect,
the files are named, and a plain restore brings back the last clean group; ordinary
change, incompressible data that is usual for the asset, and a cleared false alarm are
not held against a backup."""

from __future__ import annotations

import os
import random
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from seawall.errors import SnapshotNotFound, UsageError
from seawall.plan.anomaly import (
    CLEARED_KIND,
    RECORD_KIND,
    THRESHOLD,
    clear_mark,
    marks,
)
from seawall.plan.drill import pick_group
from seawall.plan.model import Plan, load_plan
from seawall.plan.runner import GroupBackup, backup_plan, find_group, list_groups, restore_plan
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, reopen, tree_digest


def csv_rows(seed: int, rows: int = 600) -> bytes:
    """Compressible, distinct text: what a dataset of tables looks like."""
    rng = random.Random(seed)
    lines = [
        f"{i},{rng.randint(0, 999)},{rng.choice(['cat', 'dog', 'eel'])},0.{rng.randint(0, 99)}"
        for i in range(rows)
    ]
    return ("id,n,label,score\n" + "\n".join(lines) + "\n").encode()


def encrypt_in_place(path: Path) -> None:
    """What ransomware does: the same file, its bytes AES-CTR encrypted under a key we lose."""
    cipher = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    path.write_bytes(cipher.update(path.read_bytes()) + cipher.finalize())


def make_dataset(root: Path, files: int = 24, rows: int = 600) -> list[Path]:
    data = root / "data"
    (data / "tables").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = data / "tables" / f"part-{i:03d}.csv"
        path.write_bytes(csv_rows(i, rows))
        paths.append(path)
    return paths


def setup_plan(root: Path, extra: str = "") -> tuple[Plan, Repository]:
    Repository.init(
        LocalStorage(root / "repo"),
        PASSWORD,
        kdf=FAST_KDF,
        chunker=SMALL_CHUNKS,
        pack_size=SMALL_PACK,
    )
    (root / "seawall.yaml").write_text(
        textwrap.dedent(
            f"""\
            version: 1
            repositories:
              primary: {{location: repo}}
            assets:
              - name: dataset
                kind: files
                paths: [data]
            {extra}"""
        )
    )
    return load_plan(root / "seawall.yaml"), Repository.open(LocalStorage(root / "repo"), PASSWORD)


def backup(plan: Plan, repo: Repository, log: list[str] | None = None) -> GroupBackup:
    return backup_plan(plan, reopen(repo), log=log.append if log is not None else None)


def test_encrypted_files_are_named_marked_and_passed_over_by_restore(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path)
    plan, repo = setup_plan(tmp_path)
    first = backup(plan, repo)
    assert first.assets[0].anomaly is not None and first.assets[0].anomaly.compared_with == ""
    # An ordinary day: two tables grow.
    for path in paths[:2]:
        path.write_bytes(path.read_bytes() + csv_rows(100 + paths.index(path), 50))
    ordinary = backup(plan, repo)
    clean_state = tree_digest(tmp_path / "data")
    score = ordinary.assets[0].anomaly
    assert score is not None and not score.suspect and score.score < 0.2, score.summary()

    victims = paths[3:11]
    for path in victims:
        encrypt_in_place(path)
    attacked = backup(plan, repo)
    score = attacked.assets[0].anomaly
    assert score is not None and score.suspect and score.score >= THRESHOLD
    named = {f["path"] for f in score.files}
    assert named == {f"/data/tables/{p.name}" for p in victims}
    assert all(f["was_ratio"] < 0.9 and f["change"] == "changed" for f in score.files)
    assert "in 8 files that compressed before" in score.summary()
    # The mark is a record in the repository, naming the snapshot, its group and the files.
    [record] = reopen(repo).list_records(RECORD_KIND)
    assert record["snapshot"] == attacked.assets[0].snapshot.id.hex()
    assert record["group"] == attacked.group and record["id"] == score.record
    assert {f["path"] for f in record["files"]} == named

    # The group is complete, but a plain restore passes over it to the last clean one.
    assert list_groups(reopen(repo))[-1].id == attacked.group
    said: list[str] = []
    restored = restore_plan(plan, reopen(repo), tmp_path / "restore", log=said.append)
    assert restored.group.id == ordinary.group
    assert tree_digest(tmp_path / "restore" / "dataset" / "data") == clean_state
    assert any(f"passing over group {attacked.group[:8]}" in line for line in said)
    # So does a drill's choice of group, and so does "the newest at or before now".
    assert pick_group(reopen(repo), plan, None, None).id == ordinary.group
    assert find_group(reopen(repo), "latest", clean=True).id == ordinary.group
    # And status counts the RPO from the newest clean copy, not the suspect one.
    from seawall.plan.status import plan_status

    [dataset] = [a for a in plan_status(plan, reopen(repo)).assets if a.name == "dataset"]
    assert dataset.group == ordinary.group
    # Told otherwise (its id), the restore takes the suspect group.
    restore_plan(plan, reopen(repo), tmp_path / "as-is", at=attacked.group[:8])
    assert (tmp_path / "as-is" / "dataset" / "data" / "tables" / victims[0].name).read_bytes() == (
        victims[0].read_bytes()
    )

    # The next backup of the still-encrypted data is compared with the clean state: marked too.
    again = backup(plan, repo)
    assert again.assets[0].anomaly is not None and again.assets[0].anomaly.suspect
    assert again.assets[0].anomaly.compared_with == ordinary.assets[0].snapshot.id.hex()
    assert find_group(reopen(repo), clean=True).id == ordinary.group
    # A replica passes over the same groups: the marks go along with the groups.
    from seawall.operations.copy import copy
    from seawall.plan.runner import copy_groups

    replica = Repository.init(LocalStorage(tmp_path / "replica"), PASSWORD, kdf=FAST_KDF)
    copy(reopen(repo), replica)
    copy_groups(reopen(repo), replica)
    assert find_group(reopen(replica), clean=True).id == ordinary.group

    # A mark judged a false alarm is cleared by a record; then the newest group is clean.
    with pytest.raises(UsageError, match="reason"):
        clear_mark(reopen(repo), score.snapshot, reason=" ", by="test")
    with pytest.raises(SnapshotNotFound, match="no marked snapshots"):
        clear_mark(reopen(repo), "ffffffff", reason="x", by="test")
    for mark in list(marks(reopen(repo)).values()):
        clear_mark(reopen(repo), mark["id"][:10], reason="we encrypted them on purpose", by="t")
    assert len(reopen(repo).list_records(CLEARED_KIND)) == 2
    assert marks(reopen(repo)) == {}
    assert find_group(reopen(repo), clean=True).id == again.group
    copy_groups(reopen(repo), replica)  # the clearings follow their marks
    assert find_group(reopen(replica), clean=True).id == again.group


def test_ordinary_change_and_usual_incompressible_data_are_not_suspect(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path, files=12)
    images = tmp_path / "data" / "images"
    images.mkdir()
    for i in range(12):
        (images / f"img-{i}.jpg").write_bytes(os.urandom(24_000))
    plan, repo = setup_plan(tmp_path)
    backup(plan, repo)
    # A third of the tables regenerated with new (compressible) rows, one deleted.
    for i, path in enumerate(paths[:4]):
        path.write_bytes(csv_rows(1000 + i))
    paths[11].unlink()
    regenerated = backup(plan, repo).assets[0].anomaly
    assert regenerated is not None and not regenerated.suspect, regenerated.summary()
    # New photos replace old ones: incompressible, as the asset's photos always were.
    for i in range(4):
        (images / f"img-{i}.jpg").write_bytes(os.urandom(24_000))
    photos = backup(plan, repo).assets[0].anomaly
    assert photos is not None and not photos.suspect, photos.summary()
    # New photos beside the others: expected not to compress either.
    for i in range(5):
        (images / f"new-{i}.jpg").write_bytes(os.urandom(24_000))
    added = backup(plan, repo).assets[0].anomaly
    assert added is not None and added.score == 0, added.summary()
    assert marks(reopen(repo)) == {}


def test_mass_deletion_is_suspect_and_names_the_deleted_files(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path, files=20)
    plan, repo = setup_plan(tmp_path)
    backup(plan, repo)
    for path in paths[:14]:
        path.unlink()
    score = backup(plan, repo).assets[0].anomaly
    assert score is not None and score.suspect, score.summary()
    assert {f["path"] for f in score.files} == {f"/data/tables/{p.name}" for p in paths[:14]}
    assert all(f["change"] == "deleted" for f in score.files)
    assert "14 files deleted" in score.summary()
    with pytest.raises(SnapshotNotFound):
        # Only the first group is clean; a drill of "latest" takes it, a time before it fails.
        find_group(reopen(repo), datetime(2000, 1, 1, tzinfo=UTC), clean=True)


def test_encrypted_copies_replacing_the_originals_are_suspect(tmp_path: Path) -> None:
    """The other way ransomware works: an encrypted copy under a new name, the original
    deleted."""
    paths = make_dataset(tmp_path, files=20)
    plan, repo = setup_plan(tmp_path)
    backup(plan, repo)
    for path in paths[:12]:
        locked = path.with_name(path.name + ".locked")
        path.rename(locked)
        encrypt_in_place(locked)
    score = backup(plan, repo).assets[0].anomaly
    assert score is not None and score.suspect, score.summary()
    named = [(f["path"].rsplit("/", 1)[1], f["change"]) for f in score.files]
    assert sorted(named) == sorted(
        [(p.name + ".locked", "new") for p in paths[:12]]
        + [(p.name, "deleted") for p in paths[:12]]
    )
