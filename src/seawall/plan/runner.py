"""Run a plan: back up every asset as one snapshot group; restore a group.

A backup of a plan is a *group*: an id, a capture instant, and one snapshot
per asset (``paths == ["asset:NAME"]``, tag ``asset:NAME``), each recording
the group id, the instant its own capture began, its consistency point and
its lineage. The group's record (a sealed ``group`` record in the
repository, holding the plan text and each asset's snapshot id) is written
LAST, after every snapshot: a group without a record is incomplete (its run
failed or was killed) and is never offered for restore. Its snapshots are
harmless, and the next backup reuses their data.

MLflow assets are captured after the others, so each model version's
lineage can name the snapshots of the same group's datasets (files and
checkpoints assets) and environment.

A restore picks the newest complete group at or before a time (or the group
of a given group or snapshot id), restores each asset's snapshot under
``TARGET/NAME/`` and lets the asset's source bring it back from there (a
new database, secrets made owner-only, a requirements file...). Tables
counted at capture are counted again in what was restored; a difference is
reported as damage, as is an asset whose source could not bring it back
(the others still come back).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seawall.engine.progress import Progress
from seawall.errors import (
    DamagedSnapshot,
    ResidencyViolation,
    SeawallError,
    SnapshotNotFound,
    SourceError,
    UsageError,
)
from seawall.operations.backup import BackupResult, backup
from seawall.operations.restore import RestoreResult, restore
from seawall.plan.anomaly import CLEARED_KIND, AnomalyScore, check_backup, clean_groups
from seawall.plan.anomaly import RECORD_KIND as ANOMALY_KIND
from seawall.plan.hooks import goldens_of
from seawall.plan.model import (
    AnyAsset,
    CheckpointsAsset,
    ConfigAsset,
    EnvironmentAsset,
    FilesAsset,
    Plan,
    PostgresAsset,
    SqliteAsset,
    parse_plan,
)
from seawall.repository.repo import Repository
from seawall.repository.residency import residency_violation
from seawall.repository.snapshot import Snapshot
from seawall.sources.base import Source
from seawall.sources.config import ConfigSource

#: Kinds whose snapshots are a model version's data, and its runtime, in lineage.
DATASET_KINDS = ("files", "checkpoints")
RECORD = "group"

Log = Callable[[str], None]


def source_for(asset: AnyAsset) -> Source:
    """The source that captures and restores ``asset``."""
    if isinstance(asset, FilesAsset | CheckpointsAsset):
        from seawall.sources.files import FilesSource

        excludes = asset.excludes if isinstance(asset, FilesAsset) else []
        return FilesSource(asset.paths, excludes, kind=asset.kind)
    if isinstance(asset, SqliteAsset):
        from seawall.sources.sqlite import SqliteSource

        return SqliteSource(asset.path)
    if isinstance(asset, PostgresAsset):
        from seawall.sources.postgres import PostgresSource

        return PostgresSource(asset.dsn, asset.schemas, asset.tables)
    if isinstance(asset, ConfigAsset):
        return ConfigSource(asset.files, asset.env, asset.secret_env, asset.secret_files)
    if isinstance(asset, EnvironmentAsset):
        from seawall.sources.environment import EnvironmentSource

        return EnvironmentSource(asset.lock_files, asset.python)
    try:
        from seawall.sources.mlflow import MlflowSource
    except ImportError as err:  # the optional dependency: seawall[mlflow]
        raise UsageError(
            f"asset {asset.name!r} is an MLflow registry, which needs the mlflow package "
            f"({err}): pip install 'seawall[mlflow]'"
        ) from None
    return MlflowSource(asset.backend_uri, asset.artifacts, asset.name)


# --- backup --------------------------------------------------------------------------------


@dataclass
class AssetBackup:
    name: str
    kind: str
    result: BackupResult
    #: its anomaly score (plan/anomaly.py); None if it could not be computed
    anomaly: AnomalyScore | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self.result.snapshot


@dataclass
class GroupBackup:
    group: str
    time: datetime
    assets: list[AssetBackup]
    #: the id of the group's record
    record: str
    duration: float

    @property
    def partial(self) -> bool:
        """Some files of some asset could not be read (they are not in its snapshot)."""
        return any(a.result.partial for a in self.assets)


def backup_plan(
    plan: Plan,
    repo: Repository,
    *,
    hostname: str | None = None,
    progress: Progress | None = None,
    stage_dir: Path | None = None,
    log: Log | None = None,
) -> GroupBackup:
    """Capture every asset of ``plan`` into ``repo`` as one snapshot group.

    Nothing is captured unless every asset can be (its files exist, its
    variables are set, its residency rule allows this repository). If an
    asset fails, the backup stops with an error naming it and no group
    record is written. ``stage_dir`` is where sources write what they must
    stage (a SQLite copy); the system's temporary directory by default.
    """
    preflight(plan, repo)
    hostname = hostname or socket.gethostname()
    group = secrets.token_hex(8)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    # MLflow last: its model versions' lineage names the snapshots taken before it.
    ordered = sorted(plan.assets, key=lambda a: a.kind == "mlflow")
    done: list[AssetBackup] = []
    for asset in ordered:
        if log:
            log(f"capturing {asset.name} ({asset.kind})")
        captured_at = datetime.now(UTC)
        try:
            with (
                tempfile.TemporaryDirectory(
                    prefix=f"seawall-{asset.name}-", dir=stage_dir
                ) as stage,
                source_for(asset).capture(Path(stage)) as captured,
            ):
                facts = {
                    "name": asset.name,
                    "kind": asset.kind,
                    "group": group,
                    "captured_at": captured_at.isoformat(),
                    "consistency": captured.consistency,
                    "lineage": _lineage(asset.kind, captured.lineage, done),
                }
                goldens = goldens_of(asset, Path(plan.origin).absolute().parent, log)
                if goldens is not None:  # its smoke test's, for drills (plan/hooks.py)
                    facts["goldens"] = goldens
                result = backup(
                    repo,
                    [],
                    entries=captured.entries,
                    excludes=captured.excludes,
                    asset=facts,
                    tags=[f"asset:{asset.name}", *asset.tags],
                    residency=asset.residency or "",
                    hostname=hostname,
                    progress=progress,
                )
        except (SeawallError, OSError) as err:
            if isinstance(err, SeawallError) and err.exit_code != 1:
                raise  # locked, wrong password, interrupted...: as they are
            stored = ", ".join(a.name for a in done)
            raise SourceError(
                f"backup of asset {asset.name!r} ({asset.kind}) failed: {err}. "
                "No snapshot group was recorded"
                + (f"; the snapshots of {stored} are kept and reused next time" if stored else "")
            ) from err
        # Scored before the group record is written: a restore never sees it unmarked.
        done.append(
            AssetBackup(asset.name, asset.kind, result, check_backup(repo, result.snapshot, log))
        )
    record = repo.save_record(
        RECORD,
        {
            "group": group,
            "time": started.isoformat(),
            "hostname": hostname,
            "plan_file": plan.origin,
            "plan": plan.text,
            "assets": {a.name: a.snapshot.id.hex() for a in done},
        },
    )
    order = {a.name: i for i, a in enumerate(plan.assets)}
    done.sort(key=lambda a: order[a.name])
    return GroupBackup(group, started, done, record.hex(), time.monotonic() - t0)


def preflight(plan: Plan, repo: Repository) -> None:
    """Refuse, before anything is captured, a plan this machine or repository cannot serve."""
    declared = plan.repositories.primary.region
    if declared and declared != repo.config.region:
        actual = f"region {repo.config.region!r}" if repo.config.region else "no region"
        raise ResidencyViolation(
            f"the plan says the primary repository is in region {declared!r}, but the "
            f"repository at {repo.storage.location} has {actual}"
        )
    problems = []
    for asset in plan.assets:
        refusal = residency_violation(
            asset.residency or "", repo.config.region, f"asset {asset.name}", repo.storage.location
        )
        if refusal:
            raise ResidencyViolation(refusal)
        problems += [f"{asset.name}: {m}" for m in missing(asset)]
    if problems:
        raise SourceError(
            "nothing was backed up: " + "; ".join(problems) + " (`seawall plan check` lists all)"
        )


def missing(asset: AnyAsset) -> list[str]:
    """What ``asset`` names that this machine lacks (paths, ``$VARIABLES``), names only."""
    if isinstance(asset, ConfigAsset):
        source = source_for(asset)
        assert isinstance(source, ConfigSource)
        return [f"{m} is missing" for m in source.missing()]
    paths: list[Path] = []
    if isinstance(asset, FilesAsset | CheckpointsAsset):
        paths = asset.paths
    elif isinstance(asset, SqliteAsset):
        paths = [asset.path]
    elif isinstance(asset, EnvironmentAsset):
        paths = asset.lock_files
    return [f"{p} is missing" for p in paths if not p.exists() and not p.is_symlink()]


def _lineage(kind: str, lineage: dict[str, Any], done: list[AssetBackup]) -> dict[str, Any]:
    """For an MLflow asset: each model version with the group's datasets and environment."""
    if kind != "mlflow" or "model_versions" not in lineage:
        return lineage
    datasets = {a.name: a.snapshot.id.hex() for a in done if a.kind in DATASET_KINDS}
    environment = {a.name: a.snapshot.id.hex() for a in done if a.kind == "environment"}
    versions = [
        {**version, "datasets": datasets, "environment": environment}
        for version in lineage["model_versions"]
    ]
    return {**lineage, "model_versions": versions}


