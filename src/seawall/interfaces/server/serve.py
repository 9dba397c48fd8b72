"""Running the repository server: listen address, TLS, tokens, uvicorn.

The listening socket is bound here, before uvicorn starts, so that a port of
0 picks a free port and the address announced (``ready``) is the real one.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seawall.errors import UsageError
from seawall.interfaces.server.app import MAX_OBJECT_SIZE, create_app
from seawall.storage.local import LocalStorage

#: A token shorter than this is refused: it guards every backup on the server.
MIN_TOKEN_LENGTH = 16
#: Longer than the client's keep-alive (15 s), so the client closes idle connections first.
KEEPALIVE_SECONDS = 30


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6-host]:port`` as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen wants HOST:PORT (such as 127.0.0.1:8000), not {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def read_tokens(token_file: str | None, env_token: str | None) -> list[str]:
    """The accepted tokens: one per line of ``token_file`` (blank lines and # comments
    skipped), else ``env_token``. Never echoes a token."""
    if token_file:
        try:
            lines = Path(token_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read the token file {token_file}: {err}") from None
        tokens = [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
        source = f"the token file {token_file}"
    else:
        tokens = [env_token.strip()] if env_token and env_token.strip() else []
        source = "$SEAWALL_SERVER_TOKEN"
    if not tokens:
        raise UsageError(
            "the server needs a token: give --token-file FILE or set SEAWALL_SERVER_TOKEN "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or run with --no-auth on a trusted loopback address"
        )
    for token in tokens:
        if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or any(c.isspace() for c in token):
            raise UsageError(
                f"a token in {source} is too weak or malformed: tokens need at least "
                f"{MIN_TOKEN_LENGTH} printable ASCII characters without spaces"
            )
    return tokens


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(tls_cert: str | None, tls_key: str | None) -> None:
    """Refuse half a TLS setup, or a certificate and key that do not load together."""
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("TLS needs both --tls-cert and --tls-key")
    if tls_cert and tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(
                f"cannot load the TLS certificate {tls_cert} with its key {tls_key}: {err}"
            ) from None


def bind(listen: str, *, tls: bool) -> tuple[socket.socket, str]:
    """A listening socket for ``listen`` (port 0: a free one) and its real URL."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        af, kind, proto, _name, address = socket.getaddrinfo(
            host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )[0]
        # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on such
        # sockets, and without it every response body waits ~40 ms for a delayed ACK.
        sock = socket.socket(af, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        raise UsageError(f"cannot listen on {listen}: {err.strerror or err}") from None
    sock.set_inheritable(False)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return sock, f"{'https' if tls else 'http'}://{shown}:{bound_port}/"


def serve(
    root: Path,
    listen: str,
    *,
    tokens: list[str] | None,
    append_only: bool,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    access_log: bool = False,
    max_object_size: int = MAX_OBJECT_SIZE,
    ready: Callable[[str], None] = print,
) -> None:
    """Serve the directory ``root`` until interrupted. ``ready`` gets the server's URL."""
    parse_listen(listen)
    check_tls(tls_cert, tls_key)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot use {root} as the repository directory: {err}") from None

    app = create_app(
        LocalStorage(root), tokens=tokens, append_only=append_only, max_object_size=max_object_size
    )
    run(app, listen, tls_cert=tls_cert, tls_key=tls_key, access_log=access_log, ready=ready)


def run(
    app: Any,
    listen: str,
    *,
    tls_cert: str | None,
    tls_key: str | None,
    access_log: bool,
    ready: Callable[[str], None],
) -> None:
    """Serve the ASGI ``app`` on ``listen`` with uvicorn until interrupted (both
    servers of seawall: the repository server and the control plane's API)."""
    import uvicorn

    sock, url = bind(listen, tls=bool(tls_cert))
    config = uvicorn.Config(
        app,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        access_log=access_log,
        log_level="info" if access_log else "warning",
        timeout_keep_alive=KEEPALIVE_SECONDS,
        server_header=False,
        lifespan="off",
    )
    ready(url)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
