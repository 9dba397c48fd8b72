"""Users and repository keys (admin; changes need a TOTP code)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from seawall.control.access import TOKEN_TTL, NewCredentials, Role

from .auth import Caller, Plane

router = APIRouter(tags=["users and keys"])


class UserView(BaseModel):
    name: str
    role: str
    created: str


class NewUser(BaseModel):
    name: str
    role: str = Field(description="viewer, auditor, operator or admin")
    expires_in_days: float | None = Field(
        default=TOKEN_TTL.days, gt=0, description="how long the token works; null: never"
    )


class Lifetime(BaseModel):
    expires_in_days: float | None = Field(
        default=TOKEN_TTL.days, gt=0, description="how long the new token works; null: never"
    )


class Credentials(BaseModel):
    user: UserView
    #: shown once: store it now
    token: str
    #: an otpauth:// URI for an authenticator app (new users only)
    totp_uri: str | None
    #: when the token stops working (ISO 8601 UTC); null: never
    token_expires: str | None


class KeyView(BaseModel):
    id: str
    created: str
    username: str
    hostname: str
    current: bool


class NewKey(BaseModel):
    password: str = Field(min_length=1, description="the new key's password")


class KeyId(BaseModel):
    id: str


def _credentials(new: NewCredentials) -> Credentials:
    u = new.user
    return Credentials(
        user=UserView(name=u.name, role=u.role.name, created=u.created),
        token=new.token,
        totp_uri=new.totp_uri,
        token_expires=new.expires,
    )


def _ttl(days: float | None) -> timedelta | None:
    return timedelta(days=days) if days is not None else None


@router.get("/users", summary="List users (admin).")
def list_users(plane: Plane, who: Caller) -> list[UserView]:
    return [
        UserView(name=u.name, role=u.role.name, created=u.created) for u in plane.list_users(who)
    ]


@router.post("/users", status_code=status.HTTP_201_CREATED, summary="Add a user (admin + TOTP).")
def add_user(body: NewUser, plane: Plane, who: Caller) -> Credentials:
    role = Role.parse(body.role)
    return _credentials(plane.add_user(who, body.name, role, _ttl(body.expires_in_days)))


@router.delete("/users/{name}", summary="Remove a user and its token (admin + TOTP).")
def remove_user(name: str, plane: Plane, who: Caller) -> UserView:
    u = plane.remove_user(who, name)
    return UserView(name=u.name, role=u.role.name, created=u.created)


@router.post(
    "/users/{name}/token",
    summary="Replace a user's token: one's own (any role + TOTP), another's (admin + TOTP).",
)
def rotate_token(name: str, plane: Plane, who: Caller, body: Lifetime | None = None) -> Credentials:
    ttl = _ttl((body or Lifetime()).expires_in_days)
    return _credentials(plane.rotate_token(who, name, ttl))


@router.get("/keys", summary="The repository's keys (admin).")
def list_keys(plane: Plane, who: Caller) -> list[KeyView]:
    return [KeyView(**k) for k in plane.list_keys(who)]


@router.post("/keys", status_code=status.HTTP_201_CREATED, summary="Add a key (admin + TOTP).")
def add_key(body: NewKey, plane: Plane, who: Caller) -> KeyId:
    return KeyId(id=plane.add_key(who, body.password))


@router.delete("/keys/{key_id}", summary="Remove a key, not the server's (admin + TOTP).")
def remove_key(key_id: str, plane: Plane, who: Caller) -> KeyId:
    return KeyId(id=plane.remove_key(who, key_id))
