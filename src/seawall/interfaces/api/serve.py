"""Running the control plane: the plane started, the API served by uvicorn, both stopped."""

from __future__ import annotations

from collections.abc import Callable

from seawall.control.plane import ControlPlane
from seawall.interfaces.api.app import create_app
from seawall.interfaces.server.serve import KEEPALIVE_SECONDS, bind, check_tls


def serve(
    plane: ControlPlane,
    listen: str,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    access_log: bool = False,
    ready: Callable[[str], None] = print,
) -> None:
    """Start ``plane`` (its repository opened, its scheduler running) and serve its API
    on ``listen`` until interrupted; then stop the scheduler and cancel running jobs."""
    import uvicorn

    check_tls(tls_cert, tls_key)
    try:
        plane.start()  # a wrong password fails here, before anything listens
        sock, url = bind(listen, tls=bool(tls_cert))
        app = create_app(plane)
        app.state.monitor.start()  # the checks behind alerts (control/monitor.py)
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
            app.state.monitor.stop()
    finally:
        plane.stop()