# --- groups --------------------------------------------------------------------------------


@dataclass
class Group:
    id: str
    time: datetime
    hostname: str
    plan_file: str
    plan_text: str
    #: asset name -> snapshot id (hex)
    assets: dict[str, str]

    @property
    def short_id(self) -> str:
        return self.id[:8]


def list_groups(repo: Repository) -> list[Group]:
    """Every complete group (one with a record), oldest first."""
    groups = [
        Group(
            id=doc["group"],
            time=datetime.fromisoformat(doc["time"]),
            hostname=doc.get("hostname", ""),
            plan_file=doc.get("plan_file", ""),
            plan_text=doc.get("plan", ""),
            assets=dict(doc["assets"]),
        )
        for doc in repo.list_records(RECORD)
    ]
    return sorted(groups, key=lambda g: (g.time, g.id))


def find_group(
    repo: Repository,
    at: Group | datetime | str | None = None,
    *,
    clean: bool = False,
    asset: str | None = None,
    log: Log | None = None,
) -> Group:
    """The newest complete group (``at`` None or "latest"), the newest at or before a
    time, or the group of a group id or snapshot id (or a unique prefix of one); a
    Group found before is taken as it is. ``clean``: the newest and the newest at or
    before a time skip groups holding a snapshot (of ``asset``, else of any asset)
    marked suspect by the anomaly check (plan/anomaly.py); an id is taken as given."""
    if isinstance(at, Group):
        return at
    groups = list_groups(repo)
    if not groups:
        raise SnapshotNotFound(
            f"the repository at {repo.storage.location} has no complete snapshot group: "
            "run `seawall backup --plan PLAN` first"
        )
    if clean and (at is None or at == "latest" or isinstance(at, datetime)):
        groups = clean_groups(repo, groups, asset, log)
        if not groups:
            raise SnapshotNotFound(
                "every complete snapshot group holds a snapshot marked suspect by the anomaly "
                "check (`seawall anomalies` lists them): give a group id with --at to restore "
                "one anyway"
            )
    if asset is not None and (at is None or at == "latest" or isinstance(at, datetime)):
        # A backup of some assets only (a schedule's) makes a group without the others.
        groups = [g for g in groups if asset in g.assets] or groups
    if at is None or at == "latest":
        return groups[-1]
    if isinstance(at, datetime):
        when = at if at.tzinfo else at.astimezone()  # a time without a zone is local
        before = [g for g in groups if g.time <= when]
        if not before:
            raise SnapshotNotFound(
                f"no complete snapshot group at or before {when.isoformat()}; the oldest is "
                f"{groups[0].short_id} of {groups[0].time.isoformat()}"
            )
        return before[-1]
    name = at.lower()
    by_group = [g for g in groups if g.id.startswith(name)]
    if len(by_group) == 1:
        return by_group[0]
    if len(by_group) > 1:
        raise SnapshotNotFound(f"{len(by_group)} groups match {at!r}; give more of the id")
    snap = repo.resolve_snapshot(at)  # SnapshotNotFound if it is no snapshot either
    group_id = snap.asset.get("group")
    found = [g for g in groups if g.id == group_id]
    if not group_id or not found:
        why = (
            "is not part of a plan's group"
            if not group_id
            else (
                f"belongs to group {group_id[:8]}, which is incomplete (its backup did not finish)"
            )
        )
        raise SnapshotNotFound(f"snapshot {snap.short_id} {why}")
    return found[0]


