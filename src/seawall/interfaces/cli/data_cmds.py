"""Commands about snapshots and their data: backup, snapshots, ls, diff, restore, demo."""

from __future__ import annotations

import os
import stat as statmod
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seawall.engine.progress import Progress
from seawall.errors import DamagedSnapshot

if TYPE_CHECKING:
    from seawall.repository.snapshot import Snapshot

from .common import (
    emit_json,
    human_bytes,
    info,
    local_time,
    open_repo,
    plural,
    progress_display,
    repo_options,
    warn,
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
PARTIAL_BACKUP = 3


@click.command("backup")
@repo_options
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--plan",
    "plan_file",
    metavar="PLAN",
    type=click.Path(dir_okay=False),
    help="Back up every asset of the plan file PLAN as one snapshot group, into the plan's "
    "repository (instead of PATHS).",
)
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the snapshot (repeatable).")
@click.option(
    "-e",
    "--exclude",
    "excludes",
    multiple=True,
    metavar="GLOB",
    help="Skip paths matching GLOB: a pattern without '/' matches names at any depth "
    "(e.g. '*.tmp'), one with '/' matches the full path (repeatable).",
)
@click.option("--host", metavar="NAME", help="Record this host name instead of this machine's.")
@click.option(
    "--force", is_flag=True, help="Read every file, even those unchanged since the parent snapshot."
)
@click.option(
    "--residency",
    metavar="REGION",
    default="",
    help="Record that this snapshot must stay in REGION: `copy` refuses to place it in a "
    "repository of another region (the repository's own region must be REGION).",
)
@click.option(
    "--delta-parent",
    metavar="SNAPSHOT",
    help="Store changed model checkpoints as deltas of the checkpoints in SNAPSHOT (by "
    "default: the same path in the parent snapshot, else the newest checkpoint with the same "
    "tensors).",
)
@click.option(
    "--no-tensors",
    is_flag=True,
    help="Store model checkpoints like any other file (no tensor split, transform or delta).",
)
@json_option
def backup_cmd(
    paths: tuple[str, ...],
    plan_file: str | None,
    tags: tuple[str, ...],
    excludes: tuple[str, ...],
    host: str | None,
    force: bool,
    residency: str,
    delta_parent: str | None,
    no_tensors: bool,
    as_json: bool,
) -> None:
    """Back up PATHS into a new snapshot.

    Files unchanged since the last snapshot of the same paths (same size,
    mtime and inode) are not read again. Files that cannot be read are
    skipped and listed, and the command exits with code 3.

    Model checkpoints (safetensors, PyTorch .pt/.pth/.bin, NumPy .npy/.npz,
    recognised by content) are split at tensor boundaries, float tensors are
    compressed with a byte-grouping transform, and a checkpoint that
    changed a little is stored as a lossless delta of its parent.

    With --plan, every asset of the plan (files, databases, an MLflow
    registry, config and secrets, the environment) is captured at its own
    consistency point into one snapshot group; see `seawall plan check`.
    """
    if plan_file:
        if paths or tags or excludes or residency or force or delta_parent or no_tensors:
            raise click.UsageError(
                "--plan backs up the plan's assets as the plan says: give no PATHS, --tag, "
                "--exclude, --residency, --force, --delta-parent or --no-tensors"
            )
        from .plan_cmds import backup_with_plan

        backup_with_plan(plan_file, host, as_json)
        return
    if not paths:
        raise click.UsageError("Missing argument 'PATHS...' (or --plan PLAN).")
    repo = open_repo()
    from seawall.operations.backup import backup  # after open_repo: see its docstring

    parent_hint = repo.resolve_snapshot(delta_parent) if delta_parent else None
    with progress_display(Progress("backup")) as progress:
        result = backup(
            repo,
            list(paths),
            tags=list(tags),
            excludes=list(excludes),
            hostname=host,
            use_parent=not force,
            progress=progress,
            residency=residency,
            tensors=not no_tensors,
            delta_parent=parent_hint,
        )
    s, w, snap = result.stats, result.written, result.snapshot
    for path, why in result.stats.notes:
        warn(f"{path}: {why}")
    for path, why in result.stats.unreadable:
        click.echo(f"error: cannot read {path}: {why}", err=True)
    if as_json:
        emit_json(
            {
                "snapshot": snap.id.hex(),
                "parent": snap.parent.hex() if snap.parent else None,
                **snap.summary,
                "unreadable": [{"path": p, "error": e} for p, e in s.unreadable],
            }
        )
    else:
        info(
            f"Files:  {s.files_new} new, {s.files_changed} changed, {s.files_unmodified} unmodified"
        )
        info(f"Dirs:   {s.dirs}")
        added, stored = human_bytes(w.bytes_added), human_bytes(w.stored_bytes)
        info(f"Added to the repository: {added} ({stored} stored)")
        for how, (raw, packed) in sorted(w.encodings.items()):
            if how != "generic":
                info(f"  {how}: {human_bytes(raw)} stored in {human_bytes(packed)}")
        rate = s.bytes_read / result.duration if result.duration else 0
        info(
            f"processed {plural(s.files_new + s.files_changed + s.files_unmodified, 'file')}, "
            f"{human_bytes(s.bytes_total)} in {result.duration:.2f}s ({human_bytes(rate)}/s read)"
        )
        info(f"snapshot {snap.short_id} saved")
    if result.partial:
        n = len(s.unreadable)
        click.echo(
            f"warning: {plural(n, 'file')} could not be read and {'is' if n == 1 else 'are'} "
            "not in the snapshot; give seawall read access or --exclude them",
            err=True,
        )
        raise click.exceptions.Exit(PARTIAL_BACKUP)


