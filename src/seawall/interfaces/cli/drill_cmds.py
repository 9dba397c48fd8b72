"""Proving recovery: drill, status, chaos, and repair heal.

Exit codes of `seawall drill` (docs/ci.md): 0 every asset recovered and
verified within its targets; 1 a check failed or an asset could not be
recovered; 4 every check passed but an RTO or RPO target was missed; 5 every
check passed, but some asset came back only from a replica (the primary is
damaged or unreachable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seawall.engine.progress import Progress
from seawall.errors import UsageError
from seawall.storage import open_storage

from .common import (
    emit_json,
    info,
    open_repo,
    plural,
    progress_display,
    read_password,
    repo_location,
    repo_options,
    repository_opened,
    settings,
    warn,
)
from .plan_cmds import json_option, load, use_plan_repository

if TYPE_CHECKING:
    from seawall.plan.drill import DrillReport, Repositories
    from seawall.plan.model import Plan
    from seawall.repository.repo import Repository

required_plan = click.option(
    "--plan",
    "plan_file",
    metavar="PLAN",
    required=True,
    type=click.Path(dir_okay=False),
    help="The plan file (seawall.yaml).",
)


def plan_repositories(plan: Plan) -> Repositories:
    """The plan's repositories, the primary as the command line or the plan names it
    (it is opened only when needed: a drill goes on from a replica if it is down)."""
    from seawall.plan.drill import Repositories

    use_plan_repository(plan)
    s = settings()
    return Repositories(
        plan,
        read_password(),
        primary_location=repo_location(),
        primary_s3_endpoint=s.s3_endpoint,
        on_open=repository_opened,
    )


# --- drill ---------------------------------------------------------------------------------------


@click.command("drill", short_help="Restore into a sandbox, verify, and measure RTO and RPO.")
@repo_options
@required_plan
@click.option("--asset", metavar="NAME", default=None, help="Drill this asset only.")
@click.option(
    "--snapshot",
    metavar="ID",
    default=None,
    help="The group to drill: a group or snapshot id, or a time (default: the newest).",
)
@click.option(
    "--from-replica",
    metavar="NAME",
    default=None,
    help="Restore from this replica of the plan only (default: the primary, then the "
    "replicas if it fails).",
)
@click.option(
    "--report-dir",
    metavar="DIR",
    default=None,
    type=click.Path(file_okay=False),
    help="Write drill-report.json and drill-report.html into DIR.",
)
@click.option(
    "--sandbox",
    metavar="DIR",
    default=None,
    type=click.Path(file_okay=False),
    help="Restore below DIR (default: a new temporary directory).",
)
@click.option(
    "--keep-sandbox", is_flag=True, help="Leave the restored files (not databases or servers)."
)
@json_option
def drill_cmd(
    plan_file: str,
    asset: str | None,
    snapshot: str | None,
    from_replica: str | None,
    report_dir: str | None,
    sandbox: str | None,
    keep_sandbox: bool,
    as_json: bool,
) -> None:
    """Restore each asset of the plan from the newest snapshot group holding it (or
    --asset, or the group --snapshot names) into a fresh sandbox, with fresh
    databases and a fresh MLflow server, and prove it whole:
    every byte against the snapshot, tables against the capture, each model's
    outputs on its golden inputs, the registry through the new server, and the
    plan's own checks. RTO and RPO are measured and held to the plan's targets.

    \b
    Exit codes: 0 passed; 1 a check failed or an asset could not be restored;
    4 a target was missed; 5 recovered, but only from a replica.
    The result is recorded in the repository (see `seawall status`).
    """
    from seawall.plan.drill import run_drill

    plan = load(plan_file)
    repos = plan_repositories(plan)
    report = run_drill(
        plan,
        repos,
        asset=asset,
        snapshot=snapshot,
        from_replica=from_replica,
        sandbox=sandbox,
        keep_sandbox=keep_sandbox,
        log=None if as_json else info,
    )
    paths = _write(report, report_dir)
    if as_json:
        emit_json(report.to_dict())
    else:
        show_drill(report)
        for path in paths:
            info(f"report: {path}")
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _write(report: DrillReport, report_dir: str | None) -> list[Path]:
    if not report_dir:
        return []
    from seawall.plan.report import write_report

    return list(write_report(report, report_dir))


def show_drill(report: DrillReport) -> None:
    from seawall.plan.report import verdict

    for a in report.assets:
        failed = [c for c in a.checks if not c.passed]
        mark = "ok  " if a.passed and not a.missed_targets() else "FAIL"
        source = f" from {a.source}" if a.source else ""
        rto = f"RTO {a.rto_s:.1f}s" if a.rto_s is not None else "RTO -"
        if a.rto_target_s is not None:
            rto += f" (target {a.rto_target_s:g}s)"
        rpo = f"RPO {a.rpo_s:.0f}s" if a.rpo_s is not None else ""
        if rpo and a.rpo_target_s is not None:
            rpo += f" (target {a.rpo_target_s:g}s)"
        info(
            f"{mark} {a.name:<16} {a.kind:<12} {plural(len(a.checks), 'check')}{source}  "
            f"{rto}  {rpo}"
        )
        for c in failed:
            info(f"       {c.name}: {c.detail}")
        for m in a.missed_targets():
            info(f"       {m}")
        if a.error:
            info(f"       {a.error}")
    for finding in report.findings + [f for a in report.assets for f in a.findings]:
        warn(finding)
    if report.error:
        click.echo(f"error: {report.error}", err=True)
    word, _colour = verdict(report)
    info(
        f"drill {word.lower()}: group {report.group[:8] or '-'}, "
        f"{plural(len(report.assets), 'asset')}, total RTO {report.rto_s:.1f}s"
    )


# --- status --------------------------------------------------------------------------------------


@click.command("status", short_help="Newest snapshot and last drill of each asset.")
@repo_options
@required_plan
@json_option
def status_cmd(plan_file: str, as_json: bool) -> None:
    """Per asset of the plan: its newest complete snapshot group, how old it is against
    the RPO target, and its last drill and result. Exits 1 when an asset has no
    copy within its RPO or failed its last drill."""
    from seawall.plan.status import plan_status

    plan = load(plan_file)
    use_plan_repository(plan)
    status = plan_status(plan, open_repo())
    if as_json:
        emit_json(status.to_dict())
    else:
        click.echo(
            f"{'Asset':<16} {'Kind':<12} {'Newest':<9} {'Age':>8} {'RPO':>8}  "
            f"{'Last drill':<20} Result"
        )
        for a in status.assets:
            drill = (
                f"{_local(a.drill_time):<20} {'passed' if a.drill_passed else 'FAILED'}"
                if a.drill_time
                else f"{'never':<20} -"
            )
            click.echo(
                f"{a.name:<16} {a.kind:<12} {(a.group or '-')[:8]:<9} "
                f"{_age(a.age_s):>8} {_age(a.rpo_target_s):>8}  {drill}"
            )
        for a in status.assets:
            for problem in a.problems:
                warn(f"{a.name}: {problem}")
    if not status.ok:
        raise click.exceptions.Exit(1)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _local(iso: str) -> str:
    from .common import local_time

    return local_time(iso)


# --- chaos ---------------------------------------------------------------------------------------


@click.command("chaos", short_help="Inject a fault and check that a drill catches it.")
@repo_options
@required_plan
@click.argument(
    "fault",
    type=click.Choice(
        [
            "lose-pack",
            "corrupt-pack",
            "corrupt-index",
            "primary-down",
            "slow-storage",
            "kill-backup",
        ]
    ),
)
@click.option(
    "--in-place",
    is_flag=True,
    help="Damage the real primary repository instead of a copy of it (never needed for "
    "primary-down and slow-storage, which go through a fault wrapper).",
)
@click.option("--asset", metavar="NAME", default=None, help="Drill this asset only.")
@click.option("--seed", default=0, show_default=True, help="Which pack or index object to hit.")
@click.option(
    "--latency",
    default=0.05,
    show_default=True,
    metavar="SECONDS",
    help="slow-storage: the delay added to every call.",
)
@click.option(
    "--report-dir",
    metavar="DIR",
    default=None,
    type=click.Path(file_okay=False),
    help="Write chaos-report.json and the fault drill's report into DIR.",
)
@json_option
def chaos_cmd(
    plan_file: str,
    fault: str,
    asset: str | None,
    in_place: bool,
    seed: int,
    latency: float,
    report_dir: str | None,
    as_json: bool,
) -> None:
    """Inject FAULT and run a drill under it, then check that the drill caught what it
    must: a lost or corrupted pack named with the damaged assets, a damaged index
    named, recovery from a replica when the primary is down or damaged, a backup
    killed halfway leaving a valid repository that the next backup completes.

    Faults that damage a repository go into a copy of the primary, unless
    --in-place; replicas are only read, and chaos drills record nothing. Then
    the repair that applies (repair heal, repair index, backup again) is run on
    the copy and a second drill must pass. Exits 0 when everything went as it
    must, 1 otherwise.
    """
    import json

    from seawall.plan.chaos import run_chaos

    plan = load(plan_file)
    if in_place and fault in ("lose-pack", "corrupt-pack", "corrupt-index"):
        warn(f"--in-place: {fault} damages the real primary repository")
    result = run_chaos(
        plan,
        plan_repositories(plan),
        fault,
        asset=asset,
        in_place=in_place,
        seed=seed,
        latency=latency,
        log=None if as_json else info,
    )
    if report_dir:
        if result.drill is not None:
            _write(result.drill, report_dir)
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "chaos-report.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if as_json:
        emit_json(result.to_dict())
    else:
        info(f"fault: {result.fault}, into {result.injected_into}")
        info(f"injected: {result.injected}")
        info(f"expected: {result.expected}")
        for line in result.observed:
            info(f"observed: {line}")
        info(f"chaos {result.fault}: {'as expected' if result.passed else 'NOT as expected'}")
    if not result.passed:
        raise click.exceptions.Exit(1)


# --- repair heal ---------------------------------------------------------------------------------


@click.command("heal", short_help="Put back damaged or lost data from a replica.")
@repo_options
@click.option(
    "--from-replica",
    "replica",
    metavar="NAME|LOCATION",
    required=True,
    help="The replica: a replica's name in --plan, or a repository location.",
)
@click.option(
    "--plan",
    "plan_file",
    metavar="PLAN",
    default=None,
    type=click.Path(dir_okay=False),
    help="The plan naming the primary repository and its replicas.",
)
@click.option(
    "--from-password-file",
    metavar="FILE",
    default=None,
    help="The replica's password (default: the plan's setting for it, then "
    "$SEAWALL_FROM_PASSWORD, then the primary's password).",
)
@click.option(
    "--no-read-data",
    is_flag=True,
    help="Look for missing and truncated packs only (do not read every pack to find "
    "corrupted ones).",
)
@json_option
def repair_heal_cmd(
    replica: str,
    plan_file: str | None,
    from_password_file: str | None,
    no_read_data: bool,
    as_json: bool,
) -> None:
    """Heal the repository from a replica made by `seawall copy`: find the damaged
    packs (check --read-data), store again what they still hold, copy back from the
    replica what was lost (re-encrypted with this repository's keys and verified),
    rebuild the index, and check again. A damaged index is rebuilt from the packs
    first. Exits 1 if something could not be healed.
    """
    from seawall.operations.heal import heal

    plan = load(plan_file) if plan_file else None
    if plan is not None:
        use_plan_repository(plan)
    primary = open_repo()
    source = _open_replica(plan, replica, from_password_file)
    with progress_display(Progress("repair heal")) as progress:
        result = heal(primary, source, read_data=not no_read_data, progress=progress)
    after = result.after
    if as_json:
        emit_json(
            {
                "index_rebuilt": result.index_rebuilt,
                "damaged_packs": result.damaged_packs,
                "salvaged_blobs": result.salvaged_blobs,
                "healed": result.healed,
                "unhealed": result.unhealed,
                "packs_deleted": result.packs_deleted,
                "bytes_uploaded": result.bytes_uploaded,
                "errors_after": after.errors if after else [],
                "ok": result.ok,
            }
        )
    else:
        if result.index_rebuilt:
            info("the index was damaged: rebuilt it from the packs")
        for pack, why in result.damaged_packs.items():
            info(f"pack {pack[:12]}: {why}")
        if not result.damaged_packs and result.before.ok:
            info("nothing to heal: the repository checks clean")
        for short in result.healed:
            info(f"snapshot {short}: healed from {source.storage.location}")
        for short, why in result.unhealed.items():
            warn(f"snapshot {short}: not healed: {why}")
        if after is not None:
            info(
                "the repository now checks clean"
                if after.ok
                else f"the repository still has {plural(len(after.errors), 'error')}"
            )
    if not result.ok:
        raise click.exceptions.Exit(1)


def _open_replica(plan: Plan | None, replica: str, password_file: str | None) -> Repository:
    """A replica of the plan by name, else a repository location; its password from
    --from-password-file, $SEAWALL_FROM_PASSWORD, the plan's entry, or the primary's."""
    from seawall.plan.drill import read_password as entry_password
    from seawall.repository.repo import Repository

    password = os.environ.get("SEAWALL_FROM_PASSWORD")
    if password_file:
        try:
            password = Path(password_file).read_text().rstrip("\r\n")
        except OSError as err:
            raise UsageError(f"cannot read {password_file}: {err.strerror}") from None
    spec = (
        next((r for r in plan.repositories.replicas if r.name == replica), None) if plan else None
    )
    if spec is not None:
        location, endpoint = spec.location, spec.s3_endpoint
        password = password or entry_password(
            spec.password_env, spec.password_file, read_password()
        )
    else:
        location, endpoint = replica, settings().s3_endpoint
        password = password or read_password()
    return Repository.open(open_storage(location, s3_endpoint=endpoint), password)


COMMANDS = [drill_cmd, status_cmd, chaos_cmd]
