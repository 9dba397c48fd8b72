"""The audit log, its verification, and drill reports (auditor)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from .auth import Caller, Plane

router = APIRouter(tags=["audit"])


class EntryView(BaseModel):
    seq: int
    prev: str
    time: str
    user: str
    via: str
    host: str
    remote: str | None
    operation: str
    outcome: str
    assets: list[str]
    snapshots: list[str]
    detail: str
    params: dict[str, Any]
    id: str
    digest: str


class ProblemView(BaseModel):
    seq: int | None
    message: str
    record: str | None


class VerificationView(BaseModel):
    ok: bool
    entries: int
    head: EntryView | None
    #: in chain order: the first names the first bad entry
    problems: list[ProblemView]


@router.get("/audit", summary="Audit entries, oldest first, filtered (auditor).")
def audit_log(
    plane: Plane,
    who: Caller,
    since: datetime | None = None,
    until: datetime | None = None,
    user: str | None = None,
    asset: str | None = None,
    operation: str | None = None,
    outcome: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[EntryView]:
    entries = plane.audit_entries(
        who,
        since=_aware(since),
        until=_aware(until),
        user=user,
        asset=asset,
        operation=operation,
        outcome=outcome,
    )
    return [EntryView(**e.to_json()) for e in entries[-limit:]]


@router.get("/audit/verify", summary="Verify the audit log's hash chain (auditor).")
def audit_verify(plane: Plane, who: Caller) -> VerificationView:
    result = plane.verify_audit(who)
    return VerificationView(
        ok=result.ok,
        entries=result.entries,
        head=EntryView(**result.head.to_json()) if result.head else None,
        problems=[ProblemView(**p.__dict__) for p in result.problems],
    )


@router.get("/drills", summary="Drill reports, newest first (auditor).")
def drill_reports(
    plane: Plane, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    return plane.drill_reports(who, limit)


def _aware(when: datetime | None) -> datetime | None:
    """A time without a zone is the server's local time."""
    return when.astimezone() if when is not None and when.tzinfo is None else when
