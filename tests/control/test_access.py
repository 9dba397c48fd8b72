"""Users, hashed tokens, roles and the TOTP second factor."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from seawall.control.access import REQUIRED_ROLE, SECOND_FACTOR, Action, Role, Users
from seawall.control.store import DB_NAME, StateStore
from seawall.errors import AccessDenied, IntegrityError, NotAuthenticated, UsageError


@pytest.fixture
def users(tmp_path: Path) -> Users:
    return Users(StateStore(tmp_path / "state"))


def test_token_authenticates_its_user_and_is_stored_only_as_a_keyed_digest(
    users: Users, tmp_path: Path
) -> None:
    alice = users.add("alice", Role.operator)
    assert users.authenticate(alice.token).name == "alice"
    assert users.authenticate(alice.token).role == Role.operator
    # the database and its write-ahead log
    db = b"".join(p.read_bytes() for p in (tmp_path / "state").glob(f"{DB_NAME}*"))
    secret = alice.token.rsplit("_", 1)[1]
    assert secret.encode() not in db
    totp_secret = pyotp.parse_uri(alice.totp_uri or "").secret  # type: ignore[attr-defined]
    assert totp_secret.encode() not in db  # sealed with the state key
    assert ((tmp_path / "state" / "secret.key").stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(
    "token",
    [None, "", "Bearer", "sw_00000000_" + "A" * 43, "garbage", "sw_zz_zz"],
)
def test_missing_or_bad_tokens_are_refused_alike(users: Users, token: str | None) -> None:
    users.add("alice", Role.admin)
    with pytest.raises(NotAuthenticated, match="a valid API token is required"):
        users.authenticate(token)


def test_a_tampered_token_with_a_real_id_is_refused(users: Users) -> None:
    token = users.add("alice", Role.admin).token
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(NotAuthenticated):
        users.authenticate(forged)


def test_rotation_replaces_the_token_and_removal_revokes_it(users: Users) -> None:
    old = users.add("bob", Role.viewer).token
    users.add("root", Role.admin)
    new = users.rotate("bob").token
    assert new != old
    with pytest.raises(NotAuthenticated):
        users.authenticate(old)
    assert users.authenticate(new).name == "bob"
    users.remove("bob")
    with pytest.raises(NotAuthenticated):
        users.authenticate(new)
    assert [u.name for u in users.all()] == ["root"]


def test_the_last_admin_cannot_be_removed_and_names_are_checked(users: Users) -> None:
    users.add("root", Role.admin)
    with pytest.raises(UsageError, match="last admin"):
        users.remove("root")
    with pytest.raises(UsageError, match="exists"):
        users.add("root", Role.viewer)
    with pytest.raises(UsageError, match="invalid user name"):
        users.add("Root Admin", Role.viewer)
    with pytest.raises(UsageError, match="unknown role"):
        Role.parse("superuser")
    assert [u.role for u in users.all()] == [Role.admin]


def test_roles_are_ordered_and_every_action_has_one() -> None:
    assert set(REQUIRED_ROLE) == set(Action)
    assert Role.viewer < Role.auditor < Role.operator < Role.admin
    assert REQUIRED_ROLE[Action.restore_sandbox] == Role.operator
    assert all(REQUIRED_ROLE[a] == Role.admin for a in SECOND_FACTOR - {Action.rotate_own_token})


def test_totp_codes_work_once_and_within_one_step_of_drift(users: Users) -> None:
    new = users.add("root", Role.admin)
    totp = pyotp.parse_uri(new.totp_uri or "")
    now = datetime.now(UTC)
    assert not users.verify_totp("root", totp.at(now - timedelta(seconds=95)), now=now)
    assert users.verify_totp("root", totp.at(now - timedelta(seconds=30)), now=now)
    assert users.verify_totp("root", totp.at(now), now=now)
    assert not users.verify_totp("root", totp.at(now), now=now), "a code is spent once used"
    assert not users.verify_totp("root", totp.at(now - timedelta(seconds=30)), now=now)
    assert users.verify_totp("root", totp.at(now + timedelta(seconds=30)), now=now)
    assert not users.verify_totp("root", None, now=now)
    assert not users.verify_totp("root", "12345a", now=now)
    assert not users.verify_totp("nobody", totp.at(now), now=now)


def test_authorize_checks_the_role_then_one_second_factor_for_all(users: Users) -> None:
    admin = users.add("root", Role.admin)
    operator = users.add("ops", Role.operator)
    root, ops = users.authenticate(admin.token), users.authenticate(operator.token)
    users.authorize(ops, [Action.backup, Action.restore_sandbox])
    with pytest.raises(AccessDenied, match="needs the admin role"):
        users.authorize(ops, [Action.forget], pyotp.parse_uri(operator.totp_uri or "").now())
    with pytest.raises(AccessDenied, match="TOTP"):
        users.authorize(root, [Action.forget, Action.prune])
    code = pyotp.parse_uri(admin.totp_uri or "").now()
    users.authorize(root, [Action.forget, Action.prune], code)  # one code for both
    with pytest.raises(AccessDenied, match="TOTP"):
        users.authorize(root, [Action.prune], code)


def test_a_state_db_with_another_key_is_refused_not_misread(users: Users, tmp_path: Path) -> None:
    new = users.add("root", Role.admin)
    (tmp_path / "state" / "secret.key").write_bytes(b"\1" * 32)
    other = Users(StateStore(tmp_path / "state"))
    with pytest.raises(NotAuthenticated):
        other.authenticate(new.token)  # the digest key changed: nothing matches
    with pytest.raises(IntegrityError, match="do not belong together"):
        other.verify_totp("root", "123456")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    StateStore(tmp_path / "s").close()
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.close()
    with pytest.raises(UsageError, match="newer seawall"):
        StateStore(tmp_path / "s")


def test_tokens_expire_unless_told_not_to(users: Users, tmp_path: Path) -> None:
    fresh = users.add("fresh", Role.viewer)
    assert fresh.expires is not None
    assert datetime.fromisoformat(fresh.expires) > datetime.now(UTC) + timedelta(days=89)
    assert users.authenticate(fresh.token).name == "fresh"
    stale = users.add("stale", Role.viewer, timedelta(seconds=-1))
    with pytest.raises(NotAuthenticated, match=r"expired.*token rotate"):
        users.authenticate(stale.token)
    renewed = users.rotate("stale", None)
    assert renewed.expires is None and users.authenticate(renewed.token).name == "stale"


def test_a_state_db_from_before_token_expiry_is_upgraded(tmp_path: Path) -> None:
    StateStore(tmp_path).execute("ALTER TABLE tokens DROP COLUMN expires")
    users = Users(StateStore(tmp_path))  # adds the column back
    new = users.add("old", Role.viewer)
    assert users.authenticate(new.token).name == "old"
