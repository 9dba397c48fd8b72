"""The control plane's commands: serve, user, token, jobs, audit.

``serve`` runs the plan's schedules and the HTTP API. ``user`` and
``token`` manage who may use the API (on the server's host: whoever runs
them there owns the state directory, so no second factor is asked). ``jobs``
lists the runs the server recorded. ``audit log`` and ``audit verify`` read
the audit log kept in the repository.
"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seawall.errors import UsageError

from .common import echo_err, emit_json, info, local_time, open_repo, plural, repo_options, warn
from .plan_cmds import load, plan_option, use_plan_repository

if TYPE_CHECKING:
    from seawall.control.access import NewCredentials
    from seawall.control.audit import AuditLog
    from seawall.control.store import StateStore
    from seawall.plan.model import Plan

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
state_option = click.option(
    "--state-dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="The control plane's state (users, jobs, schedule) [default: .seawall beside the plan].",
)
required_plan = click.option(
    "--plan",
    "plan_file",
    metavar="PLAN",
    required=True,
    type=click.Path(dir_okay=False),
    help="The plan file (seawall.yaml).",
)


def _state(plan: Plan, state_dir: str | None) -> StateStore:
    from seawall.control.plane import default_state_dir
    from seawall.control.store import StateStore

    return StateStore(state_dir or default_state_dir(plan))


# --- serve ----------------------------------------------------------------------------------


@click.command("serve", short_help="Run the plan's schedules and the control-plane HTTP API.")
@required_plan
@state_option
@click.option(
    "--listen",
    default="127.0.0.1:8600",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (port 0 picks a free one).",
)
@click.option("--tls-cert", metavar="FILE", help="Serve HTTPS with this PEM certificate (chain).")
@click.option("--tls-key", metavar="FILE", help="The PEM private key of --tls-cert.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Jobs that may run at once.",
)
@click.option("--access-log", is_flag=True, help="Log every request (never its token).")
def serve_cmd(
    plan_file: str,
    state_dir: str | None,
    listen: str,
    tls_cert: str | None,
    tls_key: str | None,
    workers: int,
    access_log: bool,
) -> None:
    """Serve the plan PLAN: run its schedules (backups, copies to replicas,
    forget and prune, drills) and the HTTP API (docs at /docs, the OpenAPI
    schema at /openapi.json).

    The repository password comes from the plan, else the usual options and
    environment. Add a first admin with `seawall user add NAME --role admin
    --plan PLAN` before calling the API. Every operation is recorded in the
    repository's audit log.
    """
    from seawall.control.plane import ControlPlane
    from seawall.interfaces.api.serve import serve
    from seawall.interfaces.cli.common import read_password
    from seawall.interfaces.server.serve import is_loopback, parse_listen

    plan = load(plan_file)
    use_plan_repository(plan)
    host, _port = parse_listen(listen)
    if not tls_cert and not is_loopback(host):
        warn(
            f"serving {listen} over plain HTTP: API tokens and TOTP codes travel in clear "
            "text; give --tls-cert and --tls-key"
        )
    store = _state(plan, state_dir)
    plane = ControlPlane(plan, store, password=read_password(), workers=workers)

    def ready(url: str) -> None:
        # One line, flushed at once: scripts and tests wait for it.
        echo_err(f"seawall serve: serving {plan_file} on {url} (state in {store.directory})")

    # SIGTERM (a service manager's stop) ends it as Ctrl-C does: jobs cancelled, exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve(plane, listen, tls_cert=tls_cert, tls_key=tls_key, access_log=access_log, ready=ready)
    except KeyboardInterrupt:
        echo_err("seawall serve: stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --- users and tokens -----------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Manage the control plane's users (run on the server's host)."""


def _show_credentials(new: NewCredentials, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "user": new.user.name,
                "role": new.user.role.name,
                "token": new.token,
                "token_expires": new.expires,
                "totp_uri": new.totp_uri,
            }
        )
        return
    click.echo(f"user {new.user.name} ({new.user.role.name})")
    click.echo(f"API token (shown once, store it now): {new.token}")
    click.echo(f"it works until {local_time(new.expires)}" if new.expires else "it never expires")
    if new.totp_uri:
        click.echo(f"TOTP (add to an authenticator app): {new.totp_uri}")


