"""Commands that manage the repository: init, key, unlock, check, forget, prune, stats."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from seawall.engine.progress import Progress
from seawall.errors import UsageError
from seawall.repository.lock import list_locks, remove_locks

if TYPE_CHECKING:
    from seawall.operations.inspect import Stored
    from seawall.operations.prune import PruneResult
    from seawall.repository.repo import Repository

from .common import (
    emit_json,
    human_bytes,
    info,
    local_time,
    open_repo,
    open_repo_storage,
    plural,
    progress_display,
    read_password,
    repo_options,
    repository_opened,
    warn,
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.command()
@repo_options
@click.option(
    "--region",
    metavar="LABEL",
    default="",
    help="Label the repository with a region or jurisdiction (e.g. eu, us): snapshots "
    "with a residency rule are only stored in a repository of their region.",
)
@click.option(
    "--immutable",
    "immutable_days",
    type=click.IntRange(min=1),
    metavar="DAYS",
    default=None,
    help="Make the repository immutable: every object but locks is written with an S3 "
    "Object Lock retention of DAYS days, extended while snapshots need it (the bucket must "
    "have Object Lock enabled).",
)
@click.option(
    "--lock-mode",
    type=click.Choice(["governance", "compliance"]),
    default="governance",
    show_default=True,
    help="Object Lock mode for --immutable: in compliance mode nobody, not even the "
    "bucket's owner, can delete a retained object.",
)
def init(region: str, immutable_days: int | None, lock_mode: str) -> None:
    """Create a new, empty repository at --repo.

    The password is asked twice on a terminal, or read from
    $SEAWALL_PASSWORD / $SEAWALL_PASSWORD_FILE / --password-file. Losing every
    password of a repository means losing its data: keep one somewhere safe.
    """
    storage = open_repo_storage()
    from seawall.repository.config import Immutability
    from seawall.repository.repo import Repository

    if immutable_days is None and lock_mode != "governance":
        raise UsageError("--lock-mode goes with --immutable DAYS")
    immutability = Immutability(immutable_days, lock_mode) if immutable_days else None
    if immutability is not None:  # refuse before asking for a password
        from seawall.repository.versions import require_object_lock

        require_object_lock(storage, immutability)
    repo = Repository.init(
        storage, read_password(confirm=True), region=region, immutability=immutability
    )
    repository_opened(repo)
    labelled = f" (region {repo.config.region})" if repo.config.region else ""
    info(f"created seawall repository {repo.config.id[:10]} at {storage.location}{labelled}")
    if immutability is not None:
        info(
            f"immutable: every object but locks is retained {plural(immutability.days, 'day')} "
            f"(Object Lock, {immutability.mode} mode), and longer while snapshots need it"
        )


@click.group()
def key() -> None:
    """Manage the passwords (keys) that open the repository."""


@key.command("list")
@repo_options
@json_option
def key_list(as_json: bool) -> None:
    """List the repository's keys; * marks the one in use."""
    repo = open_repo()
    keys = repo.list_keys()
    if as_json:
        emit_json([{**k.__dict__, "current": k.id == repo.key_id} for k in keys])
        return
    click.echo(f"  {'ID':<12}  {'Created':<19}  User@Host")
    for k in keys:
        mark = "*" if k.id == repo.key_id else " "
        click.echo(f"{mark} {k.id[:12]}  {local_time(k.created)}  {k.username}@{k.hostname}")


new_password_option = click.option(
    "--new-password-file",
    metavar="FILE",
    help="Read the new password from FILE (default: $SEAWALL_NEW_PASSWORD, "
    "then a prompt on a terminal).",
)


@key.command("add")
@repo_options
@new_password_option
def key_add(new_password_file: str | None) -> None:
    """Add another password that opens the repository."""
    repo = open_repo()
    new = _new_password(new_password_file)
    info(f"added key {repo.add_key(new)[:12]}")


@key.command("remove", short_help="Remove a key (not the one in use).")
@repo_options
@click.argument("key_id")
def key_remove(key_id: str) -> None:
    """Remove the key KEY_ID (or a unique prefix of it).

    The key in use, the one the given password opens, cannot be removed.
    """
    repo = open_repo()
    info(f"removed key {repo.remove_key(key_id)[:12]}")


