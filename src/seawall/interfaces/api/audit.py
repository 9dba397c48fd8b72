"""The audit log, its verification, and drill reports (auditor)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from seawall.control.audit import Entry, Problem

from .auth import Caller, Plane

router = APIRouter(tags=["audit"])


class VerificationView(BaseModel):
    ok: bool
    entries: int
    head: Entry | None
    #: in chain order: the first names the first bad entry
    problems: list[Problem]


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
) -> list[Entry]:
    entries = plane.audit_entries(
        who,
        since=_aware(since),
        until=_aware(until),
        user=user,
        asset=asset,
        operation=operation,
        outcome=outcome,
    )
    return entries[-limit:]


@router.get("/audit/verify", summary="Verify the audit log's hash chain (auditor).")
def audit_verify(plane: Plane, who: Caller) -> VerificationView:
    result = plane.verify_audit(who)
    return VerificationView(
        ok=result.ok,
        entries=result.entries,
        head=result.head,
        problems=result.problems,
    )


@router.get("/drills", summary="Drill reports, newest first (auditor).")
def drill_reports(
    plane: Plane, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    return plane.drill_reports(who, limit)


def _aware(when: datetime | None) -> datetime | None:
    """A time without a zone is the server's local time."""
    return when.astimezone() if when is not None and when.tzinfo is None else when