def copy_groups(src: Repository, dst: Repository) -> int:
    """Give ``dst`` (a replica) the group records of ``src`` whose snapshots it holds
    copies of, with the copies' ids, so `restore --plan` and drills work from it as
    from the primary. An asset whose residency keeps it out of ``dst`` is left out
    of the copied group; a group with any other asset not copied (yet) is not
    copied. Returns how many group records were written."""
    copies = {s.original: s for s in dst.list_snapshots() if s.original}
    have = {g.id for g in list_groups(dst)}
    written = 0
    for doc in src.list_records(RECORD):
        if doc.get("group") in have:
            continue
        assets: dict[str, str] = {}
        for name, sid in dict(doc.get("assets", {})).items():
            try:
                snap = src.load_snapshot(bytes.fromhex(sid))
            except (SeawallError, ValueError):
                break  # forgotten since: the group is no longer whole anywhere
            copy = copies.get(snap.original or snap.id)
            if copy is not None:
                assets[name] = copy.id.hex()
            elif not residency_violation(snap.residency, dst.config.region, "", ""):
                break  # allowed there, just not copied yet
        else:
            if assets:
                record = {k: v for k, v in doc.items() if k not in ("id", "kind")}
                dst.save_record(RECORD, {**record, "assets": assets, "copied_from": doc["id"]})
                written += 1
    _copy_marks(src, dst)
    return written


