"""Every command explains itself with --help, and usage errors exit 2 with a hint."""

from __future__ import annotations

import pytest

from seawall.interfaces.cli.main import main

from .conftest import assert_clean_error, run

#: command words -> words its help must contain (what it does, its key options)
COMMANDS: dict[str, list[str]] = {
    "init": ["new", "repository", "password"],
    "backup": ["PATHS", "snapshot", "--tag", "--exclude", "--json", "unchanged", "3"],
    "snapshots": ["snapshots", "--json", "--tag"],
    "ls": ["SNAPSHOT", "latest", "prefix", "--long", "--json"],
    "restore": ["SNAPSHOT", "latest", "--target", "--include", "damaged", "--json"],
    "diff": ["SNAPSHOT1", "SNAPSHOT2", "added", "removed", "--json"],
    "check": ["--read-data", "snapshots", "--json"],
    "forget": [
        "--keep-last",
        "--keep-hourly",
        "--keep-daily",
        "--keep-weekly",
        "--keep-monthly",
        "--prune",
        "--dry-run",
        "--json",
    ],
    "prune": ["exclusive lock", "--dry-run", "--json"],
    "stats": ["deduplication", "compression", "--json"],
    "key": ["list", "add", "remove", "passwd"],
    "key list": ["keys", "--json"],
    "key add": ["password", "--new-password-file"],
    "key remove": ["KEY_ID", "in use"],
    "key passwd": ["password", "No data is rewritten", "--new-password-file"],
    "unlock": ["stale", "--remove-all"],
    "demo": ["stack", "restore", "verif", "--json"],
    "repo-server": ["PATH", "--append-only", "--tls-cert", "--token-file", "rest:"],
    "plan check": ["PLAN", "line", "secret"],
    "groups": ["group", "complete"],
    "verify mlflow": ["SOURCE", "RESTORED", "metrics", "aliases", "checksums"],
    "drill": ["sandbox", "RTO", "RPO", "golden", "--plan", "--asset", "--from-replica"],
    "status": ["RPO", "drill", "--plan"],
    "chaos": ["lose-pack", "corrupt-pack", "primary-down", "kill-backup", "--in-place"],
    "repair heal": ["replica", "--from-replica"],
    "serve": ["PLAN", "schedules", "openapi"],
    "user add": ["NAME", "--role", "TOTP"],
    "token rotate": ["NAME", "token"],
    "audit log": ["audit log", "--json"],
    "audit verify": ["hash chain", "reordered"],
    "report compliance": ["region", "immutable", "drill"],
}
#: commands that open a repository take the repository options after their name too
REPO_COMMANDS = [
    c
    for c in COMMANDS
    if c not in ("key", "demo", "repo-server", "plan check", "verify mlflow", "user add")
    and c not in ("token rotate", "serve")
]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: seawall {command} ")
    for word in COMMANDS[command]:
        assert word in out, f"{word!r} missing from `seawall {command} --help`:\n{out}"
    if command in REPO_COMMANDS:
        for option in ("-r, --repo", "--password-file", "SEAWALL_REPOSITORY"):
            assert option in out
    # a description besides the usage line and the options
    description = out.split("Options:")[0].splitlines()[1:]
    assert sum(len(line.split()) for line in description) >= 4, out


def test_short_help_is_accepted_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["restore", "-h"])
    assert exit_.value.code == 0
    assert "Usage: seawall restore" in capsys.readouterr().out


def test_top_level_help_lists_every_command_in_full_sentences() -> None:
    result = run("--help")
    assert result.code == 0, result
    assert "Usage: seawall [OPTIONS] COMMAND" in result.out
    commands = result.out.split("Commands:")[1]
    for command in {c.split()[0] for c in COMMANDS}:
        assert f"\n  {command} " in commands
    # each command's summary is a whole sentence, not cut off with "..."
    assert "..." not in commands, commands
    for option in (
        "--repo",
        "--password-file",
        "SEAWALL_REPOSITORY",
        "SEAWALL_PASSWORD",
        "--quiet",
    ):
        assert option in result.out


def test_version() -> None:
    from seawall import __version__

    result = run("--version")
    assert result.code == 0
    assert __version__ in result.out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bogus", "snapshots"], ["No such option", "--bogus", "seawall --help"]),
        (["snapshots", "--bogus"], ["No such option", "--bogus", "seawall snapshots --help"]),
        (["restore", "latest"], ["Missing option", "--target"]),
        (["restore"], ["Missing argument", "SNAPSHOT"]),
        (["backup"], ["Missing argument", "PATHS"]),
        (["diff", "latest"], ["Missing argument", "SNAPSHOT2"]),
        (["frobnicate"], ["No such command", "frobnicate"]),
        (["forget", "--keep-last", "many"], ["many", "not a valid integer"]),
        (["key", "rotate"], ["No such command", "rotate"]),
    ],
)
def test_usage_errors_exit_2(args: list[str], words: list[str]) -> None:
    assert_clean_error(run(*args), 2, *words)


def test_no_repository_given_is_a_usage_error() -> None:
    result = run("snapshots")  # the environment has no SEAWALL_REPOSITORY
    assert_clean_error(result, 2, "no repository given", "--repo", "SEAWALL_REPOSITORY")
