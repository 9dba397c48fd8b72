"""The repository server's HTTP application: the Storage protocol over HTTP.

Built on Starlette (an ASGI toolkit) served by uvicorn. FastAPI is Starlette
plus request/response models, validation and OpenAPI; this API moves raw
bytes and tiny JSON, so those would add dependencies (pydantic) and startup
time for nothing. Both projects are widely used and maintained, and
Starlette gives what matters here: streaming responses, a request body
limit, and blocking store calls run in a thread pool.

Wire protocol (every request needs ``Authorization: Bearer TOKEN`` unless the
server runs with --no-auth; a bad or missing token is 401)::

    PUT    /o/NAME         store the body under NAME; 201 (204 if an identical object was there)
                           If-None-Match: *  -> put-if-absent: 412 if NAME is taken
    GET    /o/NAME         the object; Range: bytes=A-B, A- or -N -> 206 with Content-Range,
                           416 when the range starts at or past the end
    HEAD   /o/NAME         200 with the size as Content-Length
    DELETE /o/NAME         204
    GET    /list?prefix=P  200, NDJSON: {"name": N, "size": S} per object, then
                           {"end": true, "count": C} (a listing without it was cut short)
    GET    /capabilities   200, the store's Capabilities as JSON (plus append_only)

Errors are JSON ``{"error": "..."}``: 400 bad name or range, 404 no such
object, 413 body over the limit, 507 store full, 503 a transient store
failure, 500 any other.

Append-only mode (the invariant that makes it a backup target an attacker
with the client's token cannot destroy): no object outside ``locks/`` is ever
deleted or changed. Every PUT there is a put-if-absent on the store; if the
name is taken, the PUT succeeds only when the bytes are identical (an
idempotent retry: names are content hashes), else 403. Every DELETE is 403.
Under ``locks/`` the store behaves normally, so clients can release their
own locks. Refusals carry the header ``X-Seawall-Append-Only: 1``.

This module knows only the storage layer (an import-linter contract says so).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from seawall.errors import ObjectExists, ObjectNotFound, StorageError, StorageFull
from seawall.storage.base import Storage, check_name

T = TypeVar("T")

#: The largest object a PUT may carry (a pack is 16 MiB by default).
MAX_OBJECT_SIZE = 1 << 30
#: GET streams objects in pieces of this size, so a server's memory per
#: download stays bounded whatever the pack size.
STREAM_CHUNK = 1 << 20
#: Listing lines sent per chunk of the streamed response.
_LIST_BATCH = 1000
#: Objects under this prefix can be deleted and replaced even in append-only mode.
LOCKS_PREFIX = "locks/"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class HTTPFailure(Exception):
    """A reply other than success, raised from an endpoint."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps({"error": message}) + "\n",
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class TokenAuth:
    """ASGI middleware: every HTTP request must carry one of ``tokens`` as a Bearer token.

    Tokens are compared with ``hmac.compare_digest`` against every accepted
    token (no early exit), so timing tells nothing. No token is ever logged
    or echoed.
    """

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self.app = app
        self._tokens = [t.encode() for t in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            reply = error_response(
                401,
                "missing or wrong token: send Authorization: Bearer TOKEN",
                {"WWW-Authenticate": 'Bearer realm="seawall"'},
            )
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credential = bytes(value).partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credential.strip()
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(given, token)
        return ok and bool(given)


def create_app(
    storage: Storage,
    *,
    tokens: Sequence[str] | None,
    append_only: bool,
    max_object_size: int = MAX_OBJECT_SIZE,
) -> Starlette:
    """The ASGI app serving ``storage``. ``tokens=None`` serves without auth."""

    async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Store calls block (disk I/O, fsync): run them off the event loop.
        return await run_in_threadpool(fn, *args, **kwargs)

    def refuse(what: str) -> HTTPFailure:
        return HTTPFailure(
            403,
            f"this server is append-only: it refuses to {what}",
            {"X-Seawall-Append-Only": "1"},
        )

    async def put(request: Request, name: str) -> Response:
        data = await request.body()
        if request.headers.get("if-none-match", "").strip() == "*":
            await call(storage.put, name, data, if_absent=True)
            return Response(status_code=201)
        if not append_only or name.startswith(LOCKS_PREFIX):
            await call(storage.put, name, data)
            return Response(status_code=201)
        # Put-if-absent on the store makes the check and the write one atomic step.
        try:
            await call(storage.put, name, data, if_absent=True)
            return Response(status_code=201)
        except ObjectExists:
            if await call(storage.get, name) == data:
                return Response(status_code=204)  # the same bytes again: an idempotent retry
            raise refuse(f"overwrite {name} with different bytes") from None

    async def get(request: Request, name: str) -> Response:
        size = (await call(storage.stat, name)).size
        headers = {"Accept-Ranges": "bytes"}
        span = _parse_range(request.headers.get("range"), size)
        if span is None:
            start, end, status = 0, size, 200
        else:
            start, end = span
            if start >= size:
                headers["Content-Range"] = f"bytes */{size}"
                raise HTTPFailure(416, f"range starts past the end of {name}", headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        media = "application/octet-stream"
        if end - start <= STREAM_CHUNK:
            body = await call(storage.get, name, start, end - start)
            return Response(body, status_code=status, headers=headers, media_type=media)
        headers["Content-Length"] = str(end - start)
        return StreamingResponse(
            _read_pieces(storage, name, start, end), status, headers, media_type=media
        )

    async def head(name: str) -> Response:
        size = (await call(storage.stat, name)).size
        return Response(
            status_code=200,
            headers={"Content-Length": str(size), "Accept-Ranges": "bytes"},
            media_type="application/octet-stream",
        )

    async def delete(name: str) -> Response:
        if append_only and not name.startswith(LOCKS_PREFIX):
            raise refuse(f"delete {name} (only objects under {LOCKS_PREFIX} can be deleted)")
        await call(storage.delete, name)
        return Response(status_code=204)

    async def objects(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            check_name(name)
        except StorageError as err:
            raise HTTPFailure(400, str(err)) from None
        if request.method == "PUT":
            return await put(request, name)
        if request.method == "GET":
            return await get(request, name)
        if request.method == "HEAD":
            return await head(name)
        return await delete(name)

    async def listing(request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        if prefix:
            try:
                check_name(prefix + "x")  # a valid prefix begins some valid name
            except StorageError:
                raise HTTPFailure(400, f"invalid prefix {prefix!r}") from None
        return StreamingResponse(_list_lines(storage, prefix), media_type="application/x-ndjson")

    async def capabilities(request: Request) -> Response:
        caps = dataclasses.asdict(await call(storage.capabilities))
        caps["object_lock"] = False  # retention is not offered over this protocol
        caps["append_only"] = append_only
        return Response(json.dumps(caps) + "\n", media_type="application/json")

    async def on_failure(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPFailure):
            return error_response(exc.status, str(exc), exc.headers)
        if isinstance(exc, ObjectNotFound):
            return error_response(404, str(exc))
        if isinstance(exc, ObjectExists):
            return error_response(412, str(exc))
        if isinstance(exc, StorageFull):
            return error_response(507, str(exc))
        if isinstance(exc, StorageError) and exc.transient:
            return error_response(503, str(exc))
        return error_response(500, str(exc))

    routes = [
        Route("/o/{name:path}", objects, methods=["GET", "HEAD", "PUT", "DELETE"]),
        Route("/list", listing, methods=["GET"]),
        Route("/capabilities", capabilities, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPFailure: on_failure, StorageError: on_failure},
        max_body_size=max_object_size,
    )
    if tokens is not None:
        app.add_middleware(TokenAuth, tokens=list(tokens))
    return app


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive, cut at ``size``) for one byte range, else None.

    A header this server does not understand (several ranges, other units)
    is ignored and the whole object sent, as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        return max(0, size - int(last)), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if last != "" and int(last) < start:
        return None
    return start, max(start, end)


def _read_pieces(storage: Storage, name: str, start: int, end: int) -> Iterator[bytes]:
    pos = start
    while pos < end:
        piece = storage.get(name, pos, min(STREAM_CHUNK, end - pos))
        if not piece:
            # Shrunk under us: end the body early, so the client sees a cut response.
            raise StorageError(f"{name} changed while it was read", transient=True)
        yield piece
        pos += len(piece)


def _list_lines(storage: Storage, prefix: str) -> Iterator[bytes]:
    count = 0
    batch: list[str] = []
    for info in storage.list(prefix):
        batch.append(json.dumps({"name": info.name, "size": info.size}))
        count += 1
        if len(batch) >= _LIST_BATCH:
            yield ("\n".join(batch) + "\n").encode()
            batch.clear()
    batch.append(json.dumps({"end": True, "count": count}))
    yield ("\n".join(batch) + "\n").encode()
