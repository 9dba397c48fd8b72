"""Commands for immutable repositories: ``repair versions`` (a subcommand of ``repair``)."""

from __future__ import annotations

import click

from seawall.engine.progress import Progress

from .common import emit_json, info, open_repo, plural, progress_display, repo_options, warn

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.command("versions", short_help="Put back the intact versions an attacker hid.")
@repo_options
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be put back; change nothing.")
@json_option
def repair_versions_cmd(dry_run: bool, as_json: bool) -> None:
    """Immutable repositories: make the newest intact retained version of every
    deleted or overwritten object the current one again.

    Removes the delete markers and the versions written over it where the
    store allows, else copies the intact version back on top (with the
    repository's retention). Intact versions are never deleted. Run it after
    `seawall check` reports objects that were deleted or overwritten.
    """
    repo = open_repo()
    from seawall.operations.versions import repair_versions

    with progress_display(Progress("repair versions")) as progress:
        result = repair_versions(repo, dry_run=dry_run, progress=progress)
    if as_json:
        emit_json(result.__dict__)
    else:
        for name, how in sorted(result.restored.items()):
            info(f"{name}: {how}")
        for name in result.lost:
            warn(f"{name}: no intact version is left; `seawall check` says what it held")
        verb = "would put back" if dry_run else "put back"
        info(f"{verb} {plural(len(result.restored), 'object')}; {len(result.lost)} lost")
    if result.lost:
        raise click.exceptions.Exit(1)
