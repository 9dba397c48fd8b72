"""What every command shares: repository and password options, output, progress."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from seawall.engine.progress import Progress
from seawall.errors import UsageError
from seawall.storage import Storage, open_storage

if TYPE_CHECKING:
    from seawall.repository.repo import Repository

F = TypeVar("F", bound=Callable[..., Any])


def echo_err(message: str) -> None:
    click.echo(message, err=True)


class Settings:
    """Options given before the command name; a command's own options win."""

    def __init__(self) -> None:
        self.repo: str | None = None
        self.password_file: str | None = None
        self.quiet = False
        self.s3_endpoint: str | None = None
        #: a plan's password_env: the variable holding the password (after --password-file)
        self.password_env: str | None = None
        #: called with each repository the command opens or creates (the audit log's hook)
        self.on_open: list[Callable[[Repository], None]] = []


#: The --s3-endpoint option, before the command name (main.py) or after it (repo_options).
S3_ENDPOINT_HELP = (
    "Endpoint URL of an S3-compatible store (MinIO, Ceph, ...) for s3: repositories "
    "(default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)."
)


def repo_options(fn: F) -> F:
    """Accept -r/--repo, --password-file, --s3-endpoint and -q/--quiet after the command
    name too (as restic)."""

    @click.option(
        "-r",
        "--repo",
        "repo_opt",
        metavar="LOCATION",
        default=None,
        help="Repository location (default: $SEAWALL_REPOSITORY).",
    )
    @click.option(
        "--password-file",
        "password_file_opt",
        metavar="FILE",
        default=None,
        help="Read the password from FILE (default: $SEAWALL_PASSWORD_FILE, "
        "then $SEAWALL_PASSWORD, then a prompt on a terminal).",
    )
    @click.option(
        "-q",
        "--quiet",
        "quiet_opt",
        is_flag=True,
        default=False,
        help="Print only errors and requested output; no progress display.",
    )
    @click.option(
        "--s3-endpoint", "s3_endpoint_opt", metavar="URL", default=None, help=S3_ENDPOINT_HELP
    )
    @click.pass_context
    @functools.wraps(fn)
    def wrapper(
        ctx: click.Context,
        repo_opt: str | None,
        password_file_opt: str | None,
        quiet_opt: bool,
        s3_endpoint_opt: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        settings = ctx.ensure_object(Settings)
        if s3_endpoint_opt:
            settings.s3_endpoint = s3_endpoint_opt
        if repo_opt:
            settings.repo = repo_opt
        if password_file_opt:
            settings.password_file = password_file_opt
        if quiet_opt:
            settings.quiet = True
        return ctx.invoke(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


def repo_location() -> str:
    location = settings().repo or os.environ.get("SEAWALL_REPOSITORY", "")
    if not location:
        raise UsageError("no repository given: use --repo LOCATION or set SEAWALL_REPOSITORY")
    return location


def open_repo_storage() -> Storage:
    """The store of the repository the options and environment name."""
    return open_storage(repo_location(), s3_endpoint=settings().s3_endpoint)


def read_password(*, confirm: bool = False, prompt: str = "repository password") -> str:
    """From --password-file, $SEAWALL_PASSWORD_FILE, $SEAWALL_PASSWORD, or a terminal prompt
    (a plan's password_file or password_env comes right after --password-file)."""
    path = settings().password_file
    variable = settings().password_env
    if not path and variable:
        if not os.environ.get(variable):
            raise UsageError(
                f"the plan reads the repository password from ${variable}, which is not set"
            )
        password = os.environ[variable]
    elif path := path or os.environ.get("SEAWALL_PASSWORD_FILE"):
        try:
            password = Path(path).read_text().rstrip("\r\n")
        except OSError as err:
            raise UsageError(f"cannot read the password file {path}: {err.strerror}") from None
    elif "SEAWALL_PASSWORD" in os.environ:
        password = os.environ["SEAWALL_PASSWORD"]
    elif sys.stdin.isatty():
        password = getpass.getpass(f"enter {prompt}: ")
        if confirm and getpass.getpass(f"enter {prompt} again: ") != password:
            raise UsageError("the passwords do not match")
    else:
        raise UsageError(
            "no password given: set SEAWALL_PASSWORD or SEAWALL_PASSWORD_FILE, "
            "or use --password-file (there is no terminal to ask on)"
        )
    if not password:
        raise UsageError("an empty password is not allowed")
    return password


def open_repo() -> Repository:
    """Open the repository, deriving the key (Argon2id, ~0.1 s, GIL-free) in a
    thread while the rest of seawall is imported: commands import their
    operations after this call, so the two overlap."""
    from concurrent.futures import ThreadPoolExecutor

    from seawall.repository.keys import unlock

    storage = open_repo_storage()
    notes: list[str] = []
    with ThreadPoolExecutor(1, thread_name_prefix="unlock") as pool:
        unlocking = pool.submit(unlock, storage, read_password(), notes)
        from seawall.repository.repo import Repository

        repo = Repository(storage, *unlocking.result())
    repo.notes[:0] = notes
    repository_opened(repo)
    # Warnings the repository collected (e.g. data read from an older retained
    # version), shown once the command is done, whether it failed or not.
    click.get_current_context().call_on_close(lambda: _show_warnings(repo))
    return repo


def repository_opened(repo: Repository) -> None:
    """Tell the hooks (``Settings.on_open``) of a repository the command opened or made."""
    for hook in settings().on_open:
        hook(repo)


def _show_warnings(repo: Repository) -> None:
    warnings = repo.warnings
    for message in warnings[:20]:
        warn(message)
    if len(warnings) > 20:
        warn(f"... and {len(warnings) - 20} more like these")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def info(message: str) -> None:
    if not settings().quiet:
        click.echo(message)


def warn(message: str) -> None:
    echo_err(f"warning: {message}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def local_time(iso: str) -> str:
    """An ISO 8601 time (as snapshots and keys record it) in local time, to the second."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(seconds: float | None) -> str:
    """H:MM:SS, or -:--:-- when unknown."""
    if seconds is None:
        return "-:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@contextlib.contextmanager
def progress_display(progress: Progress) -> Iterator[Progress | None]:
    """Draw ``progress`` on stderr while the body runs, only when stderr is a terminal.

    Yields None when nothing is drawn, so operations skip work done only for
    the display (such as counting totals for an ETA).
    """
    if not sys.stderr.isatty() or settings().quiet:
        yield None
        return
    # rich costs ~25 ms to import: only when a bar is drawn.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TextColumn
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[files]} files"),
        DownloadColumn(binary_units=True),
        # rate and ETA from the operation's own counters, over the whole phase
        TextColumn("{task.fields[rate]}/s  ETA {task.fields[eta]}"),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(
        progress.phase, total=None, files="0", rate=human_bytes(0), eta=duration(None)
    )
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(0.2):
            v = progress.view()
            files = f"{v.files_done}" + (f"/{v.files_total}" if v.files_total is not None else "")
            bar.update(
                task,
                description=v.phase,
                completed=v.bytes_done,
                total=v.bytes_total,
                files=files,
                rate=human_bytes(v.rate),
                eta=duration(v.eta),
            )

    with bar:
        thread = threading.Thread(target=refresh, daemon=True)
        thread.start()
        try:
            yield progress
        finally:
            stop.set()
            thread.join()
