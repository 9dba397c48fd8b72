"""Who is asking: the bearer token, the second factor and the client's address.

Every endpoint but ``/health`` and the API description takes a
:class:`~seawall.control.plane.Principal` through :data:`Caller`; the
control plane checks the role and second factor of each operation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from seawall.control.plane import ControlPlane, Principal

TOTP_HEADER = "X-Seawall-TOTP"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token from `seawall user add` or `seawall token rotate` (sw_...).",
)


def get_plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


Plane = Annotated[ControlPlane, Depends(get_plane)]


def get_caller(
    request: Request,
    plane: Plane,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    totp: Annotated[
        str | None,
        Header(
            alias=TOTP_HEADER,
            description="A current TOTP code: destructive operations need one (each code "
            "works once).",
        ),
    ] = None,
) -> Principal:
    """The authenticated caller (401 without a valid token)."""
    user = plane.authenticate(credentials.credentials if credentials else None)
    remote = request.client.host if request.client else None
    return Principal(user.name, "api", user, remote, totp)


Caller = Annotated[Principal, Depends(get_caller)]
