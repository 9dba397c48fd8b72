"""Commands about the plan file: plan check, groups, and backup/restore --plan.

The repository (and where its password comes from) is the plan's primary
repository, unless --repo / --password-file say otherwise on the command
line. The plan wins over $SEAWALL_REPOSITORY, $SEAWALL_PASSWORD_FILE and
$SEAWALL_PASSWORD, which are used only when the plan does not say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from seawall.engine.progress import Progress
from seawall.errors import DamagedSnapshot, UsageError

from .common import (
    emit_json,
    human_bytes,
    info,
    local_time,
    open_repo,
    plural,
    progress_display,
    repo_options,
    settings,
    warn,
)

if TYPE_CHECKING:
    from seawall.plan.model import Plan
    from seawall.plan.runner import GroupRestore

PARTIAL_BACKUP = 3
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
plan_option = click.option(
    "--plan",
    "plan_file",
    metavar="PLAN",
    type=click.Path(dir_okay=False),
    help="The plan file (seawall.yaml) naming the repository.",
)


def load(plan_file: str) -> Plan:
    from seawall.plan.model import load_plan

    return load_plan(plan_file)


def use_plan_repository(plan: Plan) -> None:
    """The plan's primary repository and password source, unless the command line names
    others."""
    s, primary = settings(), plan.repositories.primary
    if not s.repo:
        s.repo = primary.location
        s.s3_endpoint = s.s3_endpoint or primary.s3_endpoint
    if not s.password_file:
        if primary.password_file:
            s.password_file = str(primary.password_file)
        s.password_env = primary.password_env


# --- plan check -----------------------------------------------------------------------------


@click.group("plan", short_help="Validate a plan file and show what it protects.")
def plan_group() -> None:
    """Work with plan files (seawall.yaml): what to protect, where, and how."""


@plan_group.command("check")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option(
    "--offline",
    is_flag=True,
    help="Only validate the file: do not look at the assets (no file walks, no connections).",
)
@json_option
def plan_check_cmd(plan_file: str, offline: bool, as_json: bool) -> None:
    """Validate PLAN and show what each asset would protect.

    Every problem in the file is listed with its line, column and field, and
    the command exits 2. A valid plan is then surveyed: paths are counted,
    databases reached, variables looked up (by name; secret values are never
    read). Anything that would make a backup fail is listed as a problem and
    the command exits 1.
    """
    from seawall.plan.check import survey

    plan = load(plan_file)
    report = survey(plan, probe=not offline)
    if as_json:
        emit_json(
            {
                "plan": plan_file,
                "valid": True,
                "repository": plan.repositories.primary.model_dump(mode="json"),
                "replicas": [r.model_dump(mode="json") for r in plan.repositories.replicas],
                "assets": [
                    {
                        "name": a.name,
                        "kind": a.kind,
                        "policies": a.policies,
                        "protects": [vars(i) for i in a.items],
                        "problems": a.problems,
                    }
                    for a in report.assets
                ],
                "notes": report.notes,
                "problems": report.problems,
            }
        )
    else:
        _show_survey(plan_file, plan, report)
    if report.problems:
        raise click.exceptions.Exit(1)


def _show_survey(plan_file: str, plan: Plan, report: Any) -> None:
    primary = plan.repositories.primary
    click.echo(f"plan {plan_file} is valid: {plural(len(plan.assets), 'asset')}")
    password = (
        f"password from ${primary.password_env}"
        if primary.password_env
        else f"password from {primary.password_file}"
        if primary.password_file
        else "password from the usual options"
    )
    region = f"region {primary.region}" if primary.region else "no region"
    click.echo(f"repository: {primary.location} ({region}; {password})")
    for replica in plan.repositories.replicas:
        click.echo(
            f"replica {replica.name}: {replica.location} (region {replica.region or 'none'})"
        )
    for asset in report.assets:
        p = asset.policies
        shown = [
            f"rpo {p['rpo']}" if p["rpo"] else "",
            f"rto {p['rto']}" if p["rto"] else "",
            f"keep {p['retention']}" if p["retention"] else "",
            f"residency {p['residency']}" if p["residency"] else "",
            f"tags {','.join(p['tags'])}" if p["tags"] else "",
        ]
        click.echo(f"\n{asset.name} ({asset.kind})  " + "  ".join(s for s in shown if s))
        for item in asset.items:
            parts = [
                item.what,
                plural(item.files, "file") if item.files is not None else "",
                human_bytes(item.bytes) if item.bytes is not None else "",
                f"({item.note})" if item.note else "",
            ]
            click.echo("  " + "  ".join(p for p in parts if p))
    if report.notes:
        click.echo("\nnotes:")
        for note in report.notes:
            click.echo(f"  {note}")
    if report.problems:
        click.echo("\nproblems (a backup would fail):")
        for problem in report.problems:
            click.echo(f"  {problem}")


# --- groups ---------------------------------------------------------------------------------


@click.command("groups", short_help="List the snapshot groups of plan backups.")
@repo_options
@plan_option
@json_option
def groups_cmd(plan_file: str | None, as_json: bool) -> None:
    """List the snapshot groups (one per `backup --plan`), oldest first.

    Only complete groups are listed: a backup that failed or was killed
    recorded no group. The repository is the plan's with --plan.
    """
    if plan_file:
        use_plan_repository(load(plan_file))
    repo = open_repo()
    from seawall.plan.runner import list_groups

    groups = list_groups(repo)
    if as_json:
        emit_json(
            [
                {
                    "id": g.id,
                    "time": g.time.isoformat(),
                    "hostname": g.hostname,
                    "plan_file": g.plan_file,
                    "assets": g.assets,
                }
                for g in groups
            ]
        )
        return
    click.echo(f"{'Group':<9} {'Time':<20} {'Host':<16} Assets")
    for g in groups:
        click.echo(
            f"{g.short_id:<9} {local_time(g.time.isoformat()):<20} {g.hostname[:16]:<16} "
            + ", ".join(f"{name} {sid[:8]}" for name, sid in g.assets.items())
        )
    click.echo(plural(len(groups), "group"))


# --- backup and restore with a plan (options of `backup` and `restore`) -----------------------


def backup_with_plan(plan_file: str, host: str | None, as_json: bool) -> None:
    plan = load(plan_file)
    use_plan_repository(plan)
    repo = open_repo()
    from seawall.plan.runner import backup_plan

    with progress_display(Progress("backup")) as progress:
        result = backup_plan(
            plan, repo, hostname=host, progress=progress, log=None if as_json else info
        )
    for item in result.assets:
        for path, why in item.result.stats.notes:
            warn(f"{item.name}: {path}: {why}")
        for path, why in item.result.stats.unreadable:
            click.echo(f"error: {item.name}: cannot read {path}: {why}", err=True)
        if item.anomaly is not None and item.anomaly.suspect:
            warn(
                f"{item.name}: snapshot {item.snapshot.short_id} is marked SUSPECT (restores "
                f"pass over it; `seawall anomalies`): {item.anomaly.summary()}"
            )
    if as_json:
        emit_json(
            {
                "group": result.group,
                "time": result.time.isoformat(),
                "record": result.record,
                "duration_s": round(result.duration, 3),
                "assets": [
                    {
                        "name": a.name,
                        "kind": a.kind,
                        "snapshot": a.snapshot.id.hex(),
                        "parent": a.snapshot.parent.hex() if a.snapshot.parent else None,
                        "asset": a.snapshot.asset,
                        "anomaly": a.anomaly.to_dict() if a.anomaly else None,
                        **a.snapshot.summary,
                    }
                    for a in result.assets
                ],
            }
        )
    else:
        for a in result.assets:
            s = a.snapshot.summary
            files = s["files_new"] + s["files_changed"] + s["files_unmodified"]
            info(
                f"  {a.name:<16} {a.kind:<12} snapshot {a.snapshot.short_id}  "
                f"{plural(files, 'file')}, {human_bytes(s['bytes_total'])} "
                f"({human_bytes(s['data_added'])} added)"
            )
        info(
            f"group {result.group[:8]} saved: {plural(len(result.assets), 'asset')} "
            f"captured from {local_time(result.time.isoformat())} in {result.duration:.2f}s"
        )
    if result.partial:
        click.echo(
            "warning: some files could not be read and are not in their snapshots",
            err=True,
        )
        raise click.exceptions.Exit(PARTIAL_BACKUP)


def restore_with_plan(
    plan_file: str,
    target: str,
    asset: str | None,
    at: str | None,
    option_args: tuple[str, ...],
    as_json: bool,
) -> None:
    from seawall.plan.runner import parse_at, restore_plan

    plan = load(plan_file)
    options = parse_options(option_args)
    when = parse_at(at) if at else None
    use_plan_repository(plan)
    repo = open_repo()
    damaged: DamagedSnapshot | None = None
    with progress_display(Progress("restore")) as progress:
        try:
            result = restore_plan(
                plan,
                repo,
                target,
                asset=asset,
                at=when,
                options=options,
                progress=progress,
                log=None if as_json else info,
            )
        except DamagedSnapshot as err:
            damaged, result = err, err.result  # type: ignore[assignment]
    if as_json:
        emit_json(_restore_json(result, damaged))
    else:
        _show_restore(result)
    if damaged is not None:
        for what in damaged.damaged:
            click.echo(f"damaged: {what}", err=True)
        click.echo(f"seawall: {damaged}", err=True)
        raise click.exceptions.Exit(1)


def parse_options(pairs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``ASSET.KEY=VALUE`` pairs, by asset."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        asset, dot, name = key.partition(".")
        if not (sep and dot and asset and name):
            raise UsageError(
                f"invalid --option {pair!r}: expected ASSET.KEY=VALUE, "
                "e.g. features.database=features_copy"
            )
        out.setdefault(asset, {})[name] = value
    return out


def _restore_json(result: GroupRestore, damaged: DamagedSnapshot | None) -> dict[str, Any]:
    return {
        "group": result.group.id,
        "time": result.group.time.isoformat(),
        "target": str(result.target),
        "duration_s": round(result.duration, 3),
        "assets": [
            {
                "name": a.name,
                "kind": a.kind,
                "snapshot": a.snapshot.id.hex(),
                "files": a.result.stats.files,
                "bytes": a.result.stats.bytes,
                "facts": a.facts,
                "mismatches": a.mismatches,
            }
            for a in result.assets
        ],
        "damaged": damaged.damaged if damaged else [],
    }


def _show_restore(result: GroupRestore) -> None:
    g = result.group
    for a in result.assets:
        s = a.result.stats
        info(
            f"  {a.name:<16} {a.kind:<12} snapshot {a.snapshot.short_id}  "
            f"{plural(s.files, 'file')}, {human_bytes(s.bytes)}"
        )
        for line in _fact_lines(a.facts):
            info(f"      {line}")
    info(
        f"restored group {g.short_id} of {local_time(g.time.isoformat())} to {result.target} "
        f"in {result.duration:.2f}s"
    )


def _fact_lines(facts: dict[str, Any]) -> list[str]:
    """What a person needs to know about an asset brought back, in a line or a few."""
    lines = []
    if "database" in facts:
        where = f" on {facts['server']}" if "server" in facts else ""
        lines.append(f"database {facts['database']}{where}")
    if "tables" in facts:
        lines.append(f"{plural(len(facts['tables']), 'table')} checked against the capture")
    if facts.get("env_file"):
        lines.append(
            f"{facts['env_file']}: {plural(len(facts['variables']), 'variable')} (owner-only)"
        )
    if facts.get("secret_files"):
        lines.append(f"{plural(len(facts['secret_files']), 'secret file')} (owner-only)")
    if "differences" in facts:
        diffs = facts["differences"]
        if not diffs:
            lines.append(f"{facts['requirements']} written; this machine matches the capture")
        else:
            lines.append(f"{facts['requirements']} written; this machine differs:")
        lines += [f"  {d}" for d in diffs[:20]]
        if len(diffs) > 20:
            lines.append(f"  ... {len(diffs) - 20} more in {facts['report']}")
    if "server_command" in facts:
        lines.append(f"start a server: {facts['server_command']}")
    if facts.get("server_url"):
        lines.append(f"server running at {facts['server_url']}")
    return lines


COMMANDS = [plan_group, groups_cmd]
