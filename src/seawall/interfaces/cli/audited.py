"""Audit entries for the CLI: every command that changes something appends one.

:func:`install` wraps the callbacks of the commands in :data:`AUDITED`.
While such a command runs, every repository it opens or creates is noted
(``Settings.on_open``) with the snapshots it holds; when the command ends,
each of those repositories gets an entry in its audit log: who (the local
user), on which host, the operation, its parameters (never a password,
token or restore option, which may hold one), the snapshots it created or
removed and their assets, and the outcome (``ok``, ``partial`` for a backup
that could not read some files, ``failed`` with the error).

A command that never opened a repository (a wrong password, a bad
argument) leaves no entry: writing one needs the repository's key.

If the entry cannot be written, the command's work stands (undoing a
backup would lose more than an entry): a command that succeeded then
fails with AuditError (exit 1) and says what was done; one that failed
anyway reports its own error, with a warning about the entry.
"""

from __future__ import annotations

import functools
import getpass
import re
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from seawall.errors import AuditError, SeawallError

from .common import Settings, echo_err

if TYPE_CHECKING:
    from seawall.repository.repo import Repository

#: command path -> the operation its entries name
AUDITED = {
    "init": "init",
    "backup": "backup",
    "restore": "restore",
    "forget": "forget",
    "prune": "prune",
    "copy": "copy",
    "unlock": "unlock",
    "drill": "drill",
    "chaos": "chaos",
    "heal": "heal",
    "key add": "key.add",
    "key remove": "key.remove",
    "key passwd": "key.passwd",
    "repair index": "repair.index",
    "repair versions": "repair.versions",
    "repair heal": "repair.heal",
    "user add": "user.add",
    "user remove": "user.remove",
    "token rotate": "token.rotate",
    "anomalies clear": "anomaly.clear",
}
#: Parameters never recorded: they may hold a secret (restore options may hold a DSN).
_SECRET = re.compile(r"pass|token|secret|option|key_file|dsn", re.IGNORECASE)
#: Exit codes that mean "done, with something to report" rather than failure.
_PARTIAL = {("backup", 3)}


def install(group: click.Group) -> None:
    for path, command in _walk(group, ""):
        if path in AUDITED and command.callback is not None:
            command.callback = _audited(AUDITED[path], command.callback)


def _walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        yield path, command
        if isinstance(command, click.Group):
            yield from _walk(command, path)


def _audited(operation: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        settings = ctx.ensure_object(Settings)
        opened: list[tuple[Repository, set[bytes]]] = []

        def note(repo: Repository) -> None:
            opened.append((repo, set(repo.list_ids("snapshots"))))

        settings.on_open.append(note)
        outcome, detail = "ok", ""
        error: BaseException | None = None
        try:
            result = callback(*args, **kwargs)
        except click.exceptions.Exit as exit_:
            if exit_.exit_code:
                partial = (operation, exit_.exit_code) in _PARTIAL
                outcome, detail = ("partial" if partial else "failed"), f"exit {exit_.exit_code}"
            error = exit_
        except KeyboardInterrupt as err:
            outcome, detail, error = "failed", "interrupted", err
        except Exception as err:  # recorded, then raised as it was
            outcome, detail, error = "failed", str(err) or type(err).__name__, err
        finally:
            settings.on_open.remove(note)
        params = _params(ctx)
        failures = [
            why
            for repo, before in opened
            if (why := _append(repo, before, operation, outcome, detail, params))
        ]
        if error is not None:
            for why in failures:
                echo_err(f"warning: {why}")
            raise error
        if failures:
            raise AuditError(
                f"{operation} succeeded, but its audit entry could not be written: "
                + "; ".join(failures)
                + ". The work is done and kept; fix the repository's access and run "
                "`seawall audit verify`"
            )
        return result

    return run


def _append(
    repo: Repository,
    before: set[bytes],
    operation: str,
    outcome: str,
    detail: str,
    params: dict[str, Any],
) -> str | None:
    """Append the entry to ``repo``'s audit log; what went wrong, if it could not be."""
    from seawall.control.audit import AuditLog

    try:
        after = set(repo.list_ids("snapshots"))
        created, removed = after - before, before - after
        assets = {str(params["asset"])} if params.get("asset") else set()
        for snap_id in created:
            name = repo.load_snapshot(snap_id).asset.get("name")
            if name:
                assets.add(str(name))
        AuditLog(repo).append(
            user=getpass.getuser(),
            via="cli",
            host=socket.gethostname(),
            operation=operation,
            outcome=outcome,
            assets=assets,
            snapshots=[s.hex() for s in created | removed],
            detail=detail,
            params={**params, "created": len(created), "removed": len(removed)},
        )
    except SeawallError as err:
        return f"audit log of {repo.storage.location}: {err}"
    return None


def _params(ctx: click.Context) -> dict[str, Any]:
    """The command's parameters worth recording: simple values, no secrets."""
    out: dict[str, Any] = {}
    for name, value in ctx.params.items():
        if _SECRET.search(name) or value in (None, False, (), ""):
            continue
        if isinstance(value, str | int | float | bool):
            out[name] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, str | int) for v in value):
            out[name] = list(value)
        else:
            out[name] = str(value)
    return out
