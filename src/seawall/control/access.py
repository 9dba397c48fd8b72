"""Who may do what: users, roles, API tokens and the TOTP second factor.

Roles are ordered; each has every right of the ones below it:

- ``viewer``: read assets, status, snapshots, jobs and schedules;
- ``auditor``: also the audit log and drill reports;
- ``operator``: also start backups, copies, drills, and restores into a sandbox;
- ``admin``: also restore outside the sandbox, forget and prune, manage
  repository keys and users.

:data:`REQUIRED_ROLE` maps every :class:`Action` to its lowest role, and
:data:`SECOND_FACTOR` lists the actions that also need a fresh TOTP code
from the user asking (destroying data or access: a stolen token alone must
not be enough). :meth:`Users.authorize` is the one check every interface
calls; it raises NotAuthenticated (no valid token) or AccessDenied.

Tokens look like ``sw_<id>_<secret>``: ``id`` (public, 8 hex digits) finds
the row, ``secret`` (256 random bits) is checked against a keyed digest
(store.py says why a keyed hash and not Argon2). A token is shown once, when
made; a user has one token at a time (rotating replaces it).

TOTP codes are RFC 6238 (30 s, 6 digits, SHA-1: what authenticator apps
use), accepted one step early or late for clock drift, and each time step
at most once per user, so a code seen on the wire cannot be replayed.
"""

from __future__ import annotations

import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum

import pyotp

from seawall.control.store import StateStore
from seawall.errors import AccessDenied, NotAuthenticated, UsageError

ISSUER = "seawall"
#: How long a new API token works unless told otherwise: rotation is then routine.
TOKEN_TTL = timedelta(days=90)
_TOKEN = re.compile(r"sw_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[a-z][a-z0-9_.@-]{0,63}")


class Role(IntEnum):
    viewer = 1
    auditor = 2
    operator = 3
    admin = 4

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name]
        except KeyError:
            roles = ", ".join(r.name for r in cls)
            raise UsageError(f"unknown role {name!r}: expected one of {roles}") from None


class Action(StrEnum):
    read_status = "read status"
    read_audit = "read the audit log"
    read_reports = "read drill reports"
    backup = "back up"
    copy = "copy to replicas"
    drill = "run a drill"
    restore_sandbox = "restore into a sandbox"
    cancel = "cancel a job"
    restore_production = "restore outside the sandbox"
    forget = "forget snapshots"
    prune = "prune"
    manage_keys = "manage repository keys"
    manage_users = "manage users"
    rotate_own_token = "rotate one's own token"
    read_users = "list users"
    read_keys = "list repository keys"
    clear_anomaly = "clear an anomaly mark"


REQUIRED_ROLE: dict[Action, Role] = {
    Action.read_status: Role.viewer,
    Action.rotate_own_token: Role.viewer,
    Action.read_audit: Role.auditor,
    Action.read_reports: Role.auditor,
    Action.backup: Role.operator,
    Action.copy: Role.operator,
    Action.drill: Role.operator,
    Action.restore_sandbox: Role.operator,
    Action.cancel: Role.operator,
    Action.restore_production: Role.admin,
    Action.forget: Role.admin,
    Action.prune: Role.admin,
    Action.manage_keys: Role.admin,
    Action.manage_users: Role.admin,
    Action.read_users: Role.admin,
    Action.read_keys: Role.admin,
    Action.clear_anomaly: Role.admin,
}

#: Actions that destroy data or grant access: they need a TOTP code too. Adding a
#: user and rotating one's token are in: a stolen token must not mint a lasting one.
SECOND_FACTOR = frozenset(
    {
        Action.restore_production,
        Action.forget,
        Action.prune,
        Action.manage_keys,
        Action.manage_users,
        Action.rotate_own_token,
        # a cleared mark makes restores take a snapshot the ransomware check distrusts
        Action.clear_anomaly,
    }
)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created: str


@dataclass(frozen=True)
class NewCredentials:
    """What ``add`` and ``rotate`` hand out, once: the token, and for a new user the
    TOTP provisioning URI (an ``otpauth://`` URI for an authenticator app)."""

    user: User
    token: str
    totp_uri: str | None = None
    #: when the token stops working (ISO 8601 UTC), None: never
    expires: str | None = None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid user name {name!r}: use a-z, 0-9 and . _ @ -, starting with a letter"
        )
    return name


