"""Configuration: files and environment variables, some of them secret.

The asset's tree is ``files/NAME`` (config files), ``secrets/NAME`` (secret
files) and ``.env`` (the selected variables, plain and secret, one
``NAME='value'`` line each, readable by its owner only). Values are stored
like any other data (encrypted, in the repository) and appear nowhere else:
the recorded facts, listings, reports and errors name variables and files,
never their contents. A restore puts them under the target with secrets
(and the ``.env`` file) readable by their owner only.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from seawall.errors import SourceError
from seawall.sources.base import (
    Captured,
    PathEntry,
    StreamEntry,
    bytes_entry,
    refuse_unknown_options,
)

ENV_FILE = ".env"


class ConfigSource:
    kind = "config"

    def __init__(
        self,
        files: list[Path] | None = None,
        env: list[str] | None = None,
        secret_env: list[str] | None = None,
        secret_files: list[Path] | None = None,
    ) -> None:
        self.files = files or []
        self.env = env or []
        self.secret_env = secret_env or []
        self.secret_files = secret_files or []

    def missing(self) -> list[str]:
        """What the asset names but this machine lacks (files, then ``$VARIABLES``)."""
        paths = [str(p) for p in self.files + self.secret_files if not p.is_file()]
        names = [f"${n}" for n in self.env + self.secret_env if n not in os.environ]
        return paths + names

    @contextmanager
    def capture(self, stage: Path) -> Iterator[Captured]:
        missing = self.missing()
        if missing:
            raise SourceError(f"cannot capture {', '.join(missing)}: not found on this machine")
        # Read now: the variables as they are at the capture instant.
        lines = "".join(
            f"{name}={shlex.quote(os.environ[name])}\n" for name in self.env + self.secret_env
        ).encode()
        entries: list[PathEntry | StreamEntry] = [
            *(PathEntry(f"files/{p.name}", p) for p in self.files),
            # Streams, so they are stored owner-only whatever their mode on disk.
            *(StreamEntry(f"secrets/{p.name}", _opener(p), 0o600) for p in self.secret_files),
        ]
        if self.env or self.secret_env:
            entries.append(bytes_entry(ENV_FILE, lines))
        yield Captured(
            entries,
            {
                "files": {p.name: str(p) for p in self.files},
                "secret_files": {p.name: str(p) for p in self.secret_files},
                "env": list(self.env),
                "secret_env": list(self.secret_env),
            },
        )

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """Make secrets (and the variables file) readable by their owner only."""
        refuse_unknown_options(options, {}, self.kind)
        secrets = restored / "secrets"
        if secrets.is_dir():
            secrets.chmod(0o700)
            for path in secrets.iterdir():
                path.chmod(0o600)
        env_file = restored / ENV_FILE
        if env_file.exists():
            env_file.chmod(0o600)
        return {
            "files": sorted(str(p) for p in (restored / "files").glob("*")),
            "secret_files": sorted(str(p) for p in secrets.glob("*")),
            "env_file": str(env_file) if env_file.exists() else None,
            "variables": self.env + self.secret_env,
        }


def _opener(path: Path) -> Callable[[], AbstractContextManager[BinaryIO]]:
    return lambda: open(path, "rb")