def _copy_marks(src: Repository, dst: Repository) -> None:
    """The anomaly marks (and their clearings) of the groups ``dst`` holds: a replica
    passes over the same suspect groups as the primary. Marks name their group, which
    a copy keeps."""
    groups = {g.id for g in list_groups(dst)}
    done = {
        str(r.get("copied_from")): r["id"]
        for kind in (ANOMALY_KIND, CLEARED_KIND)
        for r in dst.list_records(kind)
    }
    for doc in src.list_records(ANOMALY_KIND):
        if doc.get("group") in groups and doc["id"] not in done:
            copy = {k: v for k, v in doc.items() if k not in ("id", "kind")}
            done[doc["id"]] = dst.save_record(
                ANOMALY_KIND, {**copy, "copied_from": doc["id"]}
            ).hex()
    for doc in src.list_records(CLEARED_KIND):
        mark = done.get(str(doc.get("anomaly")))
        if mark is not None and doc["id"] not in done:
            copy = {k: v for k, v in doc.items() if k not in ("id", "kind")}
            copy |= {"anomaly": mark, "copied_from": doc["id"]}
            done[doc["id"]] = dst.save_record(CLEARED_KIND, copy).hex()


def parse_at(text: str) -> datetime | str:
    """``--at``: an ISO 8601 date or time (with ``-`` or ``:``), else an id or "latest"."""
    if "-" in text or ":" in text:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"--at {text!r} is neither a time (e.g. 2025-06-01T12:00, local time unless "
                "it names a zone) nor a group or snapshot id"
            ) from None
    return text


# --- restore -------------------------------------------------------------------------------


@dataclass
class AssetRestore:
    name: str
    kind: str
    snapshot: Snapshot
    result: RestoreResult
    #: what the source reported (a database name, a report path...)
    facts: dict[str, Any]
    #: tables whose rows differ from what the capture counted
    mismatches: list[str] = field(default_factory=list)