class Users:
    """Users, tokens and second factors in the state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def add(self, name: str, role: Role, ttl: timedelta | None = TOKEN_TTL) -> NewCredentials:
        """A new user with a token valid for ``ttl`` (None: until rotated)."""
        check_name(name)
        secret = pyotp.random_base32()
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UsageError(f"user {name!r} exists: remove it first, or rotate its token")
            db.execute(
                "INSERT INTO users (name, role, totp_sealed, created) VALUES (?, ?, ?, ?)",
                (name, role.name, self.store.seal(secret.encode(), f"totp:{name}"), created),
            )
            token, expires = self._new_token(db, name, ttl)
        user = User(name, role, created)
        uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)
        return NewCredentials(user, token, uri, expires)

    def remove(self, name: str) -> User:
        user = self.get(name)
        with self.store.transaction() as db:
            if user.role == Role.admin and _admins(db) == 1:
                raise UsageError(
                    f"{name!r} is the last admin: add another admin before removing it"
                )
            db.execute("DELETE FROM users WHERE name = ?", (name,))
        return user

    def rotate(self, name: str, ttl: timedelta | None = TOKEN_TTL) -> NewCredentials:
        """Replace the user's token: the old one stops working at once."""
        user = self.get(name)
        with self.store.transaction() as db:
            db.execute("DELETE FROM tokens WHERE user = ?", (name,))
            token, expires = self._new_token(db, name, ttl)
        return NewCredentials(user, token, expires=expires)

    def get(self, name: str) -> User:
        found = self.store.rows("SELECT name, role, created FROM users WHERE name = ?", (name,))
        if not found:
            raise UsageError(f"no user {name!r}; list them with `seawall user list`")
        return _user(found[0])

    def all(self) -> list[User]:
        rows = self.store.rows("SELECT name, role, created FROM users ORDER BY name")
        return [_user(r) for r in rows]

    def _new_token(
        self, db: sqlite3.Connection, name: str, ttl: timedelta | None
    ) -> tuple[str, str | None]:
        while True:
            token_id = secrets.token_hex(4)
            if not db.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,)).fetchone():
                break
        token = f"sw_{token_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC)
        expires = (now + ttl).isoformat(timespec="seconds") if ttl else None
        db.execute(
            "INSERT INTO tokens (id, user, digest, created, expires) VALUES (?, ?, ?, ?, ?)",
            (token_id, name, self.store.digest(token), now.isoformat(), expires),
        )
        return token, expires

    # --- checks -------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> User:
        """The user a bearer token belongs to; NotAuthenticated if none (the same
        message whatever was wrong, so probing learns nothing)."""
        match = _TOKEN.fullmatch(token or "")
        found = (
            self.store.rows(
                "SELECT t.digest, u.name, u.role, u.created, t.expires FROM tokens t "
                "JOIN users u ON u.name = t.user WHERE t.id = ?",
                (match.group(1),),
            )
            if match
            else []
        )
        # compare_digest runs whether or not the id was found: no timing hint either way
        expected = found[0][0] if found else b"\0" * 32
        if not hmac.compare_digest(expected, self.store.digest(token or "")) or not found:
            raise NotAuthenticated("a valid API token is required (Authorization: Bearer TOKEN)")
        expires = found[0][4]
        if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
            raise NotAuthenticated(
                "this API token has expired: get a new one with `seawall token rotate`"
            )
        return _user(found[0][1:4])

    def verify_totp(self, name: str, code: str | None, *, now: datetime | None = None) -> bool:
        """Whether ``code`` is the user's current TOTP code (one step of drift either way)
        and its time step was not used before; a used step is then spent."""
        if not code or not code.isdigit():
            return False
        found = self.store.rows(
            "SELECT totp_sealed, totp_last_step FROM users WHERE name = ?", (name,)
        )
        if not found:
            return False
        totp = pyotp.TOTP(self.store.unseal(found[0][0], f"totp:{name}").decode())
        at = (now or datetime.now(UTC)).timestamp()
        for drift in (0, -1, 1):
            step = int(at // totp.interval) + drift
            if hmac.compare_digest(totp.generate_otp(step), code):
                # Spend the step atomically: two requests with one code, one wins.
                return bool(
                    self.store.execute(
                        "UPDATE users SET totp_last_step = ? WHERE name = ? AND totp_last_step < ?",
                        (step, name, step),
                    )
                )
        return False

    def authorize(self, user: User, actions: Iterable[Action], totp: str | None = None) -> None:
        """Raise AccessDenied unless ``user`` may do every one of ``actions``, with a
        valid ``totp`` code when one of them needs a second factor (one code covers
        them all: it is spent when checked)."""
        wanted = list(actions)
        for action in wanted:
            needed = REQUIRED_ROLE[action]
            if user.role < needed:
                raise AccessDenied(
                    f"user {user.name!r} ({user.role.name}) may not {action.value}: "
                    f"that needs the {needed.name} role"
                )
        factor = [a for a in wanted if a in SECOND_FACTOR]
        if factor and not self.verify_totp(user.name, totp):
            raise AccessDenied(
                f"to {factor[0].value}, give a current TOTP code from your authenticator "
                "(header X-Seawall-TOTP); a code works once"
            )


def _admins(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0])


def _user(row: tuple[object, ...]) -> User:
    return User(str(row[0]), Role[str(row[1])], str(row[2]))
