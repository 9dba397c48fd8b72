"""``seawall repo-server`` and ``--repo rest:...`` end to end, as a user runs them:
the server and every client command in their own processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interfaces.cli.conftest import (
    PASSWORD,
    V1,
    V2_CHANGES,
    assert_clean_error,
    base_env,
    read_tree,
    run,
    write_tree,
)
from tests.rest_server import TOKEN, RestServer


@pytest.fixture
def append_only(tmp_path: Path) -> Iterator[RestServer]:
    server = RestServer(tmp_path / "served", append_only=True)
    yield server
    server.stop()


def test_init_backup_restore_check_through_an_append_only_server(
    append_only: RestServer, tmp_path: Path
) -> None:
    env = append_only.client_env(SEAWALL_PASSWORD=PASSWORD)

    def ok(*args: str | Path) -> str:
        result = run(*args, env=env)
        assert result.code == 0, result
        assert TOKEN not in result.out + result.err
        return result.out

    assert f"at rest:{append_only.url}" in ok("init")
    assert (append_only.root / "config").is_file()  # the server's directory is the repository
    src = write_tree(tmp_path / "src", V1)
    ok("backup", src, "--tag", "v1")
    v1 = read_tree(src)
    write_tree(src, V2_CHANGES)
    ok("backup", src, "--tag", "v2")
    snaps = run("snapshots", "--json", env=env).json()
    assert [s["tags"] for s in snaps] == [["v1"], ["v2"]]
    ok("restore", snaps[0]["id"], "--target", tmp_path / "restored")  # the older one
    assert read_tree(tmp_path / "restored" / str(src).lstrip("/")) == v1
    ok("check", "--read-data")
    # Another password: key add appends a key object, which the server accepts.
    (tmp_path / "new-password").write_text("another password\n")
    ok("key", "add", "--new-password-file", tmp_path / "new-password")
    assert len(list((append_only.root / "keys").iterdir())) == 2
    # Forget must delete: it stops before changing anything, and says where to run it.
    before = sorted(p.name for p in (append_only.root / "snapshots").iterdir())
    forgot = run("forget", "--keep-last", "1", env={**env, "SEAWALL_PASSWORD": "another password"})
    assert_clean_error(forgot, 1, "append-only", "server host")
    assert sorted(p.name for p in (append_only.root / "snapshots").iterdir()) == before


def test_wrong_or_missing_token_fails_clearly(append_only: RestServer) -> None:
    env = append_only.client_env(SEAWALL_PASSWORD=PASSWORD)
    wrong = run("snapshots", env={**env, "SEAWALL_REST_TOKEN": "a-wrong-token-0123456789"})
    assert_clean_error(wrong, 1, "refused the token", "SEAWALL_REST_TOKEN")
    assert "a-wrong-token" not in wrong.err
    missing = {k: v for k, v in env.items() if k != "SEAWALL_REST_TOKEN"}
    assert_clean_error(run("snapshots", env=missing), 1, "without a token")


def test_https_with_a_self_signed_certificate(rest_tls_server: RestServer, tmp_path: Path) -> None:
    rest_tls_server.reset().close()
    env = rest_tls_server.client_env(SEAWALL_PASSWORD=PASSWORD)
    assert run("init", env=env).code == 0
    src = write_tree(tmp_path / "src", {"a.bin": os.urandom(50_000)})
    assert run("backup", src, env=env).code == 0
    assert len(list((rest_tls_server.root / "snapshots").iterdir())) == 1
    # Without the certificate, the client refuses and says how to trust it.
    untrusted = {k: v for k, v in env.items() if k != "SEAWALL_REST_CACERT"}
    assert_clean_error(run("snapshots", env=untrusted), 1, "SEAWALL_REST_CACERT")


def test_server_refuses_weak_or_missing_tokens_and_bad_options(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    weak = run("repo-server", root, env=base_env(SEAWALL_SERVER_TOKEN="short"))
    assert_clean_error(weak, 2, "at least 16")
    assert "short" not in weak.err.replace("shorter", "")  # the token is not echoed
    assert_clean_error(run("repo-server", root, env=base_env()), 2, "needs a token")
    no_auth = run("repo-server", root, "--listen", "0.0.0.0:0", "--no-auth", env=base_env())
    assert_clean_error(no_auth, 2, "loopback")
    token = base_env(SEAWALL_SERVER_TOKEN=TOKEN)
    assert_clean_error(run("repo-server", root, "--listen", "nowhere", env=token), 2, "HOST:PORT")
    assert_clean_error(run("repo-server", root, "--tls-cert", root, env=token), 2, "--tls-key")
    bad_cert = tmp_path / "cert.pem"
    bad_cert.write_text("not a certificate")
    broken = run("repo-server", root, "--tls-cert", bad_cert, "--tls-key", bad_cert, env=token)
    assert_clean_error(broken, 2, "cannot load the TLS certificate")
