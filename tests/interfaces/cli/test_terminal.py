"""On a terminal: the password prompt, and the progress display (none on pipes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import PASSWORD, Populated, Repo, base_env, copy_repo, read_tree, run_in_pty


@pytest.fixture(autouse=True)
def _setsid_present() -> None:
    if not shutil.which("setsid"):
        pytest.fail("setsid(1) from util-linux is needed to give seawall a controlling terminal")


ASK = "enter repository password:"
AGAIN = "enter repository password again:"


def test_init_asks_for_the_password_twice(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", "typed at the prompt")
    code, screen = run_in_pty(
        ["init", "-r", repo.path],
        base_env(),
        answers=[(ASK, repo.password), (AGAIN, repo.password)],
    )
    assert code == 0, screen
    assert "created seawall repository" in screen
    assert repo.password not in screen  # not echoed
    assert repo.json("snapshots") == []  # the typed password opens it


def test_init_refuses_passwords_that_differ(tmp_path: Path) -> None:
    code, screen = run_in_pty(
        ["init", "-r", tmp_path / "repo"], base_env(), answers=[(ASK, "one"), (AGAIN, "another")]
    )
    assert code == 2, screen
    assert "do not match" in screen and "Traceback" not in screen
    assert not (tmp_path / "repo" / "config").exists()


def test_a_command_asks_for_the_password(populated: Populated) -> None:
    env = base_env(SEAWALL_REPOSITORY=str(populated.repo.path))
    code, screen = run_in_pty(["snapshots"], env, answers=[(ASK, PASSWORD)])
    assert code == 0, screen
    assert populated.ids[0][:8] in screen and "2 snapshots" in screen
    code, screen = run_in_pty(["snapshots"], env, answers=[(ASK, "not the password")])
    assert code == 12, screen
    assert "password" in screen.split(ASK, 1)[1] and "Traceback" not in screen


def _drew_progress(screen: str, phase: str) -> bool:
    return "\x1b[" in screen and phase in screen and "files" in screen and "ETA" in screen


def test_progress_on_a_terminal(populated: Populated, tmp_path: Path) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    code, screen = run_in_pty(["backup", populated.src, "--force"], repo.env)
    assert code == 0, screen
    assert _drew_progress(screen, "backup"), screen
    assert "saved" in screen

    code, screen = run_in_pty(["restore", "latest", "--target", tmp_path / "out"], repo.env)
    assert code == 0, screen
    assert _drew_progress(screen, "restore"), screen
    assert read_tree(populated.restored_root(tmp_path / "out")) == populated.v2

    code, screen = run_in_pty(["check", "--read-data"], repo.env)
    assert code == 0, screen
    assert _drew_progress(screen, "check"), screen
    assert "no errors were found" in screen

    # --quiet: no display even on a terminal
    code, screen = run_in_pty(["check", "-q"], repo.env)
    assert code == 0, screen
    assert screen.strip() == ""


def test_no_progress_on_pipes(populated: Populated, tmp_path: Path) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    results = [
        repo.ok("backup", populated.src, "--force"),
        repo.ok("restore", "latest", "--target", tmp_path / "out"),
        repo.ok("check", "--read-data"),
    ]
    for result in results:
        for stream in (result.out, result.err):
            assert "\x1b" not in stream and "\r" not in stream and "━" not in stream, result
            assert "ETA" not in stream
        assert result.err == ""
