"""The config source: files and variables back, secrets owner-only, and no secret value
anywhere but in the repository's encrypted data."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from seawall.errors import SourceError
from seawall.repository.repo import Repository
from seawall.sources.config import ConfigSource
from tests.sources.helpers import bring_back, capture_and_store

SECRET = "sk-live-7Hq2mZ9xQ4"
SECRET_FILE = b"-----BEGIN KEY-----\nMIIEvQ-unique-9f8e7d\n-----END KEY-----\n"


def test_round_trip_with_secrets_owner_only(
    local_repo: tuple[Path, Repository], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, repo = local_repo
    monkeypatch.setenv("APP_MODE", "production")
    monkeypatch.setenv("API_TOKEN", SECRET)
    monkeypatch.setenv("ODD_VALUE", "it's $HOME\nand a new line")
    config = tmp_path / "serve.yaml"
    config.write_text("threshold: 0.7\n")
    key = tmp_path / "tls.key"
    key.write_bytes(SECRET_FILE)
    key.chmod(0o644)  # careless on disk; owner-only once restored
    source = ConfigSource(
        files=[config], env=["APP_MODE", "ODD_VALUE"], secret_env=["API_TOKEN"], secret_files=[key]
    )
    snap, captured = capture_and_store(repo, source, tmp_path / "stage")
    facts = json.dumps(captured.consistency)
    assert "API_TOKEN" in facts and "tls.key" in facts
    assert SECRET not in facts and "MIIEvQ" not in facts
    # The secret bytes are in no stored object: everything but the config is encrypted.
    for root, _dirs, files in os.walk(path):
        for name in files:
            data = (Path(root) / name).read_bytes()
            assert SECRET.encode() not in data and b"MIIEvQ-unique" not in data, name

    out = tmp_path / "out"
    report = bring_back(repo, source, snap, out)
    assert (out / "files/serve.yaml").read_text() == "threshold: 0.7\n"
    assert (out / "secrets/tls.key").read_bytes() == SECRET_FILE
    assert (out / "secrets/tls.key").stat().st_mode & 0o777 == 0o600
    assert (out / "secrets").stat().st_mode & 0o777 == 0o700
    assert (out / ".env").stat().st_mode & 0o777 == 0o600
    assert report["variables"] == ["APP_MODE", "ODD_VALUE", "API_TOKEN"]
    assert SECRET not in json.dumps(report)
    # The variables file reads back, by a shell, to the exact values.
    shown = subprocess.run(
        [
            "sh",
            "-c",
            'set -a; . "$1"; printf "%s|%s|%s" "$APP_MODE" "$API_TOKEN" "$ODD_VALUE"',
            "sh",
            str(out / ".env"),
        ],
        capture_output=True,
        text=True,
        env={},
        check=True,
    ).stdout
    assert shown == f"production|{SECRET}|it's $HOME\nand a new line"


def test_missing_variables_and_files_are_named_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    monkeypatch.setenv("API_TOKEN", SECRET)
    source = ConfigSource(secret_env=["API_TOKEN", "NOT_SET_HERE"], files=[tmp_path / "gone.yaml"])
    with pytest.raises(SourceError) as err, source.capture(tmp_path):
        pass
    assert "$NOT_SET_HERE" in str(err.value) and "gone.yaml" in str(err.value)
    assert SECRET not in str(err.value) and "API_TOKEN" not in str(err.value)