def _audited_plan(plan_file: str) -> Plan:
    """The plan, with its primary repository opened: the audit entry goes there."""
    plan = load(plan_file)
    use_plan_repository(plan)
    open_repo()
    return plan


def _ttl(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta | None:
    from seawall.plan.model import parse_duration

    if value == "never":
        return None
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


expires_option = click.option(
    "--expires-in",
    default="90d",
    show_default=True,
    callback=_ttl,
    metavar="DURATION",
    help="How long the token works (e.g. 30d, 12h), or `never`.",
)


@user_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "auditor", "operator", "admin"]),
    required=True,
    help="viewer: read status; auditor: + audit log and reports; operator: + backups, "
    "drills, sandbox restores; admin: + restores elsewhere, forget/prune, keys, users.",
)
@required_plan
@state_option
@expires_option
@json_option
def user_add(
    name: str,
    role: str,
    plan_file: str,
    state_dir: str | None,
    expires_in: timedelta | None,
    as_json: bool,
) -> None:
    """Add the user NAME: prints its API token and TOTP provisioning URI, once."""
    from seawall.control.access import Role, Users

    plan = _audited_plan(plan_file)
    users = Users(_state(plan, state_dir))
    _show_credentials(users.add(name, Role.parse(role), expires_in), as_json)


@user_group.command("list")
@required_plan
@state_option
@json_option
def user_list(plan_file: str, state_dir: str | None, as_json: bool) -> None:
    """List the users and their roles (never their tokens)."""
    from seawall.control.access import Users

    users = Users(_state(load(plan_file), state_dir)).all()
    if as_json:
        emit_json([{"name": u.name, "role": u.role.name, "created": u.created} for u in users])
        return
    for u in users:
        click.echo(f"{u.name:<24} {u.role.name:<9} since {local_time(u.created)}")
    info(plural(len(users), "user"))


@user_group.command("remove")
@click.argument("name")
@required_plan
@state_option
def user_remove(name: str, plan_file: str, state_dir: str | None) -> None:
    """Remove the user NAME; its token stops working at once."""
    from seawall.control.access import Users

    plan = _audited_plan(plan_file)
    user = Users(_state(plan, state_dir)).remove(name)
    info(f"removed user {user.name} ({user.role.name})")


@click.group("token")
def token_group() -> None:
    """Manage API tokens (run on the server's host)."""


@token_group.command("rotate")
@click.argument("name")
@required_plan
@state_option
@expires_option
@json_option
def token_rotate(
    name: str, plan_file: str, state_dir: str | None, expires_in: timedelta | None, as_json: bool
) -> None:
    """Give the user NAME a new API token; the old one stops working at once."""
    from seawall.control.access import Users

    plan = _audited_plan(plan_file)
    _show_credentials(Users(_state(plan, state_dir)).rotate(name, expires_in), as_json)


# --- jobs -------------------------------------------------------------------------------------


