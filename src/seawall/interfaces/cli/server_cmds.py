"""``seawall repo-server``: serve a repository directory over HTTP(S) (see interfaces.server)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .common import echo_err, warn


@click.command("repo-server", short_help="Serve a repository over HTTP(S), append-only if asked.")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--listen",
    default="127.0.0.1:8000",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (port 0 picks a free one; [::1]:PORT for IPv6).",
)
@click.option(
    "--append-only",
    is_flag=True,
    help="Refuse every delete (except of locks) and every overwrite: clients can back up "
    "but cannot destroy what is there. Run forget and prune on this host instead.",
)
@click.option("--tls-cert", metavar="FILE", help="Serve HTTPS with this PEM certificate (chain).")
@click.option("--tls-key", metavar="FILE", help="The PEM private key of --tls-cert.")
@click.option(
    "--token-file",
    metavar="FILE",
    help="Accepted bearer tokens, one per line (default: $SEAWALL_SERVER_TOKEN).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Accept requests without a token (only for a trusted loopback address).",
)
@click.option("--access-log", is_flag=True, help="Log every request (never its token).")
def repo_server(
    path: Path,
    listen: str,
    append_only: bool,
    tls_cert: str | None,
    tls_key: str | None,
    token_file: str | None,
    no_auth: bool,
    access_log: bool,
) -> None:
    """Serve the repository directory PATH to clients using --repo rest:http(s)://HOST:PORT/.

    \b
    Example (on the backup host):
      export SEAWALL_SERVER_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
      seawall repo-server /srv/seawall --listen 0.0.0.0:8000 --append-only \\
          --tls-cert cert.pem --tls-key key.pem
    and on a client, with the same token in SEAWALL_REST_TOKEN:
      seawall --repo rest:https://backup-host:8000/ backup /data
    """
    from seawall.errors import UsageError
    from seawall.interfaces.server.serve import is_loopback, parse_listen, read_tokens, serve

    host, _port = parse_listen(listen)
    if no_auth:
        if token_file or not is_loopback(host):
            raise UsageError("--no-auth is only for a loopback address, and without --token-file")
        tokens = None
    else:
        tokens = read_tokens(token_file, os.environ.get("SEAWALL_SERVER_TOKEN"))
    if not tls_cert and not is_loopback(host):
        warn(
            f"serving {listen} without TLS: the token travels in clear text "
            "(the data itself is encrypted by the clients); give --tls-cert and --tls-key"
        )
    mode = "append-only" if append_only else "read-write"

    def ready(url: str) -> None:
        # One line, flushed at once: scripts and tests wait for it.
        echo_err(f"seawall repo-server: serving {path} ({mode}) on {url}")

    serve(
        path,
        listen,
        tokens=tokens,
        append_only=append_only,
        tls_cert=tls_cert,
        tls_key=tls_key,
        access_log=access_log,
        ready=ready,
    )


COMMANDS = [repo_server]
