"""The application: routes under ``/api/v1``, errors as JSON, the API described locally.

``create_app(plane)`` is the one factory: the server, the tests and the
dashboard (which adds its own routes to the app it returns, and subscribes
to ``plane.jobs`` for events) all start from it.

Errors are JSON ``{"error": "..."}``: 401 no valid token (with
``WWW-Authenticate: Bearer``), 403 a role too low or a missing or wrong
second factor, 404 no such thing, 409 the same job is running, 400 bad
input, 422 a malformed body, 503 the audit log cannot be written (the
operation was not started), 500 anything else.

The OpenAPI schema is at ``/openapi.json`` and a page describing every
endpoint at ``/docs``, rendered here from the schema with nothing loaded
from elsewhere (FastAPI's own pages fetch Swagger UI from a CDN). Only
those two and ``/health`` answer without a token.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse

from seawall.control.plane import ControlPlane
from seawall.errors import (
    AccessDenied,
    AuditError,
    JobConflict,
    NotAuthenticated,
    SeawallError,
    UsageError,
)
from seawall.version import __version__

from . import audit, dashboard, jobs, status, users, watch

PREFIX = "/api/v1"

_STATUS: list[tuple[type[SeawallError], int]] = [
    (NotAuthenticated, 401),
    (AccessDenied, 403),
    (JobConflict, 409),
    (UsageError, 400),
    (AuditError, 503),
]


def create_app(plane: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="seawall control plane",
        version=__version__,
        description=(
            "Scheduled protection, recovery and audit of an AI stack's plan. Authenticate "
            "with `Authorization: Bearer TOKEN`; destructive operations also need "
            "`X-Seawall-TOTP: CODE`."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.plane = plane
    for module in (status, jobs, audit, users, watch):
        app.include_router(module.router, prefix=PREFIX)
    # The monitor (app.state.monitor: `seawall serve` starts it), /metrics and the dashboard.
    watch.install(app, plane)
    dashboard.install(app)

    @app.exception_handler(SeawallError)
    def seawall_error(request: Request, err: SeawallError) -> JSONResponse:
        code = next((c for cls, c in _STATUS if isinstance(err, cls)), 500)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse({"error": str(err)}, status_code=code, headers=headers)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(err.detail)}, status_code=err.status_code, headers=err.headers
        )

    @app.get("/health", tags=["status"], summary="Liveness: no token needed, nothing revealed.")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    return app


def docs_page(schema: dict[str, Any]) -> str:
    """Every endpoint of ``schema``: method, path, summary, parameters and body, as one
    self-contained page."""
    esc = html.escape
    info = schema.get("info", {})
    rows = []
    for path, methods in sorted(schema.get("paths", {}).items()):
        for method, op in methods.items():
            params = ", ".join(
                f"{p['name']} ({p['in']})" for p in op.get("parameters", []) if p["in"] != "header"
            )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            rows.append(
                "<tr>"
                f"<td><code>{esc(method.upper())}</code></td>"
                f"<td><code>{esc(path)}</code></td>"
                f"<td>{esc(op.get('summary', ''))}</td>"
                f"<td>{esc(params)}</td>"
                f"<td>{esc(ref.rsplit('/', 1)[-1])}</td>"
                "</tr>"
            )
    models = []
    for name, model in sorted(schema.get("components", {}).get("schemas", {}).items()):
        fields = ", ".join(
            f"{esc(field)}{'' if field in model.get('required', []) else '?'}"
            for field in model.get("properties", {})
        )
        models.append(f"<li><b>{esc(name)}</b>: {fields}</li>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(info.get('title', ''))}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;vertical-align:top}</style></head><body>"
        f"<h1>{esc(info.get('title', ''))} {esc(info.get('version', ''))}</h1>"
        f"<p>{esc(info.get('description', ''))}</p>"
        "<p>The machine-readable schema: <a href='/openapi.json'>/openapi.json</a>.</p>"
        "<table><tr><th>method</th><th>path</th><th>what (and who may)</th>"
        "<th>parameters</th><th>body</th></tr>"
        + "".join(rows)
        + "</table><h2>Models</h2><ul>"
        + "".join(models)
        + "</ul></body></html>"
    )