@key.command("passwd", short_help="Change the password in use.")
@repo_options
@new_password_option
def key_passwd(new_password_file: str | None) -> None:
    """Change the password in use: adds a key for the new password, then removes the old key.

    No data is rewritten. Other keys (see `seawall key list`) keep working.
    """
    repo = open_repo()
    old = repo.key_id
    new_id = repo.change_password(_new_password(new_password_file))
    info(f"password changed: key {old[:12]} replaced by {new_id[:12]}")


def _new_password(path: str | None) -> str:
    if path:
        try:
            value = Path(path).read_text().rstrip("\r\n")
        except OSError as err:
            raise UsageError(f"cannot read {path}: {err.strerror}") from None
    elif "SEAWALL_NEW_PASSWORD" in os.environ:
        value = os.environ["SEAWALL_NEW_PASSWORD"]
    elif sys.stdin.isatty():
        value = getpass.getpass("enter new password: ")
        if value != getpass.getpass("enter new password again: "):
            raise UsageError("the passwords do not match")
    else:
        raise UsageError("give the new password with --new-password-file or $SEAWALL_NEW_PASSWORD")
    if not value:
        raise UsageError("an empty password is not allowed")
    return value


@click.command()
@repo_options
@click.option("--remove-all", is_flag=True, help="Remove every lock, not only stale ones.")
def unlock(remove_all: bool) -> None:
    """Remove stale locks left by processes that died.

    A lock is stale when its process is gone (same host) or it has not been
    refreshed for 30 minutes. Use --remove-all only when you are sure no
    other seawall process is using the repository.
    """
    repo = open_repo()
    removed = remove_locks(repo, all_locks=remove_all)
    for lock in removed:
        info(f"removed {lock.describe()}")
    remaining = list_locks(repo)
    info(
        f"removed {plural(len(removed), 'lock')}; {plural(len(remaining), 'live lock')} "
        f"{'remains' if len(remaining) == 1 else 'remain'}"
    )


@click.command("check", short_help="Verify the repository (all data with --read-data).")
@repo_options
@click.option("--read-data", is_flag=True, help="Also read every pack and verify every byte.")
@json_option
def check_cmd(read_data: bool, as_json: bool) -> None:
    """Verify the repository: index, packs, snapshots and, with --read-data, all data.

    Reports which snapshots and files each problem affects. Exits 1 when
    anything is wrong.
    """
    repo = open_repo()
    from seawall.operations.check import check

    with progress_display(Progress("check")) as progress:
        result = check(repo, read_data=read_data, progress=progress)
    if as_json:
        emit_json(result.__dict__ | {"ok": result.ok})
    else:
        for w in result.warnings:
            warn(w)
        for e in result.errors:
            click.echo(f"error: {e}", err=True)
        for sid, paths in sorted(result.damaged.items()):
            click.echo(
                f"snapshot {sid} is damaged: {plural(len(paths), 'path')} cannot be "
                "restored in full:",
                err=True,
            )
            for p in paths[:50]:
                click.echo(f"  {p or '/'}", err=True)
            if len(paths) > 50:
                click.echo(f"  ... and {len(paths) - 50} more", err=True)
        what = (
            "structure and all data"
            if read_data
            else "structure (add --read-data to verify all data)"
        )
        verdict = (
            "no errors were found" if result.ok else f"{plural(len(result.errors), 'error')} found"
        )
        info(
            f"checked {plural(result.snapshots, 'snapshot')}, {plural(result.packs, 'pack')}, "
            f"{plural(result.blobs, 'blob')}: {what}; {verdict}"
        )
    if not result.ok:
        raise click.exceptions.Exit(1)


