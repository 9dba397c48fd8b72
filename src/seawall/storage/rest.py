"""A store behind a seawall repository server (``seawall repo-server``), over HTTP(S).

The wire protocol maps one to one onto the Storage protocol (the server side
is ``seawall.interfaces.server.app``, which documents it in full)::

    PUT    /o/NAME          put; ``If-None-Match: *`` makes it put-if-absent (412 if taken)
    GET    /o/NAME          get; ``Range: bytes=A-B`` answers 206, 416 past the end
    HEAD   /o/NAME          stat: the size is the Content-Length
    DELETE /o/NAME          delete
    GET    /list?prefix=P   NDJSON lines {"name", "size"}, closed by {"end": true, "count": N}
    GET    /capabilities    the server's Capabilities as JSON

Invariants: httpx errors never escape; they are translated here, at the
edge (404 -> ObjectNotFound, 412/409 on a put-if-absent -> ObjectExists,
401/403 -> a permanent StorageError saying what to do, 507 -> StorageFull,
other 5xx, timeouts and broken connections -> StorageError(transient=True)).
The token is sent only in the Authorization header and appears in no
message, and neither does anything else from the URL's user-info part.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import fields
from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from seawall.errors import ObjectExists, ObjectNotFound, StorageError, StorageFull, UsageError
from seawall.storage.base import Capabilities, ObjectInfo, check_name

#: Seconds without progress on one socket operation before a request is abandoned
#: (a transient error: the retry layer tries again).
DEFAULT_TIMEOUT = 120.0
#: Shorter than the server's keep-alive (30 s), so a pooled connection is never
#: reused just as the server closes it.
_KEEPALIVE_EXPIRY = 15.0


class RestStorage:
    """A Storage over HTTP(S) against ``seawall repo-server``.

    ``verify`` is True (the system's CAs), False (no verification: tests
    only), a path to a PEM file of CA certificates (for a self-signed
    server), or an ``ssl.SSLContext``. One pooled ``httpx.Client`` serves
    every thread.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        verify: bool | str | ssl.SSLContext = True,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 32,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL:
            raise UsageError("the repository server URL is not a valid http(s) URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise UsageError(
                "a rest: repository needs an http:// or https:// URL with a host, "
                "such as rest:https://backup.example.com:8000/"
            )
        if url.userinfo:
            # Never echo the URL here: the user-info is a credential.
            raise UsageError(
                "do not put credentials in the repository URL; "
                "set SEAWALL_REST_TOKEN to the server's token instead"
            )
        path = url.path if url.path.endswith("/") else url.path + "/"
        self._base = url.copy_with(path=path, query=None, fragment=None)
        self._location = f"rest:{self._base}"
        if isinstance(verify, str):
            try:
                verify = ssl.create_default_context(cafile=verify)
            except (OSError, ssl.SSLError) as err:
                raise UsageError(
                    f"cannot load the CA certificate file {verify}: {err}; "
                    "give a PEM file with the server's certificate or its CA"
                ) from None
        self._sent_token = bool(token)
        headers = {"User-Agent": "seawall"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
        )
        self._client = httpx.Client(
            base_url=self._base,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            # retries= re-tries only failed connects, which never reached the server.
            transport=httpx.HTTPTransport(verify=verify, limits=limits, retries=2),
            follow_redirects=False,
        )
        self._capabilities: Capabilities | None = None

    @property
    def location(self) -> str:
        return self._location

    # --- the protocol ------------------------------------------------------------

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        if if_absent:
            headers["If-None-Match"] = "*"
        with self._translate("put", name):
            resp = self._client.put(_object_path(name), content=data, headers=headers)
        if resp.status_code in (200, 201, 204):
            return
        if if_absent and resp.status_code in (409, 412):
            raise ObjectExists(f"object {name} already exists")
        self._fail(resp, "put", name)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise StorageError(f"invalid range {offset}+{length} for {name}")
        if length == 0:
            self.stat(name)  # still ObjectNotFound for a missing object
            return b""
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        with self._translate("get", name):
            resp = self._client.get(_object_path(name), headers=headers)
        if resp.status_code == 416:
            return b""  # the range starts at or past the end: nothing to read
        if resp.status_code == 206:
            return resp.content
        if resp.status_code == 200:
            # A server (or proxy) may ignore Range and send the whole object.
            body = resp.content
            return body[offset:] if length is None else body[offset : offset + length]
        self._fail(resp, "get", name)

    def stat(self, name: str) -> ObjectInfo:
        with self._translate("stat", name):
            resp = self._client.head(_object_path(name))
        if resp.status_code != 200:
            self._fail(resp, "stat", name)
        try:
            return ObjectInfo(name, int(resp.headers["content-length"]))
        except (KeyError, ValueError):
            raise StorageError(
                f"{self._location} answered a stat of {name} without a size", transient=True
            ) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)  # now, not on the first next()
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        count = 0
        with (
            self._translate("list", prefix or "everything"),
            self._client.stream("GET", "list", params={"prefix": prefix}) as resp,
        ):
            if resp.status_code != 200:
                resp.read()
                self._fail(resp, "list", prefix)
            for line in resp.iter_lines():
                if not line:
                    continue
                entry = _parse_line(line, self._location)
                if entry.get("end") is True:
                    if entry.get("count") != count:
                        break
                    return
                yield ObjectInfo(str(entry["name"]), int(entry["size"]))
                count += 1
        raise StorageError(
            f"the listing from {self._location} was cut short; try again", transient=True
        )

    def delete(self, name: str) -> None:
        with self._translate("delete", name):
            resp = self._client.delete(_object_path(name))
        if resp.status_code not in (200, 204):
            self._fail(resp, "delete", name)

    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            with self._translate("capabilities", ""):
                resp = self._client.get("capabilities")
            if resp.status_code != 200:
                self._fail(resp, "capabilities", "")
            doc = _parse_line(resp.content, self._location)
            known = {f.name for f in fields(Capabilities)}
            # Unknown keys are powers of a newer server: ignored, not an error.
            self._capabilities = Capabilities(**{k: bool(v) for k, v in doc.items() if k in known})
        return self._capabilities

    def close(self) -> None:
        self._client.close()

    # --- translation at the edge -------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, op: str, name: str) -> Iterator[None]:
        """httpx's transport errors as StorageErrors (invalid names never get here)."""
        if op in ("put", "get", "stat", "delete"):
            check_name(name)
        try:
            yield
        except httpx.TimeoutException:
            raise StorageError(
                f"the repository server at {self._location} did not answer in time ({op} {name})",
                transient=True,
            ) from None
        except httpx.ConnectError as err:
            if _is_certificate_error(err):
                raise StorageError(
                    f"the TLS certificate of {self._location} could not be verified: "
                    "if the server uses a self-signed certificate, set SEAWALL_REST_CACERT "
                    "to a PEM file holding it (or its CA)"
                ) from None
            raise StorageError(
                f"cannot connect to the repository server at {self._location}: is "
                "`seawall repo-server` running there, and reachable?",
                transient=True,
            ) from None
        except httpx.TransportError as err:
            raise StorageError(
                f"the connection to {self._location} failed during {op} {name}: "
                f"{type(err).__name__}",
                transient=True,
            ) from None
        except httpx.HTTPError as err:
            raise StorageError(
                f"request to {self._location} failed during {op} {name}: {type(err).__name__}"
            ) from None

    def _fail(self, resp: httpx.Response, op: str, name: str) -> NoReturn:
        """Raise the StorageError for a response that is not a success."""
        status = resp.status_code
        detail = _detail(resp)
        if status == 404:
            if op == "list" or op == "capabilities":
                raise StorageError(
                    f"{self._location} is not a seawall repository server (404 on {op}); "
                    "check the URL"
                )
            raise ObjectNotFound(f"object {name} does not exist")
        if status == 401:
            why = "the token it was given" if self._sent_token else "a request without a token"
            raise StorageError(
                f"the repository server at {self._location} refused {why} (401): set "
                "SEAWALL_REST_TOKEN to a token from the server's --token-file "
                "(or its $SEAWALL_SERVER_TOKEN)"
            )
        if status == 403:
            if resp.headers.get("x-seawall-append-only"):
                if op == "delete":
                    raise StorageError(
                        f"the server is append-only: it refuses to delete {name}. Forget and "
                        "prune cannot run through it; run them on the server host against "
                        "the repository directory itself (seawall --repo /path/to/dir ...)"
                    )
                raise StorageError(
                    f"the server is append-only: it refuses to overwrite {name} with different "
                    "bytes. Repository objects never change, so another writer put that name "
                    "first; run `seawall check`"
                )
            raise StorageError(f"the repository server refused to {op} {name} (403: {detail})")
        if status == 413:
            raise StorageError(
                f"the repository server refused {name} as too large (413: {detail}); "
                "use a smaller pack size, or raise the server's limit"
            )
        if status == 507:
            raise StorageFull(
                f"the repository server is out of space while writing {name}; free some "
                "space on the server and run the command again (the repository is unchanged)"
            )
        if status >= 500 or status in (408, 429):
            raise StorageError(
                f"the repository server at {self._location} failed to {op} {name} "
                f"({status}: {detail})",
                transient=True,
            )
        raise StorageError(
            f"the repository server at {self._location} refused to {op} {name} ({status}: {detail})"
        )


def _object_path(name: str) -> str:
    return "o/" + quote(check_name(name), safe="/")


def _check_prefix(prefix: str) -> None:
    """A prefix is valid if some valid name starts with it."""
    if prefix:
        check_name(prefix + "x")


def _parse_line(line: str | bytes, location: str) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise StorageError(f"{location} sent an answer that is not seawall's JSON", transient=True)
    return doc


def _detail(resp: httpx.Response) -> str:
    """The server's one-line reason, short (from its JSON ``error``, else the body)."""
    with contextlib.suppress(Exception):
        resp.read()
        doc = json.loads(resp.content)
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return str(doc["error"])[:300]
    with contextlib.suppress(Exception):
        text = resp.text.strip().replace("\n", " ")[:300]
        if text:
            return text
    return resp.reason_phrase or "no reason given"


def _is_certificate_error(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
