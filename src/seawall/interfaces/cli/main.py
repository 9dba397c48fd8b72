"""The ``seawall`` entry point: the command group, and errors mapped to exit codes.

Exit codes: 0 success; 1 error; 2 usage; 3 backup finished but some source
files could not be read; 10 no repository at that location; 11 the
repository is locked; 12 wrong password; 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import click

from seawall.engine.memory import tune_allocator
from seawall.errors import SeawallError
from seawall.interfaces.cli import (
    audited,
    control_cmds,
    copy_cmds,
    data_cmds,
    drill_cmds,
    immutable_cmds,
    plan_cmds,
    repo_cmds,
    server_cmds,
    verify_cmds,
    watch_cmds,
)
from seawall.interfaces.cli.common import S3_ENDPOINT_HELP, Settings, echo_err
from seawall.version import __version__

PARTIAL_BACKUP = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-r",
    "--repo",
    metavar="LOCATION",
    default=None,
    help="Repository location: a directory, s3:BUCKET/PREFIX, or rest:http(s)://HOST:PORT/ "
    "(default: $SEAWALL_REPOSITORY).",
)
@click.option(
    "--password-file",
    metavar="FILE",
    default=None,
    help="Read the repository password from FILE (default: $SEAWALL_PASSWORD_FILE, "
    "then $SEAWALL_PASSWORD, then a prompt on a terminal).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and requested output.")
@click.option("--s3-endpoint", metavar="URL", default=None, help=S3_ENDPOINT_HELP)
@click.version_option(__version__, prog_name="seawall")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    password_file: str | None,
    quiet: bool,
    s3_endpoint: str | None,
) -> None:
    """seawall: encrypted, deduplicated, crash-safe backups for AI systems.

    \b
    Quick start:
      export SEAWALL_REPOSITORY=/backups/repo SEAWALL_PASSWORD_FILE=~/.seawall-pw
      seawall init
      seawall backup ~/datasets ~/checkpoints --tag nightly
      seawall snapshots
      seawall restore latest --target /restore
      seawall check --read-data

    Run `seawall demo` for a full backup, disaster and recovery drill on a
    sample AI workspace.
    """
    settings = ctx.ensure_object(Settings)
    settings.repo, settings.password_file, settings.quiet = repo, password_file, quiet
    settings.s3_endpoint = s3_endpoint


for command in (
    *repo_cmds.COMMANDS,
    *data_cmds.COMMANDS,
    *copy_cmds.COMMANDS,
    *server_cmds.COMMANDS,
    *verify_cmds.COMMANDS,
    *plan_cmds.COMMANDS,
    *drill_cmds.COMMANDS,
    *control_cmds.COMMANDS,
    *watch_cmds.COMMANDS,
):
    cli.add_command(command)
repo_cmds.repair.add_command(immutable_cmds.repair_versions_cmd)
repo_cmds.repair.add_command(drill_cmds.repair_heal_cmd)
# Last: the commands that change something append to the audit log (audited.py).
audited.install(cli)


def main(argv: list[str] | None = None) -> None:
    tune_allocator()
    try:
        # Without standalone mode, click returns the code of a command's
        # ``click.exceptions.Exit`` (e.g. 3 for a partial backup) instead of exiting.
        code = cli.main(args=argv, prog_name="seawall", standalone_mode=False)
    except click.exceptions.Abort:
        echo_err("interrupted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except KeyboardInterrupt:
        echo_err("interrupted: the repository is valid; run the command again to finish")
        sys.exit(130)
    except SeawallError as err:
        echo_err(f"seawall: {err}")
        sys.exit(err.exit_code)
    except Exception as err:  # a bug: say so briefly, trace only on request
        if os.environ.get("SEAWALL_DEBUG"):
            import traceback

            traceback.print_exc()
        echo_err(
            f"seawall: internal error: {type(err).__name__}: {err}\n"
            "set SEAWALL_DEBUG=1 to see the traceback, and please report it"
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
