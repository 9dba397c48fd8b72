"""Watching over recovery from the command line: the compliance report and anomaly marks.

``report compliance`` writes the compliance view of a plan (plan/compliance.py)
as JSON and HTML for auditors. ``anomalies`` lists the snapshots the anomaly
check marked suspect (plan/anomaly.py), which restores and drills pass over,
and ``anomalies clear`` records that a mark was a false alarm.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import click

from .common import emit_json, info, local_time, open_repo, plural, repo_options, warn
from .drill_cmds import plan_repositories, required_plan
from .plan_cmds import json_option, load, plan_option, use_plan_repository

if TYPE_CHECKING:
    from seawall.repository.repo import Repository


@click.group("report", short_help="Reports for auditors: compliance.")
def report_group() -> None:
    """Reports for auditors."""


@report_group.command("compliance")
@repo_options
@required_plan
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Write compliance.json and compliance.html into DIR.",
)
@json_option
def compliance_cmd(plan_file: str, out_dir: str, as_json: bool) -> None:
    """Per asset of the plan PLAN: where its copies are (repository and region),
    how they are encrypted, until when they are immutable, its residency rule and
    retention, its RPO and RTO, and its last successful drill; what an auditor
    would flag is listed as findings. Read from the repositories themselves.
    Exits 1 when there are findings."""
    from seawall.plan.compliance import compliance, write_compliance

    plan = load(plan_file)
    report = compliance(plan, plan_repositories(plan))
    paths = write_compliance(report, out_dir)
    if as_json:
        emit_json(report.to_dict())
    else:
        for a in report.assets:
            copies = ", ".join(
                f"{c.repository} ({c.region or 'no region'})" for c in a.copies if c.snapshots
            )
            drill = a.last_successful_drill
            click.echo(
                f"{a.name:<16} copies: {copies or 'none'}; last successful drill: "
                + (local_time(drill.time) if drill else "never")
            )
            for finding in a.findings:
                warn(f"{a.name}: {finding}")
        for path in paths:
            info(f"report: {path}")
    if not report.ok:
        raise click.exceptions.Exit(1)


def _open(plan_file: str | None) -> Repository:
    """The plan's primary repository, else the one --repo names."""
    if plan_file:
        use_plan_repository(load(plan_file))
    return open_repo()


@click.group("anomalies", invoke_without_command=True, short_help="Snapshots marked suspect.")
@repo_options
@plan_option
@json_option
@click.pass_context
def anomalies_group(ctx: click.Context, plan_file: str | None, as_json: bool) -> None:
    """List the snapshots the anomaly check marked suspect (a backup that looked
    like ransomware: data rewritten incompressible, mass deletion...), with the
    files that drove the mark. Restores and drills pass over the groups holding
    them unless given a group id."""
    if ctx.invoked_subcommand is not None:
        return
    from seawall.plan.anomaly import marks

    found = sorted(marks(_open(plan_file)).values(), key=lambda r: str(r.get("time")))
    if as_json:
        emit_json(found)
        return
    for mark in found:
        click.echo(
            f"{local_time(str(mark['time']))}  {mark.get('asset')}  snapshot "
            f"{str(mark['snapshot'])[:8]} (group {str(mark.get('group'))[:8]}, mark "
            f"{mark['id'][:8]})  {mark.get('summary', '')}"
        )
    info(plural(len(found), "marked snapshot"))


@anomalies_group.command("clear")
@click.argument("snapshot")
@click.option("--reason", required=True, help="Why the mark is a false alarm (recorded).")
@repo_options
@plan_option
def anomalies_clear(snapshot: str, reason: str, plan_file: str | None) -> None:
    """Clear the mark of SNAPSHOT (a snapshot or mark id, or a unique prefix): its
    group is offered for restore again. The mark stays in the repository, with a
    record of who cleared it and why."""
    from seawall.plan.anomaly import clear_mark

    mark = clear_mark(_open(plan_file), snapshot, reason=reason, by=getpass.getuser())
    info(
        f"cleared the mark of snapshot {str(mark['snapshot'])[:8]} ({mark.get('asset')}, "
        f"group {str(mark.get('group'))[:8]})"
    )


COMMANDS = [report_group, anomalies_group]