@click.command("jobs", short_help="List the jobs `seawall serve` ran, newest first.")
@required_plan
@state_option
@click.option("--kind", help="Only jobs of this kind (backup, restore, drill, copy, forget...).")
@click.option("--state", "state_", help="Only jobs in this state (ok, failed, running...).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@json_option
def jobs_cmd(
    plan_file: str,
    state_dir: str | None,
    kind: str | None,
    state_: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the jobs the server ran (scheduled and asked for), with their outcome."""
    from seawall.control.jobs import run_view

    store = _state(load(plan_file), state_dir)
    rows = store.runs(kind=kind, state=state_, limit=limit)
    if as_json:
        emit_json([run_view(r) for r in rows])
        return
    click.echo(f"{'Job':<13} {'Created':<20} {'Kind':<8} {'Trigger':<9} {'State':<11} Assets")
    for r in rows:
        click.echo(
            f"{r.id:<13} {local_time(r.created):<20} {r.kind:<8} {r.trigger:<9} {r.state:<11} "
            + ", ".join(r.assets)
            + (f"  ({r.error})" if r.error else "")
        )
    info(plural(len(rows), "job"))


# --- audit ------------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """Read and verify the audit log kept in the repository."""


def _audit_log(plan_file: str | None) -> tuple[AuditLog, Plan | None]:
    from seawall.control.audit import AuditLog

    plan = load(plan_file) if plan_file else None
    if plan is not None:
        use_plan_repository(plan)
    return AuditLog(open_repo()), plan


def _entries(n: int) -> str:
    return "1 entry" if n == 1 else f"{n} entries"


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).astimezone()
    except ValueError:
        raise UsageError(
            f"--{name} {value!r} is not a time: use ISO 8601, e.g. 2025-06-01T12:00"
        ) from None


@audit_group.command("log")
@repo_options
@plan_option
@click.option("--since", metavar="TIME", help="Entries at or after TIME (ISO 8601, local time).")
@click.option("--until", metavar="TIME", help="Entries at or before TIME.")
@click.option("--user", help="Entries of this user (an API user, or the CLI's local user).")
@click.option("--asset", help="Entries about this asset.")
@click.option("--operation", help="Entries of this operation (backup, restore, user...).")
@click.option("--outcome", type=click.Choice(["started", "ok", "failed", "denied", "partial"]))
@json_option
def audit_log_cmd(
    plan_file: str | None,
    since: str | None,
    until: str | None,
    user: str | None,
    asset: str | None,
    operation: str | None,
    outcome: str | None,
    as_json: bool,
) -> None:
    """Show the audit log, oldest first: who did what, to which assets, from where,
    when, and how it ended."""
    from seawall.control.audit import select

    log, _plan = _audit_log(plan_file)
    entries, unreadable = log.entries()
    shown = select(
        entries,
        since=_when(since, "since"),
        until=_when(until, "until"),
        user=user,
        asset=asset,
        operation=operation,
        outcome=outcome,
    )
    for rid, why in unreadable:
        warn(f"record {rid[:8]} cannot be read ({why}); run `seawall audit verify`")
    if as_json:
        emit_json([e.to_json() for e in shown])
        return
    for e in shown:
        where = f"{e.via}@{e.host}" + (f" from {e.remote}" if e.remote else "")
        what = ", ".join(e.assets) or "-"
        click.echo(
            f"{e.seq:>5} {local_time(e.time)} {e.user:<16} {e.operation:<14} {e.outcome:<8} "
            f"{what}  [{where}]" + (f"  {e.detail}" if e.detail else "")
        )
    info(_entries(len(shown)))


@audit_group.command("verify")
@repo_options
@plan_option
@state_option
@json_option
def audit_verify_cmd(plan_file: str | None, state_dir: str | None, as_json: bool) -> None:
    """Check the audit log's hash chain: an entry edited, removed or reordered is
    found and the first bad one named (exit 1). With the control plane's state
    (--plan or --state-dir), entries cut off the end are found too."""
    from seawall.control.audit import verify
    from seawall.control.plane import default_state_dir
    from seawall.control.store import DB_NAME, StateStore

    log, plan = _audit_log(plan_file)
    entries, unreadable = log.entries()
    directory = Path(state_dir) if state_dir else default_state_dir(plan) if plan else None
    anchor = None
    if directory is not None and (directory / DB_NAME).exists():
        anchor = StateStore(directory).audit_head(log.repo.config.id)
    result = verify(entries, unreadable, anchor=anchor)
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "entries": result.entries,
                "head": result.head.to_json() if result.head else None,
                "anchored": anchor is not None,
                "problems": [p.__dict__ for p in result.problems],
            }
        )
    elif result.ok:
        newest = result.head
        head = f", the newest {newest.seq} of {local_time(newest.time)}" if newest else ""
        info(f"audit log intact: {_entries(result.entries)}{head}")
    else:
        for problem in result.problems:
            echo_err(f"audit: {problem.message}")
        bad = result.problems[0]
        where = f"entry {bad.seq}" if bad.seq is not None else f"record {bad.record}"
        echo_err(f"seawall: the audit log does not verify: the first bad one is {where}")
    if not result.ok:
        raise click.exceptions.Exit(1)


COMMANDS = [serve_cmd, user_group, token_group, jobs_cmd, audit_group]
