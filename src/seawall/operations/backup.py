"""backup: store paths as a new snapshot."""

from __future__ import annotations

import getpass
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seawall.engine.archiver import Archiver, ArchiveStats, Entry, scan_totals
from seawall.engine.progress import Progress
from seawall.errors import ResidencyViolation, SeawallError, UsageError
from seawall.operations.retention import extend_if_due
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository, WriteStats
from seawall.repository.residency import normalize_label, residency_violation
from seawall.repository.snapshot import Snapshot
from seawall.version import __version__


@dataclass
class BackupResult:
    snapshot: Snapshot
    stats: ArchiveStats
    written: WriteStats
    duration: float
    parent: Snapshot | None

    @property
    def partial(self) -> bool:
        """Some source files could not be read (they are not in the snapshot)."""
        return bool(self.stats.unreadable)


def find_parent(
    repo: Repository, paths: list[str], hostname: str, asset: str = ""
) -> Snapshot | None:
    """The newest snapshot of the same paths (or the same asset) from the same host."""
    same = [
        s
        for s in repo.list_snapshots()
        if s.hostname == hostname and sorted(s.paths) == paths and s.asset.get("name", "") == asset
    ]
    return same[-1] if same else None


def backup(
    repo: Repository,
    paths: list[str | Path],
    *,
    tags: list[str] | None = None,
    excludes: list[str] | None = None,
    hostname: str | None = None,
    parent: Snapshot | None = None,
    use_parent: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
    residency: str = "",
    entries: list[Entry] | None = None,
    asset: dict[str, Any] | None = None,
    tensors: bool = True,
    delta_parent: Snapshot | None = None,
) -> BackupResult:
    """Back up ``paths`` into one new snapshot.

    A source (sources layer) gives ``entries`` instead of paths: files on disk
    and streams, laid out as the snapshot's tree; ``asset`` (name, kind,
    group, consistency point...) is recorded in the snapshot, and the parent
    is the same asset's previous snapshot.

    Model checkpoints are stored tensor by tensor (``tensors=False``: like any
    file); their delta parents are found in the parent snapshot and in this
    backup, or in ``delta_parent`` when given (engine/checkpoints.py).

    Unreadable files are skipped and listed in ``stats.unreadable``; the
    snapshot holds everything else. A crash or kill at any point leaves the
    repository valid, and running the same backup again reuses every pack
    already stored. ``residency`` records a residency rule (a region label)
    in the snapshot; it must be the repository's region (ResidencyViolation).
    """
    asset = asset or {}
    if entries is not None:
        if not asset.get("name"):
            raise UsageError("a backup of entries needs an asset name")
        paths = [f"asset:{asset['name']}"]
    if not paths:
        raise UsageError("nothing to back up: give at least one path")
    resolved = (
        [] if entries is not None else sorted({Path(p).expanduser().absolute() for p in paths})
    )
    missing = [str(p) for p in resolved if not p.exists() and not p.is_symlink()]
    if missing:
        raise UsageError(f"cannot back up {', '.join(missing)}: no such file or directory")
    residency = normalize_label(residency, "residency")
    refusal = residency_violation(
        residency, repo.config.region, "a snapshot with this rule", repo.storage.location
    )
    if refusal:
        raise ResidencyViolation(refusal)
    hostname = hostname or socket.gethostname()
    # Totals (for an ETA) cost a second walk of the tree: only when someone watches.
    scan = progress is not None
    progress = progress or Progress("backup")
    progress.start("backup")
    started = time.monotonic()
    start_time = datetime.now(UTC)
    str_paths = [str(p) for p in resolved] if entries is None else [str(p) for p in paths]
    with Lock(repo, exclusive=False):
        repo.load_index()
        repo.sync_index_with_packs()
        if parent is None and use_parent:
            parent = find_parent(repo, str_paths, hostname, asset.get("name", ""))
        done = threading.Event()
        if scan and entries is None:
            threading.Thread(
                target=scan_totals,
                args=(resolved, excludes or [], progress, done.is_set),
                daemon=True,
            ).start()
        writer = repo.writer()
        archiver = Archiver(
            repo,
            writer,
            excludes=excludes,
            progress=progress,
            workers=workers,
            tensors=tensors,
            delta_hint=delta_parent.tree if delta_parent else None,
        )
        try:
            parent_tree = parent.tree if parent else None
            if entries is not None:
                tree = archiver.archive_entries(entries, parent_tree)
            else:
                tree = archiver.archive(resolved, parent_tree)
            writer.flush()
        finally:
            done.set()
            archiver.close()
            writer.close()
        stats = archiver.stats
        duration = time.monotonic() - started
        snap = Snapshot(
            time=start_time.isoformat(),
            tree=tree,
            paths=str_paths,
            hostname=hostname,
            username=getpass.getuser(),
            tags=sorted(set(tags or [])),
            parent=parent.id if parent else None,
            excludes=list(excludes or []),
            residency=residency,
            asset=asset,
            program_version=f"seawall {__version__}",
            summary={
                "files_new": stats.files_new,
                "files_changed": stats.files_changed,
                "files_unmodified": stats.files_unmodified,
                "dirs": stats.dirs,
                "bytes_total": stats.bytes_total,
                "bytes_read": stats.bytes_read,
                "data_added": writer.stats.bytes_added,
                "data_stored": writer.stats.stored_bytes,
                "blobs_added": writer.stats.blobs_added,
                "unreadable": len(stats.unreadable),
                # new data by encoding: [plaintext bytes, stored bytes]
                "encodings": writer.stats.encodings,
                "duration_s": round(duration, 3),
            },
        )
        repo.save_snapshot(snap)
        if repo.config.immutability is not None:
            # Keep what the snapshots need retained (about every DAYS/2; see retention.py).
            # The snapshot is saved: a failure here is a warning, and the next backup retries.
            try:
                extend_if_due(repo)
            except SeawallError as err:
                repo.notes.append(f"could not extend the retention of the repository: {err}")
    return BackupResult(snap, stats, writer.stats, duration, parent)
