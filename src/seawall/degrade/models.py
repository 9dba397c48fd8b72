"""Fallback models from a seawall repository: the newest version that passed a drill.

Drills record their results in the repository (records of kind ``drill``)::

    {"time": "...", "passed": true,
     "assets": {"<asset>": {"snapshot": "<id hex>", "passed": true,
                            "files": {"<path in the snapshot>": "<sha256 hex>"}}}}

A model that was restored, verified and checked by a drill is a trustworthy
fallback; ``load_drilled_model`` restores that exact file, checks it against
the hash the drill verified, and only then loads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from seawall.errors import IntegrityError, ObjectNotFound, SnapshotNotFound
from seawall.operations.restore import restore
from seawall.repository.repo import Repository

Model = TypeVar("Model")


@dataclass(frozen=True)
class DrilledModel(Generic[Model]):
    model: Model
    #: where the verified file was restored
    path: Path
    #: the snapshot it came from (id hex) and the time of the drill that passed it
    snapshot: str
    drilled_at: str
    sha256: str


def load_drilled_model(
    repo: Repository,
    asset: str,
    path: str,
    dest_dir: str | Path,
    loader: Callable[[Path], Model],
) -> DrilledModel[Model]:
    """Restore ``path`` (as stored in the snapshot, e.g. ``/models/small.npz``) of the newest
    snapshot in which ``asset`` passed a drill that verified that file, under ``dest_dir``;
    check its SHA-256 against the drill's; return ``loader(restored file)``.

    A snapshot forgotten since its drill is passed over for the next newest.
    SnapshotNotFound: no drill passed that file. IntegrityError: the restored
    file is not what the drill verified (it is deleted, never loaded).
    """
    want = "/" + path.strip("/")
    candidates = []
    for record in reversed(repo.list_records("drill")):
        entry = _passed_entry(record, asset, want)
        if entry is not None:
            candidates.append((record, *entry))
    gone = []
    for record, snapshot_hex, sha256 in candidates:
        try:
            snap = repo.load_snapshot(bytes.fromhex(snapshot_hex))
        except ObjectNotFound:
            gone.append(snapshot_hex[:8])
            continue
        restore(repo, snap, dest_dir, includes=[want])
        restored = Path(dest_dir).expanduser().absolute() / want.lstrip("/")
        actual = _sha256(restored)
        if actual != sha256:
            restored.unlink()
            raise IntegrityError(
                f"{want} restored from snapshot {snap.short_id} has SHA-256 {actual[:16]}..., "
                f"but the drill of {record['time']} verified {sha256[:16]}...; it was not "
                f"loaded. Run `seawall check --read-data` on the repository"
            )
        return DrilledModel(loader(restored), restored, snapshot_hex, str(record["time"]), actual)
    if gone:
        raise SnapshotNotFound(
            f"every snapshot in which asset {asset!r} passed a drill has been forgotten "
            f"({', '.join(gone)}); run `seawall drill` on a newer snapshot"
        )
    raise SnapshotNotFound(
        f"no drill in the repository passed asset {asset!r} with the file {want}; "
        "run `seawall drill`, and check the asset name and the path as the snapshot stores it"
    )


def _passed_entry(record: dict[str, Any], asset: str, path: str) -> tuple[str, str] | None:
    """(snapshot id hex, sha256 hex) of ``path`` if ``asset`` passed in this drill record."""
    assets = record.get("assets")
    entry = assets.get(asset) if isinstance(assets, dict) else None
    if not isinstance(entry, dict) or entry.get("passed") is not True:
        return None
    files = entry.get("files")
    if not isinstance(files, dict):
        return None
    sha256 = {"/" + str(p).strip("/"): h for p, h in files.items()}.get(path)
    snapshot = entry.get("snapshot")
    if not (isinstance(sha256, str) and isinstance(snapshot, str) and _is_hex(snapshot)):
        return None
    return snapshot, sha256.lower()


def _is_hex(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) == 32
    except ValueError:
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
