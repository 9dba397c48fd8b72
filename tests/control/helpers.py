"""A plan of two file assets on a local repository, its state directory and control plane."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyotp

from seawall.control.access import NewCredentials, Role
from seawall.control.plane import ControlPlane
from seawall.control.store import StateStore
from seawall.plan.model import Plan, load_plan
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK, make_files

PLAN = """\
version: 1
repositories:
  primary:
    location: repo
  {replicas}
defaults:
  retention: {{keep_last: 2}}
  {schedule}
assets:
  - name: data
    kind: files
    paths: [data]
  - name: models
    kind: files
    paths: [models]
"""


@dataclass
class Setup:
    root: Path
    plan: Plan
    repo: Repository

    def state(self) -> StateStore:
        return StateStore(self.root / "state")

    def plane(self, **kw: object) -> ControlPlane:
        return ControlPlane(self.plan, self.state(), password=PASSWORD, **kw)  # type: ignore[arg-type]


def make_setup(root: Path, *, schedule: str = "", replica: bool = False) -> Setup:
    make_files(root / "data", {"train.csv": b"a,b\n1,2\n" * 500, "labels.txt": b"cat\ndog\n"})
    make_files(root / "models", {"model.bin": bytes(range(256)) * 300})
    replicas = "replicas: [{name: dr, location: replica}]" if replica else ""
    text = PLAN.format(replicas=replicas, schedule=f"schedule: {schedule}" if schedule else "")
    (root / "seawall.yaml").write_text(textwrap.dedent(text))
    for name in ["repo", *(["replica"] if replica else [])]:
        Repository.init(
            LocalStorage(root / name),
            PASSWORD,
            kdf=FAST_KDF,
            chunker=SMALL_CHUNKS,
            pack_size=SMALL_PACK,
        )
    plan = load_plan(root / "seawall.yaml")
    return Setup(root, plan, Repository.open(LocalStorage(root / "repo"), PASSWORD))


def code(credentials: NewCredentials, drift: int = 0) -> str:
    """A TOTP code of a new user (from its provisioning URI), ``drift`` steps from now.
    A step's code works once: a test needing several uses drift -1, 0, then 1."""
    assert credentials.totp_uri
    totp = pyotp.parse_uri(credentials.totp_uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp.at(time.time() + drift * totp.interval)


@contextmanager
def running(plane: ControlPlane) -> Iterator[ControlPlane]:
    try:
        yield plane
    finally:
        plane.stop(timeout=30)


ROLES = [Role.viewer, Role.auditor, Role.operator, Role.admin]
