"""Authentication of every `/api` route, and what each role may do.

A token belongs to a user with a role (see `gimletd.models.Role`): `ci` pushes
artifacts, reports deleted branches and reads; `user` also writes (release,
roll back, delete, lock, lift holds) in the environments of its allow-list;
`admin` does everything. Handlers call `require_writer(env)` or
`require_admin()` before they change anything, and `audit(...)` describes the
write for the audit trail, stored in the write's own transaction.
"""

from __future__ import annotations

import time
from typing import Any

from flask import g, request

from api.errors import ApiError
from api.services import services
from gimletd.models import AuditEntry, Role
from gimletd.store import User

BEARER = "bearer "


def authenticate() -> None:
    """Set `g.user` from the `Authorization: Bearer <token>` header.

    :raise 401: when the header is missing, or the token unknown, revoked or expired.
    """
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith(BEARER) or not header[len(BEARER) :].strip():
        raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>'")
    authenticate_token(header[len(BEARER) :].strip())


def authenticate_token(token: str) -> None:
    """Set `g.user` from a token given some other way; :raise 401: for one that is not valid."""
    user = services().store.user_by_token(token)
    if user is None:
        raise ApiError(401, "the token is not valid: unknown, revoked or expired")
    g.user = user


def current_user() -> User:
    user: User = g.user
    return user


def require_admin() -> User:
    """:raise 403: unless the caller is an admin."""
    user = current_user()
    if not user.admin:
        raise ApiError(403, f"{user.login} is not an admin: only an admin may do this")
    return user


def require_writer(env: str) -> User:
    """:raise 403: unless the caller may release, roll back, delete or lock in `env`."""
    user = current_user()
    if user.may_write(env):
        return user
    if user.role is Role.CI:
        raise ApiError(
            403,
            f"{user.login} has a ci token, which pushes artifacts and reads; it may not write "
            f"to {env}",
        )
    raise ApiError(
        403,
        f"{user.login} may not write to {env}: its environments are "
        f"{', '.join(user.envs or []) or 'none'}",
    )


def audit(action: str, target: str = "", **detail: Any) -> AuditEntry:
    """The audit entry of a write the caller is making now, from the request's address."""
    return AuditEntry(
        at=time.time(),
        login=current_user().login,
        address=request.remote_addr or "",
        action=action,
        target=target,
        detail=detail,
    )
