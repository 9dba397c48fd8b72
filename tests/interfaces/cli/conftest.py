"""Run the installed ``seawall`` command as a user would: in a subprocess, on pipes or a pty.

Repositories use the default Argon2id KDF (about 0.1 s per open), so fixtures
build a repository once and tests copy it rather than running ``init`` again.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SEAWALL = str(Path(sys.executable).with_name("seawall"))
PASSWORD = "cli test password"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:  # shown by pytest when an assertion on a result fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SEAWALL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    env.update(extra)
    return env


def run(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    **popen: Any,
) -> Result:
    """Run ``seawall ARGS`` on pipes (stdin: /dev/null, so never a terminal)."""
    proc = subprocess.run(
        [SEAWALL, *map(str, args)],
        env=base_env() if env is None else env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_error(result: Result, code: int, *words: str) -> None:
    """Failed with ``code``, one short message naming ``words``, and no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.err, result
    assert "internal error" not in result.err, result
    for word in words:
        assert word.lower() in result.err.lower(), result


@dataclass
class Repo:
    """A repository on disk and the environment that opens it."""

    path: Path
    password: str = PASSWORD

    @property
    def env(self) -> dict[str, str]:
        return base_env(SEAWALL_REPOSITORY=str(self.path), SEAWALL_PASSWORD=self.password)

    def run(self, *args: str | Path, **kw: Any) -> Result:
        return run(*args, env=kw.pop("env", self.env), **kw)

    def ok(self, *args: str | Path, **kw: Any) -> Result:
        result = self.run(*args, **kw)
        assert result.code == 0, result
        assert "Traceback" not in result.err, result
        return result

    def json(self, *args: str | Path, **kw: Any) -> Any:
        return self.ok(*args, "--json", **kw).json()


def run_in_pty(
    args: Sequence[str | Path],
    env: dict[str, str],
    answers: Sequence[tuple[str, str]] = (),
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``seawall ARGS`` with a pty as its controlling terminal and stdin/stdout/stderr.

    ``answers``: (prompt text, reply) pairs, replied in order as each prompt
    appears. Returns the exit code and everything written to the terminal.
    """
    import pty

    master, slave = pty.openpty()
    # setsid --ctty makes the pty the controlling terminal, so /dev/tty (where
    # getpass asks) is this pty and not the terminal pytest was started from.
    proc = subprocess.Popen(
        ["setsid", "--ctty", SEAWALL, *map(str, args)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    out = b""
    pending = list(answers)
    searched = 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; terminal so far:\n{out.decode(errors='replace')}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every process closed the pty
                    break
                if not chunk:
                    break
                out += chunk
            if pending and pending[0][0].encode() in out[searched:]:
                searched = out.index(pending[0][0].encode(), searched) + len(pending[0][0])
                os.write(master, pending.pop(0)[1].encode() + b"\n")
            if not ready and proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert not pending, f"never asked {pending}; terminal:\n{out.decode(errors='replace')}"
    return code, out.decode(errors="replace")


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes | str]:
    """Relative path -> file bytes, or "-> target" for a symlink, or "dir"."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_bytes()
    return out


def copy_repo(src: Repo, dest: Path) -> Repo:
    shutil.copytree(src.path, dest)
    return Repo(dest, src.password)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """An empty repository made by ``seawall init``; copy it, don't change it."""
    repo = Repo(tmp_path_factory.mktemp("template") / "repo")
    result = repo.run("init")
    assert result.code == 0, result
    assert "created" in result.out
    return repo


@pytest.fixture
def empty_repo(template_repo: Repo, tmp_path: Path) -> Repo:
    """A fresh empty repository of this test's own."""
    return copy_repo(template_repo, tmp_path / "repo")


#: Version 1 of the source tree, and what changes for version 2.
V1 = {
    "data/train.csv": b"id,label\n" + b"".join(b"%d,%d\n" % (i, i % 3) for i in range(20000)),
    "data/images/cat.png": bytes(range(256)) * 40,
    "models/model.safetensors": os.urandom(300_000),
    "notes/readme.txt": b"hello\n",
    "notes/old.txt": b"to be removed\n",
}
V2_CHANGES = {"notes/readme.txt": b"hello, again\n", "models/new.bin": os.urandom(50_000)}
V2_REMOVED = ["notes/old.txt"]


@dataclass
class Populated:
    """A repository holding two snapshots of ``src`` (v1 then v2)."""

    repo: Repo
    src: Path
    ids: list[str]  # full ids, oldest first
    v1: dict[str, bytes | str]
    v2: dict[str, bytes | str]

    def restored_root(self, target: Path) -> Path:
        """Where the source tree lands under a restore target (its absolute path is recreated)."""
        return target / str(self.src).lstrip("/")


@pytest.fixture(scope="session")
def populated(tmp_path_factory: pytest.TempPathFactory, template_repo: Repo) -> Populated:
    """Read-only for tests: two snapshots, made through the CLI."""
    base = tmp_path_factory.mktemp("populated")
    repo = copy_repo(template_repo, base / "repo")
    src = write_tree(base / "src", V1)
    (src / "models" / "current").symlink_to("model.safetensors")
    v1 = read_tree(src)
    repo.ok("backup", src, "--tag", "v1")
    write_tree(src, V2_CHANGES)
    for rel in V2_REMOVED:
        (src / rel).unlink()
    v2 = read_tree(src)
    repo.ok("backup", src, "--tag", "v2")
    ids = [s["id"] for s in repo.json("snapshots")]
    assert len(ids) == 2
    return Populated(repo, src, ids, v1, v2)
