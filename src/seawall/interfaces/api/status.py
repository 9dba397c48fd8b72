"""Read-only views: who am I, the assets and their status, snapshot groups, schedules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from .auth import Caller, Plane

router = APIRouter(tags=["status"])


class WhoAmI(BaseModel):
    name: str
    role: str


class AssetStatus(BaseModel):
    name: str
    kind: str
    rpo: str | None
    rto: str | None
    retention: str | None
    residency: str | None
    tags: list[str]
    #: job kind -> cron expression
    schedule: dict[str, str]
    #: the newest group holding it (group, snapshot, time, age_s, within_rpo), its
    #: last drill, and its problems (see ``seawall status``)
    status: dict[str, Any]


class GroupView(BaseModel):
    id: str
    time: str
    hostname: str
    plan_file: str
    #: asset name -> snapshot id
    assets: dict[str, str]


class ScheduledView(BaseModel):
    kind: str
    asset: str
    cron: str
    last_slot: str | None
    next_slot: str | None


@router.get("/whoami", summary="The caller's user and role (any role).")
def whoami(who: Caller) -> WhoAmI:
    assert who.user is not None
    return WhoAmI(name=who.user.name, role=who.user.role.name)


@router.get("/assets", summary="Every asset with its policies and status (viewer).")
def assets(plane: Plane, who: Caller) -> list[AssetStatus]:
    return [AssetStatus(**a) for a in plane.assets(who)]


@router.get("/assets/{name}", summary="One asset with its policies and status (viewer).")
def asset(name: str, plane: Plane, who: Caller) -> AssetStatus:
    found: list[dict[str, Any]] = [a for a in plane.assets(who) if a["name"] == name]
    if not found:
        raise HTTPException(404, f"the plan has no asset {name!r}")
    return AssetStatus(**found[0])


@router.get("/groups", summary="Complete snapshot groups, oldest first (viewer).")
def groups(plane: Plane, who: Caller) -> list[GroupView]:
    return [
        GroupView(
            id=g.id,
            time=g.time.isoformat(),
            hostname=g.hostname,
            plan_file=g.plan_file,
            assets=g.assets,
        )
        for g in plane.groups(who)
    ]


@router.get("/schedule", summary="Scheduled jobs with their last and next slots (viewer).")
def schedule(plane: Plane, who: Caller) -> list[ScheduledView]:
    return [ScheduledView(**s) for s in plane.schedule(who)]  # type: ignore[arg-type]
