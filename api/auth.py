"""Bearer-token authentication of every `/api` route."""

from __future__ import annotations

from flask import g, request

from api.errors import ApiError
from api.services import services
from gimletd.store import User

BEARER = "bearer "


def authenticate() -> None:
    """Set `g.user` from the `Authorization: Bearer <token>` header.

    :raise 401: when the header is missing or the token is unknown.
    """
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith(BEARER) or not header[len(BEARER) :].strip():
        raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>'")
    authenticate_token(header[len(BEARER) :].strip())


def authenticate_token(token: str) -> None:
    """Set `g.user` from a token given some other way; :raise 401: for an unknown one."""
    user = services().store.user_by_token(token)
    if user is None:
        raise ApiError(401, "the token is not valid")
    g.user = user


def current_user() -> User:
    user: User = g.user
    return user
