"""The web dashboard: static files served by seawall itself, calling the JSON API.

``/`` leads to ``/dashboard/``: one page (``index.html``, ``app.js``,
``style.css``, shipped in the package) that logs in with an API token and
reads the API with it. It loads nothing from elsewhere: no CDN, no web
fonts, charts drawn as SVG by its own script. The files themselves hold no
data, so they are served without a token; what the page shows is what the
token's role may read (the audit log only for auditors and admins).

Its responses carry a Content-Security-Policy that allows scripts, styles
and requests to this server only: even a value that slipped past the
page's escaping could not run a script or send data elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response

HERE = Path(__file__).parent
FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "index.html": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
}
PATH = "/dashboard/"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(PATH)

    @app.get(PATH + "{name:path}", include_in_schema=False)
    def dashboard(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(404, f"no such file: {name}")
        file, media = FILES[name]
        return FileResponse(HERE / file, media_type=media)

    @app.middleware("http")
    async def secure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith(PATH):
            response.headers.update(SECURITY_HEADERS)
        return response
