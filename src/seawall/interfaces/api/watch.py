"""What the dashboard reads, and ``/metrics``: the monitor's overview, alerts, anomaly
marks and the compliance view (control/monitor.py).

:func:`install` gives an app its :class:`~seawall.control.monitor.Monitor`
(``app.state.monitor``; ``seawall serve`` starts its checks) and the
``/metrics`` endpoint. Every route needs a token; the viewer role reads them
all. ``/metrics`` takes the same bearer token, so Prometheus scrapes with
``authorization: {credentials_file: ...}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from seawall.control.access import Action
from seawall.control.metrics import metrics_registry
from seawall.control.monitor import Monitor
from seawall.control.plane import ControlPlane
from seawall.plan.anomaly import marks

from .auth import Caller, Plane

router = APIRouter(tags=["watch"])


def monitor_of(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


@router.get(
    "/overview",
    summary="Assets with RPO status and newest backup, snapshots over time, drill history, "
    "replicas and jobs (viewer).",
)
def overview(request: Request, plane: Plane, who: Caller) -> dict[str, Any]:
    plane.authorize(who, Action.read_status, "overview")
    return monitor_of(request).overview()


@router.get("/alerts", summary="Alerts, newest first: firing, or also resolved (viewer).")
def alerts(
    request: Request,
    plane: Plane,
    who: Caller,
    status: Annotated[str | None, Query(pattern="^(firing|resolved)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    plane.authorize(who, Action.read_status, "alerts")
    found = monitor_of(request).alerter.alerts(status=status, limit=limit)
    return [a.to_dict() for a in found]


@router.get(
    "/anomalies", summary="Snapshots marked suspect by the anomaly check, newest first (viewer)."
)
def anomalies(request: Request, plane: Plane, who: Caller) -> list[dict[str, Any]]:
    plane.authorize(who, Action.read_status, "anomalies")
    found = marks(monitor_of(request).repo()).values()
    return sorted(found, key=lambda r: str(r.get("time")), reverse=True)


class Clearing(BaseModel):
    reason: str = Field(min_length=1, description="why the mark is a false alarm")


@router.post(
    "/anomalies/{mark}/clear",
    summary="Clear the anomaly mark of a snapshot (its id or the mark's record id, or a "
    "unique prefix) judged a false alarm: restores take its group again (admin + TOTP).",
)
def clear_anomaly(mark: str, body: Clearing, plane: Plane, who: Caller) -> dict[str, Any]:
    return plane.clear_anomaly(who, mark, body.reason)


@router.get(
    "/compliance",
    summary="Per asset: copies and regions, encryption, immutability, retention, last "
    "successful drill, findings (viewer).",
)
def compliance(request: Request, plane: Plane, who: Caller) -> dict[str, Any]:
    plane.authorize(who, Action.read_status, "compliance")
    return monitor_of(request).compliance().to_dict()


def install(app: FastAPI, plane: ControlPlane) -> Monitor:
    """Give ``app`` its monitor and ``/metrics``; the caller starts the monitor."""
    monitor = Monitor(plane)
    app.state.monitor = monitor
    registry = metrics_registry(monitor)

    @app.get("/metrics", tags=["watch"], summary="Prometheus metrics (viewer; bearer token).")
    def metrics(plane: Plane, who: Caller) -> Response:
        plane.authorize(who, Action.read_status, "metrics")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return monitor
