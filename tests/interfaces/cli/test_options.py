"""Where the repository and the password come from, and the errors when they are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import PASSWORD, Populated, assert_clean_error, base_env, run


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--repo", "{repo}", "snapshots"], {}),
        (["snapshots", "--repo", "{repo}"], {}),
        (["-r", "{repo}", "snapshots"], {}),
        (["snapshots", "-r", "{repo}"], {}),
        (["snapshots"], {"SEAWALL_REPOSITORY": "{repo}"}),
        # the option after the command name wins over the one before and the environment
        (
            ["-r", "/nonexistent/a", "snapshots", "-r", "{repo}"],
            {"SEAWALL_REPOSITORY": "/nonexistent/b"},
        ),
        (["-r", "{repo}", "snapshots"], {"SEAWALL_REPOSITORY": "/nonexistent/b"}),
    ],
    ids=[
        "long-before",
        "long-after",
        "short-before",
        "short-after",
        "env",
        "after-wins",
        "option-wins",
    ],
)
def test_repository_location(populated: Populated, args: list[str], env: dict[str, str]) -> None:
    def fill(s: str) -> str:
        return s.replace("{repo}", str(populated.repo.path))

    result = run(
        *map(fill, args),
        env=base_env(SEAWALL_PASSWORD=PASSWORD, **{k: fill(v) for k, v in env.items()}),
    )
    assert result.code == 0, result
    for sid in populated.ids:
        assert sid[:8] in result.out
    assert "2 snapshots" in result.out


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")  # as `echo pw > file` writes it: the newline is not part of it
    return path


@pytest.mark.parametrize("where", ["env-file", "option-before", "option-after"])
def test_password_from_a_file(populated: Populated, password_file: Path, where: str) -> None:
    repo = str(populated.repo.path)
    # a wrong $SEAWALL_PASSWORD shows the file is what was used, and wins over it
    env = base_env(SEAWALL_REPOSITORY=repo, SEAWALL_PASSWORD="wrong")
    if where == "env-file":
        result = run("snapshots", env=env | {"SEAWALL_PASSWORD_FILE": str(password_file)})
    elif where == "option-before":
        result = run("--password-file", password_file, "snapshots", env=env)
    else:
        result = run("snapshots", "--password-file", password_file, env=env)
    assert result.code == 0, result
    assert "2 snapshots" in result.out


def test_wrong_password_exits_12(populated: Populated, tmp_path: Path) -> None:
    result = populated.repo.run(
        "snapshots", env=populated.repo.env | {"SEAWALL_PASSWORD": "not it"}
    )
    assert_clean_error(result, 12, "password")
    assert "not it" not in result.err  # never echo a secret
    wrong = tmp_path / "wrong"
    wrong.write_text("also not it\n")
    result = populated.repo.run("ls", "latest", "--password-file", wrong)
    assert_clean_error(result, 12, "password")


def test_missing_password_file_is_a_usage_error(populated: Populated, tmp_path: Path) -> None:
    result = populated.repo.run("snapshots", "--password-file", tmp_path / "nope")
    assert_clean_error(result, 2, "password file", str(tmp_path / "nope"))


def test_no_password_and_no_terminal_exits_2(populated: Populated) -> None:
    result = run("snapshots", env=base_env(SEAWALL_REPOSITORY=str(populated.repo.path)))
    assert_clean_error(result, 2, "no password", "SEAWALL_PASSWORD", "--password-file", "terminal")


def test_no_repository_at_the_location_exits_10(tmp_path: Path) -> None:
    for command in (["snapshots"], ["backup", str(tmp_path)], ["check"]):
        result = run(*command, "-r", tmp_path / "missing", env=base_env(SEAWALL_PASSWORD=PASSWORD))
        assert_clean_error(
            result, 10, "no seawall repository", str(tmp_path / "missing"), "seawall init"
        )
    assert not (tmp_path / "missing").exists()  # looking did not create anything


def test_init_refuses_an_existing_repository(populated: Populated) -> None:
    result = populated.repo.run("init")
    assert_clean_error(result, 1, "already exists")
    assert "2 snapshots" in populated.repo.ok("snapshots").out


def test_quiet_before_or_after_the_command(populated: Populated) -> None:
    loud = populated.repo.ok("check")
    assert "no errors were found" in loud.out
    assert populated.repo.ok("-q", "check").out == ""
    assert populated.repo.ok("check", "--quiet").out == ""
