"""The copy command: replicate snapshots into another repository."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from seawall.engine.progress import Progress
from seawall.errors import DamagedSnapshot, ResidencyViolation, UsageError, WrongPassword
from seawall.storage import open_storage

from .common import (
    emit_json,
    human_bytes,
    info,
    open_repo,
    plural,
    progress_display,
    repo_options,
    repository_opened,
    settings,
)

if TYPE_CHECKING:
    from seawall.operations.copy import CopyResult
    from seawall.repository.repo import Repository


def _target_password(path: str | None) -> str:
    """From --to-password-file, $SEAWALL_TO_PASSWORD_FILE, $SEAWALL_TO_PASSWORD, or a prompt."""
    path = path or os.environ.get("SEAWALL_TO_PASSWORD_FILE")
    if path:
        try:
            password = Path(path).read_text().rstrip("\r\n")
        except OSError as err:
            raise UsageError(f"cannot read the password file {path}: {err.strerror}") from None
    elif "SEAWALL_TO_PASSWORD" in os.environ:
        password = os.environ["SEAWALL_TO_PASSWORD"]
    elif sys.stdin.isatty():
        password = getpass.getpass("enter the target repository's password: ")
    else:
        raise UsageError(
            "no password for the target repository: set SEAWALL_TO_PASSWORD or "
            "SEAWALL_TO_PASSWORD_FILE, or use --to-password-file"
        )
    if not password:
        raise UsageError("an empty password is not allowed")
    return password


def _open_target(location: str, password_file: str | None, s3_endpoint: str | None) -> Repository:
    from seawall.repository.repo import Repository

    storage = open_storage(location, s3_endpoint=s3_endpoint or settings().s3_endpoint)
    try:
        repo = Repository.open(storage, _target_password(password_file))
    except WrongPassword:
        raise WrongPassword(
            f"no key of the target repository at {storage.location} opens with that password; "
            "check SEAWALL_TO_PASSWORD / SEAWALL_TO_PASSWORD_FILE / --to-password-file"
        ) from None
    repository_opened(repo)
    return repo


@click.command("copy", short_help="Copy snapshots into another repository.")
@repo_options
@click.argument("snapshot_ids", nargs=-1)
@click.option(
    "--to",
    "to_repo",
    metavar="LOCATION",
    default=None,
    help="The target repository (default: $SEAWALL_TO_REPOSITORY).",
)
@click.option(
    "--to-password-file",
    metavar="FILE",
    default=None,
    help="Read the target's password from FILE (default: $SEAWALL_TO_PASSWORD_FILE, "
    "then $SEAWALL_TO_PASSWORD, then a prompt on a terminal).",
)
@click.option(
    "--to-s3-endpoint",
    metavar="URL",
    default=None,
    help="Endpoint URL for an s3: target (default: the --s3-endpoint of the source).",
)
@click.option(
    "--no-verify", is_flag=True, help="Do not read the copies back from the target to verify them."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def copy_cmd(
    snapshot_ids: tuple[str, ...],
    to_repo: str | None,
    to_password_file: str | None,
    to_s3_endpoint: str | None,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Copy snapshots (all, or the SNAPSHOT_IDS given) into the repository --to.

    The target may be on another backend and has its own password and keys:
    data is re-encrypted, and only what the target lacks is uploaded.
    Snapshots already copied are skipped, so an interrupted copy is finished
    by running it again. Each copy is read back from the target and checked
    against the source before it is recorded. A snapshot whose residency rule
    names another region than the target's is refused; the others are still
    copied, and the command exits 1.
    """
    location = to_repo or os.environ.get("SEAWALL_TO_REPOSITORY", "")
    if not location:
        raise UsageError("no target repository given: use --to LOCATION or SEAWALL_TO_REPOSITORY")
    src = open_repo()
    dst = _open_target(location, to_password_file, to_s3_endpoint)
    from seawall.operations.copy import copy

    error: DamagedSnapshot | ResidencyViolation | None = None
    with progress_display(Progress("copy")) as progress:
        try:
            result = copy(src, dst, list(snapshot_ids), progress=progress, verify=not no_verify)
        except (DamagedSnapshot, ResidencyViolation) as err:
            error = err
            result = cast("CopyResult", err.result)
    from seawall.control.audit import copy_audit_log
    from seawall.plan.runner import copy_groups

    groups = copy_groups(src, dst)  # plan backups: their groups go along, complete ones only
    if groups and not as_json:
        info(f"{groups} snapshot group(s) of plan backups recorded in the target")
    copy_audit_log(src, dst)  # the log must outlive the loss of the primary
    _report(result, as_json)
    if error is not None:
        raise error


def _report(result: CopyResult, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "copied": [
                    {
                        "source": c.source.id.hex(),
                        "target": c.target.id.hex(),
                        "blobs_read": c.blobs_read,
                        "verified_bytes": c.verified_bytes,
                    }
                    for c in result.copied
                ],
                "skipped": [
                    {"source": s.id.hex(), "target": t.id.hex()} for s, t in result.skipped
                ],
                "refused": [{"source": s.id.hex(), "reason": why} for s, why in result.refused],
                "failed": [{"source": s.id.hex(), "reason": why} for s, why in result.failed],
                "blobs_uploaded": result.written.blobs_added,
                "bytes_uploaded": result.written.bytes_added,
                "bytes_stored": result.written.stored_bytes,
                "bytes_read": result.bytes_read,
                "duration_s": round(result.duration, 3),
            }
        )
        return
    for s, t in result.skipped:
        info(f"snapshot {s.short_id} is already in the target (as {t.short_id})")
    for c in result.copied:
        info(f"snapshot {c.source.short_id} copied as {c.target.short_id}")
    w = result.written
    info(
        f"copied {plural(len(result.copied), 'snapshot')}, skipped {len(result.skipped)}: "
        f"read {human_bytes(result.bytes_read)}, uploaded {human_bytes(w.bytes_added)} "
        f"({human_bytes(w.stored_bytes)} stored) in {result.duration:.2f}s"
    )


COMMANDS = [copy_cmd]