@dataclass
class GroupRestore:
    group: Group
    target: Path
    assets: list[AssetRestore]
    duration: float


def restore_plan(
    plan: Plan,
    repo: Repository,
    target: str | Path,
    *,
    asset: str | None = None,
    at: Group | datetime | str | None = None,
    options: Mapping[str, Mapping[str, str]] | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
    include_suspect: bool = False,
) -> GroupRestore:
    """Restore the group ``at`` names (see :func:`find_group`), or one ``asset`` of it,
    under ``target``: each asset into ``TARGET/NAME/``, which must be absent or empty,
    then brought back by its source with ``options[NAME]``.

    Each asset is restored with the settings the group recorded (the plan of
    the day), so an asset since removed from the plan still comes back.
    Every asset that can come back does. DamagedSnapshot is raised at the end
    (its ``result`` is the report) if some data was damaged, a table does not
    have the rows the capture counted, or an asset's source failed (a
    database that exists, a bad option): that asset's files are removed, so
    the same restore with ``asset=NAME`` can be run again.

    Groups holding a snapshot marked suspect are passed over (a group id given in
    ``at`` is taken as given), unless ``include_suspect``.
    """
    t0 = time.monotonic()
    group = find_group(repo, at, clean=not include_suspect, asset=asset, log=log)
    recorded = parse_plan(
        group.plan_text,
        origin=f"the plan recorded in group {group.short_id}",
        base=Path(plan.origin).absolute().parent,
    )
    names = [asset] if asset else list(group.assets)
    options = dict(options or {})
    for name in [*names, *options]:
        if name not in group.assets:
            raise UsageError(
                f"group {group.short_id} has no asset {name!r} (it has {', '.join(group.assets)})"
            )
    target = Path(target).expanduser().absolute()
    for name in names:
        dest = target / name
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise UsageError(f"{dest} is not empty: restore into a new --target")
    done: list[AssetRestore] = []
    damaged: list[str] = []  # "asset: what" for every part that did not come back whole
    failed: list[str] = []
    for name in names:
        snap = repo.load_snapshot(bytes.fromhex(group.assets[name]))
        spec = recorded.asset(name)
        dest = target / name
        if log:
            log(f"restoring {name} ({spec.kind}) from snapshot {snap.short_id}")
        try:
            result = restore(repo, snap, dest, progress=progress)
        except DamagedSnapshot as err:
            if not isinstance(err.result, RestoreResult):
                raise
            # Its healthy files are there; its source would work from a damaged copy.
            damaged += [f"{name}: {path} is damaged" for path in err.damaged]
            done.append(AssetRestore(name, spec.kind, snap, err.result, {}))
            continue
        try:
            facts = source_for(spec).restore(dest, options.get(name, {}))
        except (SourceError, UsageError) as err:
            # Ours, and half done: removed, so the same command can bring it back later.
            shutil.rmtree(dest, ignore_errors=True)
            failed.append(name)
            damaged.append(f"{name}: {err}")
            continue
        item = AssetRestore(name, spec.kind, snap, result, facts)
        item.mismatches = _mismatches(snap.asset.get("consistency", {}), facts)
        damaged += [f"{name}: {m}" for m in item.mismatches]
        done.append(item)
    report = GroupRestore(group, target, done, time.monotonic() - t0)
    if damaged:
        again = (
            f"; {', '.join(failed)} not restored: run the restore again with --asset NAME"
            if failed
            else ""
        )
        raise DamagedSnapshot(
            f"restored group {group.short_id}, but not everything came back as captured: "
            + "; ".join(damaged[:10])
            + again,
            damaged,
            report,
        )
    return report


def _mismatches(consistency: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    """Tables whose restored rows (count, checksum) differ from those the capture saw."""
    captured, restored = consistency.get("tables"), facts.get("tables")
    if not isinstance(captured, dict) or not isinstance(restored, dict):
        return []
    out = []
    for table in sorted(captured.keys() | restored.keys()):
        was, now = captured.get(table), restored.get(table)
        if was != now:
            out.append(f"table {table}: captured {was}, restored {now}")
    return out