@click.command("snapshots")
@repo_options
@click.option("--tag", "tags", multiple=True, help="Only snapshots with this tag.")
@click.option("--host", help="Only snapshots from this host.")
@json_option
def snapshots_cmd(tags: tuple[str, ...], host: str | None, as_json: bool) -> None:
    """List snapshots, oldest first."""
    snaps = [
        s
        for s in open_repo().list_snapshots()
        if (not tags or set(tags) & set(s.tags)) and (not host or s.hostname == host)
    ]
    if as_json:
        emit_json(
            [
                {
                    "id": s.id.hex(),
                    "short_id": s.short_id,
                    "time": s.time,
                    "hostname": s.hostname,
                    "username": s.username,
                    "paths": s.paths,
                    "tags": s.tags,
                    "parent": s.parent.hex() if s.parent else None,
                    "summary": s.summary,
                    "residency": s.residency,
                    "original": s.original.hex() if s.original else None,
                    # a plan asset's name, kind, group, consistency point and lineage
                    "asset": s.asset,
                }
                for s in snaps
            ]
        )
        return
    click.echo(f"{'ID':<9} {'Time':<20} {'Host':<16} {'Tags':<16} {'Size':>10}  Paths")
    for s in snaps:
        size = human_bytes(s.summary.get("bytes_total", 0))
        click.echo(
            f"{s.short_id:<9} {local_time(s.time):<20} {s.hostname[:16]:<16} "
            f"{','.join(s.tags)[:16]:<16} {size:>10}  {', '.join(s.paths)}"
        )
    click.echo(plural(len(snaps), "snapshot"))


