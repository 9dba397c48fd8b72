"""Operations started as background jobs, and the jobs themselves with their progress.

Starting an operation answers 202 with the job; poll ``GET /jobs/{id}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from .auth import Caller, Plane

router = APIRouter(tags=["jobs"])
ACCEPTED = status.HTTP_202_ACCEPTED


class ProgressView(BaseModel):
    phase: str
    files_done: int
    bytes_done: int
    files_total: int | None
    bytes_total: int | None
    elapsed_s: float
    rate_bytes_s: float
    eta_s: float | None


class JobView(BaseModel):
    id: str
    kind: str
    assets: list[str]
    #: ``api``, ``schedule`` or ``catch-up``
    trigger: str
    user: str
    slot: str | None
    created: str
    started: str | None
    finished: str | None
    #: queued, running, ok, failed, cancelled or interrupted
    state: str
    error: str | None
    result: dict[str, Any] | None
    progress: ProgressView | None


class BackupRequest(BaseModel):
    #: the assets to capture into one snapshot group (default: all)
    assets: list[str] | None = None


class RestoreRequest(BaseModel):
    #: one asset (default: every asset of the group)
    asset: str | None = None
    #: a group or snapshot id, an ISO time, or "latest" (default: the newest holding asset)
    at: str | None = None
    #: restore here instead of a new sandbox directory: admin role and TOTP
    target: str | None = None
    #: per-asset restore options (``{"db": {"database": "x"}}``): admin role and TOTP
    options: dict[str, dict[str, str]] | None = None


class DrillRequest(BaseModel):
    #: drill these assets one by one (default: the whole plan in one drill)
    assets: list[str] | None = None
    snapshot: str | None = None
    from_replica: str | None = None


class CopyRequest(BaseModel):
    assets: list[str] | None = None
    #: one replica of the plan (default: all)
    replica: str | None = None


class ForgetRequest(BaseModel):
    assets: list[str] | None = None
    #: prune after forgetting (removes the data no snapshot needs)
    prune: bool = True


def _view(job: Any) -> JobView:
    return JobView(**(job if isinstance(job, dict) else job.view()))


@router.post(
    "/backups", status_code=ACCEPTED, summary="Back up assets into one snapshot group (operator)."
)
def start_backup(body: BackupRequest, plane: Plane, who: Caller) -> JobView:
    return _view(plane.start_backup(who, body.assets))


@router.post(
    "/restores",
    status_code=ACCEPTED,
    summary="Restore a group or one asset: into the sandbox (operator), elsewhere (admin + TOTP).",
)
def start_restore(body: RestoreRequest, plane: Plane, who: Caller) -> JobView:
    job = plane.start_restore(
        who, asset=body.asset, at=body.at, target=body.target, options=body.options
    )
    return _view(job)


@router.post("/drills", status_code=ACCEPTED, summary="Run a drill (operator).")
def start_drill(body: DrillRequest, plane: Plane, who: Caller) -> JobView:
    job = plane.start_drill(
        who, body.assets, snapshot=body.snapshot, from_replica=body.from_replica
    )
    return _view(job)


@router.post("/copies", status_code=ACCEPTED, summary="Copy snapshots to replicas (operator).")
def start_copy(body: CopyRequest, plane: Plane, who: Caller) -> JobView:
    return _view(plane.start_copy(who, body.assets, replica=body.replica))


@router.post(
    "/forget",
    status_code=ACCEPTED,
    summary="Forget snapshots by each asset's retention, then prune (admin + TOTP).",
)
def start_forget(body: ForgetRequest, plane: Plane, who: Caller) -> JobView:
    return _view(plane.start_forget(who, body.assets, prune=body.prune))


@router.post("/prune", status_code=ACCEPTED, summary="Prune unused data (admin + TOTP).")
def start_prune(plane: Plane, who: Caller) -> JobView:
    return _view(plane.start_prune(who))


@router.get("/jobs", summary="Jobs, newest first, with progress while running (viewer).")
def jobs(
    plane: Plane,
    who: Caller,
    kind: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobView]:
    return [_view(j) for j in plane.list_jobs(who, kind=kind, state=state, limit=limit)]


@router.get("/jobs/{job_id}", summary="One job, with progress while running (viewer).")
def job(job_id: str, plane: Plane, who: Caller) -> JobView:
    found = plane.job(who, job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return _view(found)


class Cancelled(BaseModel):
    cancelled: bool = Field(description="whether the job was running and was asked to stop")


@router.post("/jobs/{job_id}/cancel", summary="Ask a running job to stop (operator).")
def cancel(job_id: str, plane: Plane, who: Caller) -> Cancelled:
    cancelled = plane.cancel_job(who, job_id)
    if cancelled is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return Cancelled(cancelled=cancelled)