@click.command("forget", short_help="Remove snapshots by id or by a --keep-* policy.")
@repo_options
@click.argument("snapshot_ids", nargs=-1)
@click.option("--keep-last", default=0, metavar="N", help="Keep the N newest snapshots.")
@click.option(
    "--keep-hourly",
    default=0,
    metavar="N",
    help="Keep the newest snapshot of each of the last N hours.",
)
@click.option(
    "--keep-daily",
    default=0,
    metavar="N",
    help="Keep the newest snapshot of each of the last N days.",
)
@click.option(
    "--keep-weekly", default=0, metavar="N", help="Keep the newest of each of the last N weeks."
)
@click.option(
    "--keep-monthly", default=0, metavar="N", help="Keep the newest of each of the last N months."
)
@click.option(
    "--keep-yearly", default=0, metavar="N", help="Keep the newest of each of the last N years."
)
@click.option("--keep-tag", multiple=True, metavar="TAG", help="Keep snapshots with this tag.")
@click.option("--prune", "then_prune", is_flag=True, help="Run prune afterwards to free the space.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@json_option
def forget_cmd(
    snapshot_ids: tuple[str, ...],
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_tag: tuple[str, ...],
    then_prune: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove snapshots: the ones named, or those a --keep-* policy does not keep.

    Snapshots are grouped by host and paths, and each group keeps its own.
    Only `prune` (or --prune) frees the data.
    """
    repo = open_repo()
    from seawall.operations.forget import KeepPolicy, forget, forget_ids

    report: dict[str, Any] = {}
    if snapshot_ids:
        named = forget_ids(repo, list(snapshot_ids), dry_run=dry_run)
        report["removed"] = [s.id.hex() for s in named.remove]
        if named.retained:
            report["retained"] = {sid.hex(): d.isoformat() for sid, d in named.retained.items()}
        if not as_json:
            for s in named.remove:
                info(f"{'would remove' if dry_run else 'removed'} snapshot {s.short_id}")
            for s in named.keep:
                info(f"kept snapshot {s.short_id}: {', '.join(named.reasons.get(s.id, []))}")
    else:
        policy = KeepPolicy(
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            tuple(keep_tag),
        )
        groups = forget(repo, policy, dry_run=dry_run)
        report["groups"] = [
            {
                "host": g.key[0],
                "paths": list(g.key[1]),
                "keep": [
                    {"id": s.id.hex(), "time": s.time, "reasons": g.reasons.get(s.id, [])}
                    for s in g.keep
                ],
                "remove": [{"id": s.id.hex(), "time": s.time} for s in g.remove],
                "retained": {sid.hex(): d.isoformat() for sid, d in g.retained.items()},
            }
            for g in groups
        ]
        if not as_json:
            for g in groups:
                info(
                    f"host {g.key[0]}, paths {', '.join(g.key[1])}: keep {len(g.keep)}, "
                    f"{'would remove' if dry_run else 'remove'} {len(g.remove)}"
                )
                for s in g.keep:
                    info(
                        f"  keep   {s.short_id}  {local_time(s.time)}  "
                        f"({', '.join(g.reasons.get(s.id, []))})"
                    )
                for s in g.remove:
                    info(f"  remove {s.short_id}  {local_time(s.time)}")
    if then_prune and not dry_run:
        report["prune"] = _run_prune(repo, dry_run=False, as_json=as_json).__dict__
    if as_json:
        emit_json(report)


@click.command("prune")
@repo_options
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be freed; change nothing.")
@json_option
def prune_cmd(dry_run: bool, as_json: bool) -> None:
    """Delete data no snapshot uses, and repack fragmented packs.

    Takes an exclusive lock. Safe to interrupt: a killed prune leaves a valid
    repository.
    """
    result = _run_prune(open_repo(), dry_run=dry_run, as_json=as_json)
    if as_json:
        emit_json(result.__dict__)


def _run_prune(repo: Repository, *, dry_run: bool, as_json: bool) -> PruneResult:
    from seawall.operations.prune import prune

    with progress_display(Progress("prune")) as progress:
        result = prune(repo, dry_run=dry_run, progress=progress)
    if not as_json:
        r = result
        unused, packs = plural(r.blobs_removed, "unused blob"), plural(r.packs_deleted, "pack")
        if dry_run:
            info(
                f"would free about {human_bytes(r.bytes_freed)}: delete {packs}, "
                f"repack {r.packs_repacked}, remove {unused}"
            )
        else:
            info(
                f"freed {human_bytes(r.bytes_freed)}: deleted {packs}, "
                f"repacked {r.packs_repacked} into {r.packs_written}, removed {unused}"
            )
        if r.retained:
            info(
                f"{'would keep' if dry_run else 'kept'} {plural(len(r.retained), 'object')} "
                "under retention (immutable repository); a prune after these dates removes them:"
            )
            for name, until in sorted(r.retained.items(), key=lambda kv: kv[1])[:20]:
                info(f"  {name}  retained until {until}")
            if len(r.retained) > 20:
                info(f"  ... and {len(r.retained) - 20} more")
        if r.retention_extended:
            info(f"extended the retention of {plural(r.retention_extended, 'object')} in use")
    return result


@click.command("stats", short_help="Show the repository's size, deduplication and compression.")
@repo_options
@json_option
def stats_cmd(as_json: bool) -> None:
    """Show how much data the repository holds, and its deduplication and compression.

    The restore size counts every file of every snapshot; unique data is what
    is left after deduplication, and stored is its size once compressed and
    encrypted in packs.
    """
    repo = open_repo()
    from seawall.operations.inspect import stats, storage_report

    s = stats(repo)
    report = storage_report(repo)
    im = repo.config.immutability
    if as_json:
        emit_json(
            s.__dict__
            | {"dedup_ratio": s.dedup_ratio, "compression_ratio": s.compression_ratio}
            | {"region": repo.config.region}
            | {"immutability": im.to_json() if im else None}
            | {
                "snapshots_storage": [
                    {
                        "snapshot": r.snapshot.id.hex(),
                        "time": r.snapshot.time,
                        **_stored_json(r.total),
                        "checkpoints": {p: _stored_json(c) for p, c in r.checkpoints.items()},
                    }
                    for r in report
                ]
            }
        )
        return
    click.echo(f"Region:         {repo.config.region or '(unlabelled)'}")
    if im is not None:
        click.echo(f"Immutable:      {plural(im.days, 'day')} of Object Lock ({im.mode} mode)")
    click.echo(f"Snapshots:      {s.snapshots}")
    click.echo(f"Restore size:   {human_bytes(s.restore_bytes)} in {plural(s.files, 'file')}")
    click.echo(f"Unique data:    {human_bytes(s.raw_bytes)} in {plural(s.blobs, 'blob')}")
    click.echo(f"Stored:         {human_bytes(s.stored_bytes)} in {plural(s.packs, 'pack')}")
    click.echo(f"Deduplication:  {s.dedup_ratio:.2f}x")
    click.echo(f"Compression:    {s.compression_ratio:.2f}x")
    if report:
        click.echo(
            "\nWhat each snapshot added (new stored bytes / its size; how its bytes are stored):"
        )
    for r in report:
        click.echo(f"  {r.snapshot.short_id} {r.snapshot.time[:19]}  {_stored_line(r.total)}")
        for path, cost in r.checkpoints.items():
            click.echo(f"      {path}  {_stored_line(cost)}")


def _stored_json(cost: Stored) -> dict[str, object]:
    return {"original": cost.original, "stored": cost.stored, "by_how": cost.raw}


def _stored_line(cost: Stored) -> str:
    shares = ", ".join(
        f"{how} {100 * n / cost.original:.0f}%"
        for how, n in cost.raw.items()
        if n and cost.original
    )
    return (
        f"{human_bytes(cost.stored)} / {human_bytes(cost.original)} "
        f"({100 * cost.ratio:.1f}%){': ' + shares if shares else ''}"
    )


@click.group()
def repair() -> None:
    """Repair a damaged repository."""


@repair.command("index", short_help="Rebuild the index from the pack files.")
@repo_options
@json_option
def repair_index_cmd(as_json: bool) -> None:
    """Rebuild the index from the pack files (after `check` reports a damaged index).

    Reads the header at the end of every pack, writes a new index, and removes
    the old index objects. Takes an exclusive lock. No data is rewritten.
    """
    repo = open_repo()
    from seawall.operations.repair import repair_index

    with progress_display(Progress("repair index")) as progress:
        result = repair_index(repo, progress=progress)
    if as_json:
        emit_json(result.__dict__)
        return
    for damaged in result.damaged_packs:
        warn(f"pack left out, its header is unreadable: {damaged}")
    info(
        f"indexed {result.blobs_indexed} blobs in {result.packs_indexed} packs; "
        f"replaced {result.index_objects_removed} index object(s) "
        f"with {result.index_objects_written}"
    )


COMMANDS = [init, key, unlock, check_cmd, forget_cmd, prune_cmd, stats_cmd, repair]
