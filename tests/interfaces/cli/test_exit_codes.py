"""Exit 11 when the repository is locked, and 3 when a backup could not read some files."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seawall.repository.lock import Lock
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage

from .conftest import (
    PASSWORD,
    SEAWALL,
    Populated,
    Repo,
    Result,
    assert_clean_error,
    base_env,
    copy_repo,
    write_tree,
)

NOBODY = 65534


def test_backup_while_an_exclusive_lock_is_held_exits_11(
    populated: Populated, tmp_path: Path
) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    api = Repository.open(LocalStorage(repo.path), PASSWORD)
    with Lock(api, exclusive=True):
        result = repo.run("backup", populated.src)
    assert_clean_error(
        result, 11, "locked", "exclusive lock", f"PID {os.getpid()}", "seawall unlock"
    )
    assert len(repo.json("snapshots")) == 2  # no snapshot was added
    # once it is released, the same backup runs
    repo.ok("backup", populated.src)


def test_prune_while_a_backup_holds_a_shared_lock_exits_11(
    populated: Populated, tmp_path: Path
) -> None:
    repo = copy_repo(populated.repo, tmp_path / "repo")
    api = Repository.open(LocalStorage(repo.path), PASSWORD)
    with Lock(api, exclusive=False):
        assert_clean_error(repo.run("prune"), 11, "locked", "shared lock")
        # readers share: a check runs beside the backup
        assert repo.json("check")["ok"] is True


def _unprivileged() -> tuple[list[str], dict[str, Any]] | None:
    """How to run seawall so that file permissions apply to it: (command prefix, Popen kwargs).

    As root: as user nobody when it can run the interpreter, else as root
    without the capabilities that bypass file permissions.
    """
    if os.geteuid() != 0:
        return [], {}
    as_nobody: dict[str, Any] = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    try:
        probe = subprocess.run([SEAWALL, "--version"], capture_output=True, cwd="/", **as_nobody)
        if probe.returncode == 0:
            return [], as_nobody
    except OSError:
        pass  # e.g. the interpreter lives under /root (mode 700), out of nobody's reach
    if shutil.which("setpriv"):
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix, {}
    return None


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory outside pytest's (mode 700) tmp tree, so another user can reach it."""
    path = Path(tempfile.mkdtemp(prefix="seawall-cli-"))
    yield path
    shutil.rmtree(path)


def test_backup_with_an_unreadable_file_exits_3(template_repo: Repo, world_dir: Path) -> None:
    how = _unprivileged()
    if how is None:
        pytest.fail(
            "cannot run seawall without the right to read every file: user nobody cannot "
            "run the interpreter and setpriv(1) (util-linux) is missing or not permitted"
        )
    prefix, kwargs = how
    repo = copy_repo(template_repo, world_dir / "repo")
    src = write_tree(world_dir / "src", {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(10_000)})
    home = world_dir / "home"
    home.mkdir()
    if kwargs:  # everything belongs to nobody...
        for path in [world_dir, *world_dir.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
    secret = src / "sub" / "secret.key"  # ...but this root-owned file, which nobody may read
    secret.write_bytes(b"top secret\n")
    secret.chmod(0)

    proc = subprocess.run(
        [*prefix, SEAWALL, "backup", str(src)],
        env=base_env(SEAWALL_REPOSITORY=str(repo.path), SEAWALL_PASSWORD=PASSWORD, HOME=str(home)),
        cwd=world_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    assert_clean_error(result, 3, str(secret), "could not be read")
    assert "snapshot" in result.out and "saved" in result.out

    paths = [row["path"] for row in repo.json("ls", "latest")]
    assert f"{src}/a.txt" in paths and f"{src}/sub/b.bin" in paths
    assert str(secret) not in paths
