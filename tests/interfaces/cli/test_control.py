"""The CLI's audit trail and the control plane's commands: every command that changes
something leaves an entry; the log verifies, and names what was tampered with."""

from __future__ import annotations

import shutil
from pathlib import Path

from seawall.control.access import Users
from seawall.control.store import StateStore
from seawall.errors import NotAuthenticated
from tests.conftest import PASSWORD
from tests.control.helpers import make_setup
from tests.interfaces.cli.conftest import Repo, assert_clean_error, base_env, run, write_tree


def _log(repo: Repo, *args: str) -> list[dict[str, object]]:
    """The entries after the template repository's own (its ``init``)."""
    entries: list[dict[str, object]] = repo.json("audit", "log", *args)
    return [e for e in entries if e["operation"] != "init"]


def test_changes_are_audited_with_their_snapshots_and_reads_are_not(
    empty_repo: Repo, tmp_path: Path
) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"one", "b.txt": b"two"})
    empty_repo.ok("backup", src)
    empty_repo.ok("backup", src)
    empty_repo.ok("snapshots")  # a read: no entry
    ids = [s["id"] for s in empty_repo.json("snapshots")]
    empty_repo.ok("forget", "--keep-last", "1")
    empty_repo.ok("prune")
    log = _log(empty_repo)
    assert [(e["operation"], e["outcome"]) for e in log] == [
        ("backup", "ok"),
        ("backup", "ok"),
        ("forget", "ok"),
        ("prune", "ok"),
    ]
    assert log[0]["snapshots"] == [ids[0]] and log[1]["snapshots"] == [ids[1]]
    assert log[2]["snapshots"] == [ids[0]] and log[2]["params"]["removed"] == 1
    assert log[0]["via"] == "cli" and log[0]["params"]["paths"] == [str(src)]
    assert [e["seq"] for e in log] == [2, 3, 4, 5]
    assert empty_repo.ok("audit", "verify").out.startswith("audit log intact: 5 entries")
    (init,) = empty_repo.json("audit", "log", "--operation", "init")
    assert init["seq"] == 1 and init["outcome"] == "ok"


def test_failures_are_audited_and_nothing_is_written_without_the_key(
    empty_repo: Repo, tmp_path: Path
) -> None:
    failed = empty_repo.run("restore", "deadbeef", "--target", tmp_path / "out")
    assert failed.code == 1
    wrong = empty_repo.run("backup", tmp_path, env={**empty_repo.env, "SEAWALL_PASSWORD": "no"})
    assert wrong.code == 12
    (entry,) = _log(empty_repo)
    assert entry["operation"] == "restore" and entry["outcome"] == "failed"
    assert "deadbeef" in str(entry["detail"])


def test_secrets_given_on_the_command_line_are_not_recorded(
    empty_repo: Repo, tmp_path: Path
) -> None:
    new_pw = tmp_path / "new-pw"
    new_pw.write_text("a brand new secret password\n")
    empty_repo.ok("key", "add", "--new-password-file", new_pw)
    (entry,) = _log(empty_repo)
    assert entry["operation"] == "key.add" and "new_password_file" not in entry["params"]


def test_a_backup_whose_entry_cannot_be_written_is_kept_and_reported(
    empty_repo: Repo, tmp_path: Path
) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"data"})
    shutil.rmtree(empty_repo.path / "records", ignore_errors=True)
    (empty_repo.path / "records").write_text("not a directory")  # every record write fails
    result = empty_repo.run("backup", src)
    assert_clean_error(result, 1, "backup succeeded", "audit entry could not be written")
    assert len(empty_repo.json("snapshots")) == 1, "the backup stands"


def test_verify_names_the_first_bad_entry(empty_repo: Repo, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"data"})
    for _ in range(3):
        empty_repo.ok("backup", src)
    third = _log(empty_repo)[1]
    assert third["seq"] == 3
    (empty_repo.path / "records" / str(third["id"])).unlink()
    result = empty_repo.run("audit", "verify")
    assert_clean_error(result, 1, "entry 3 is missing", "the first bad one is entry 3")
    report = empty_repo.run("audit", "verify", "--json")
    assert report.code == 1 and report.json()["problems"][0]["seq"] == 3


def test_the_log_filters_by_operation_user_asset_and_time(empty_repo: Repo, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"data"})
    empty_repo.ok("backup", src)
    empty_repo.ok("forget", "--keep-last", "5")
    assert [e["operation"] for e in _log(empty_repo, "--operation", "forget")] == ["forget"]
    me = _log(empty_repo)[0]["user"]
    assert len(_log(empty_repo, "--user", str(me))) == 2
    assert _log(empty_repo, "--user", "nobody") == []
    assert _log(empty_repo, "--since", "2999-01-01") == []
    assert len(_log(empty_repo, "--until", "2999-01-01T00:00")) == 2
    assert _log(empty_repo, "--asset", "data") == []
    text = empty_repo.ok("audit", "log").out
    assert "backup" in text and "forget" in text and "3 entries" in text
    bad = empty_repo.run("audit", "log", "--since", "yesterday")
    assert_clean_error(bad, 2, "not a time")


def test_users_and_tokens_from_the_cli(tmp_path: Path) -> None:
    make_setup(tmp_path)
    plan = tmp_path / "seawall.yaml"
    env = base_env(SEAWALL_PASSWORD=PASSWORD)
    added = run("user", "add", "alice", "--role", "operator", "--plan", plan, env=env)
    assert added.code == 0, added
    token = added.out.split("store it now): ", 1)[1].split()[0]
    assert "otpauth://totp/seawall:alice" in added.out
    listed = run("user", "list", "--plan", plan, env=env)
    assert "alice" in listed.out and "operator" in listed.out and token not in listed.out
    users = Users(StateStore(tmp_path / ".seawall"))
    assert users.authenticate(token).name == "alice"
    rotated = run("token", "rotate", "alice", "--plan", plan, "--json", env=env)
    assert rotated.code == 0, rotated
    try:
        users.authenticate(token)
        raise AssertionError("the old token still works")
    except NotAuthenticated:
        pass
    assert users.authenticate(rotated.json()["token"]).name == "alice"
    assert run("user", "remove", "alice", "--plan", plan, env=env).code == 0
    assert users.all() == []
    dup = run("user", "add", "Bob!", "--role", "viewer", "--plan", plan, env=env)
    assert_clean_error(dup, 2, "invalid user name")
    log = run("audit", "log", "--plan", plan, "--json", env=env).json()
    assert [(e["operation"], e["outcome"]) for e in log] == [
        ("user.add", "ok"),
        ("token.rotate", "ok"),
        ("user.remove", "ok"),
        ("user.add", "failed"),
    ]
