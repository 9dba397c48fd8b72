"""Running the control plane: the plane started, the API served by uvicorn, both stopped."""

from __future__ import annotations

from collections.abc import Callable

from seawall.control.plane import ControlPlane
from seawall.interfaces.api.app import create_app
from seawall.interfaces.server.serve import check_tls, run


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
    check_tls(tls_cert, tls_key)
    try:
        plane.start()  # a wrong password fails here, before anything listens
        app = create_app(plane)

        def listening(url: str) -> None:
            ready(url)  # first: the line that says where it serves
            app.state.monitor.start()  # the checks behind alerts (control/monitor.py)

        try:
            run(
                app,
                listen,
                tls_cert=tls_cert,
                tls_key=tls_key,
                access_log=access_log,
                ready=listening,
            )
        finally:
            app.state.monitor.stop()
    finally:
        plane.stop()
