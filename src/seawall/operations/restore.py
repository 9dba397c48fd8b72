"""restore: write a snapshot (or part of it) back to a directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from seawall.engine.progress import Progress
from seawall.engine.restorer import Restorer, RestoreStats
from seawall.errors import DamagedSnapshot, StorageError, UsageError
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot


@dataclass
class RestoreResult:
    snapshot: Snapshot
    stats: RestoreStats
    duration: float


def restore(
    repo: Repository,
    snapshot: Snapshot,
    target: str | Path,
    *,
    includes: list[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> RestoreResult:
    """Restore ``snapshot`` under ``target`` (its paths keep their full form:
    ``/data/x`` lands in ``target/data/x``).

    Every byte is checked against its id as it is read. If some files cannot
    be restored, every other file still is, and DamagedSnapshot is raised at
    the end listing them (its ``result`` attribute has the stats). If the
    store fails, the restore stops with StorageError.
    """
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UsageError(f"restore target {target} exists and is not a directory")
    progress = progress or Progress("restore")
    progress.start("restore")
    started = time.monotonic()
    try:
        with Lock(repo, exclusive=False):
            repo.load_index()
            stats = Restorer(repo, progress=progress, workers=workers).restore(
                snapshot.tree, target, includes
            )
    except StorageError as err:
        if type(err) is not StorageError:  # not-found, a full store: as they are
            raise
        raise StorageError(
            f"restore stopped: {err}. Files restored so far under {target} may be "
            "incomplete; run the restore again once the store answers",
            transient=err.transient,
        ) from err
    result = RestoreResult(snapshot, stats, time.monotonic() - started)
    if includes and not (stats.files or stats.dirs or stats.symlinks or stats.damaged):
        raise UsageError(f"nothing in snapshot {snapshot.short_id} matches {', '.join(includes)}")
    if stats.damaged:
        raise DamagedSnapshot(
            f"restored {stats.files} files, but {len(stats.damaged)} could not be restored "
            f"because repository data is missing or damaged; run `seawall check --read-data`",
            [p for p, _ in stats.damaged],
            result,
        )
    return result