@click.command("ls", short_help="List the files in a snapshot.")
@repo_options
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@click.option("-l", "--long", "long_", is_flag=True, help="Show mode, size and time.")
@json_option
def ls_cmd(snapshot: str, path: str, long_: bool, as_json: bool) -> None:
    """List files in SNAPSHOT ('latest', an id or a unique prefix), under PATH."""
    repo = open_repo()
    from seawall.operations.inspect import ls

    snap = repo.resolve_snapshot(snapshot)
    rows = ls(repo, snap, path)
    if as_json:
        emit_json(
            [
                {
                    "path": p,
                    "type": n.type,
                    "mode": n.mode,
                    "size": n.size,
                    "mtime_ns": n.mtime_ns,
                    "uid": n.uid,
                    "gid": n.gid,
                }
                | ({"target": os.fsdecode(n.target)} if n.target is not None else {})
                for p, n in rows
            ]
        )
        return
    for line in _asset_lines(snap):
        click.echo(line)
    for p, n in rows:
        if long_:
            when = datetime.fromtimestamp(n.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
            kind = {"dir": statmod.S_IFDIR, "symlink": statmod.S_IFLNK}.get(n.type, statmod.S_IFREG)
            link = f" -> {os.fsdecode(n.target)}" if n.target is not None else ""
            click.echo(
                f"{statmod.filemode(kind | n.mode)} {n.uid:>5} {n.gid:>5} {n.size:>12} "
                f"{when} {p}{link}"
            )
        else:
            click.echo(p)


def _asset_lines(snap: Snapshot) -> list[str]:
    """For a snapshot of a plan's asset: what it is, and each model version's lineage."""
    a = snap.asset
    if not a:
        return []
    lines = [
        f"asset {a.get('name')} ({a.get('kind')}) of group {str(a.get('group', ''))[:8]}, "
        f"captured {local_time(a['captured_at']) if a.get('captured_at') else '?'}"
    ]
    for v in a.get("lineage", {}).get("model_versions", []):
        links = [
            f"{what} " + ", ".join(f"{name} {sid[:8]}" for name, sid in v.get(key, {}).items())
            for what, key in (("datasets", "datasets"), ("environment", "environment"))
            if v.get(key)
        ]
        lines.append(
            f"model {v.get('name')} version {v.get('version')} (run {v.get('run_id')}): "
            + ("; ".join(links) or "no dataset or environment in its group")
        )
    return lines


@click.command("diff")
@repo_options
@click.argument("snapshot1")
@click.argument("snapshot2")
@json_option
def diff_cmd(snapshot1: str, snapshot2: str, as_json: bool) -> None:
    """Show what changed between two snapshots.

    + added, - removed, M content changed, T type changed, U metadata changed.
    """
    repo = open_repo()
    from seawall.operations.inspect import diff

    a, b = repo.resolve_snapshot(snapshot1), repo.resolve_snapshot(snapshot2)
    changes = diff(repo, a, b)
    if as_json:
        emit_json([{"change": c.kind, "path": c.path} for c in changes])
        return
    for c in changes:
        click.echo(f"{c.kind}    {c.path}")
    counts = {k: sum(1 for c in changes if c.kind == k) for k in "+-MTU"}
    click.echo(
        f"added {counts['+']}, removed {counts['-']}, modified {counts['M']}, "
        f"type changed {counts['T']}, metadata changed {counts['U']}"
    )


@click.command("restore", short_help="Restore a snapshot, or a plan's assets, into a directory.")
@repo_options
@click.argument("snapshot", required=False)
@click.option(
    "-t",
    "--target",
    # required, but checked after SNAPSHOT so a bare `restore` asks for SNAPSHOT first
    type=click.Path(file_okay=False),
    help="Directory to restore into (required); snapshot paths are recreated below it.",
)
@click.option(
    "-i",
    "--include",
    "includes",
    multiple=True,
    metavar="PATH",
    help="Restore only PATH (as stored in the snapshot, e.g. /data/models) (repeatable).",
)
@click.option(
    "--plan",
    "plan_file",
    metavar="PLAN",
    type=click.Path(dir_okay=False),
    help="Restore the assets of a snapshot group of the plan PLAN (instead of SNAPSHOT), "
    "each into TARGET/ASSET/.",
)
@click.option("--asset", metavar="NAME", help="With --plan: only this asset.")
@click.option(
    "--at",
    metavar="TIME|ID",
    help="With --plan: the newest group at or before TIME (ISO 8601, local time unless it "
    "names a zone), or the group of a group or snapshot id (default: the newest group).",
)
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="ASSET.KEY=VALUE",
    help="With --plan: a restore option for one asset, e.g. features.database=features_copy "
    "(repeatable; docs/plan.md lists each kind's options).",
)
@json_option
def restore_cmd(
    snapshot: str | None,
    target: str | None,
    includes: tuple[str, ...],
    plan_file: str | None,
    asset: str | None,
    at: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Restore SNAPSHOT ('latest', an id or a unique prefix) into --target.

    Every byte is verified against its hash as it is written. If some data is
    missing or damaged, every healthy file is still restored, the damaged
    ones are listed, and the command exits 1.

    With --plan, the newest complete snapshot group (or the one --at names)
    is restored: each asset into TARGET/ASSET/, then brought back by its kind
    (a new database, secrets owner-only, a requirements file and how this
    machine differs...). Nothing existing is overwritten.
    """
    missing_target = click.UsageError("Missing option '-t' / '--target'.")
    if plan_file:
        if not target:
            raise missing_target
        if snapshot or includes:
            raise click.UsageError(
                "--plan restores a snapshot group: give no SNAPSHOT or --include"
            )
        from .plan_cmds import restore_with_plan

        restore_with_plan(plan_file, target, asset, at, options, as_json)
        return
    if asset or at or options:
        raise click.UsageError("--asset, --at and --option go with --plan")
    if not snapshot:
        raise click.UsageError("Missing argument 'SNAPSHOT' (or --plan PLAN).")
    if not target:
        raise missing_target
    repo = open_repo()
    from seawall.operations.restore import restore

    snap = repo.resolve_snapshot(snapshot)
    damaged: DamagedSnapshot | None = None
    with progress_display(Progress("restore")) as progress:
        try:
            result = restore(repo, snap, target, includes=list(includes), progress=progress)
        except DamagedSnapshot as err:
            damaged = err
            result = err.result  # type: ignore[assignment]
    s = result.stats
    if as_json:
        emit_json(
            {
                "snapshot": snap.id.hex(),
                "files": s.files,
                "dirs": s.dirs,
                "symlinks": s.symlinks,
                "bytes": s.bytes,
                "duration_s": result.duration,
                "damaged": [{"path": p, "error": e} for p, e in s.damaged],
            }
        )
    else:
        rate = s.bytes / result.duration if result.duration else 0
        info(
            f"restored snapshot {snap.short_id} to {target}: {plural(s.files, 'file')}, "
            f"{plural(s.dirs, 'dir')}, "
            f"{human_bytes(s.bytes)} in {result.duration:.2f}s ({human_bytes(rate)}/s)"
        )
    for path, why in s.notes:
        warn(f"{path}: {why}")
    if damaged is not None:
        for path, why in s.damaged:
            click.echo(f"damaged: {path}: {why}", err=True)
        click.echo(f"seawall: {damaged}", err=True)
        raise click.exceptions.Exit(1)


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to build the stack and repository (default: a new temporary directory).",
)
@click.option("--keep", is_flag=True, help="Keep the workdir afterwards for inspection.")
@json_option
def demo_cmd(workdir: Path | None, keep: bool, as_json: bool) -> None:
    """Run a disaster-recovery drill on a sample AI stack.

    Builds a fraud-detection stack (a dataset, model checkpoints with real
    MiniLM weights, an MLflow registry with a registered model from real
    training runs, a SQLite database, a config with a secret, the
    environment) and its plan file; backs it up as one snapshot group into
    a new local repository, twice; deletes the stack; restores it; verifies
    every file, the registry (as `verify mlflow`), the models' predictions,
    the database and the secret; and prints what it did with timings.
    Exits 1 if anything differs.
    """
    from seawall.plan.demo import run_demo  # numpy and mlflow: loaded on demand

    report = run_demo(workdir, keep=keep, log=None if as_json else info)
    if as_json:
        emit_json(report.to_json())
    else:
        for line in report.lines():
            info(line)
    if not report.ok:
        raise click.exceptions.Exit(1)


COMMANDS = [backup_cmd, snapshots_cmd, ls_cmd, diff_cmd, restore_cmd, demo_cmd]
