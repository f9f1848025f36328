"""Users, their tokens and the audit trail: `/api/users`, `/api/user...`, `/api/audit`; admin only.

`POST /api/user` and `POST /api/user/<login>/token` answer the token once; only
its hash is stored. The Go original's `POST /api/user {"login"}` still works
and creates a `user` with access to every environment.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from pydantic import Field, field_validator

from api.auth import audit, authenticate, require_admin
from api.errors import ApiError
from api.query import int_param, json_body, text_param
from api.services import services
from gimletd.durations import parse_duration
from gimletd.models import DNS_LABEL_MAX, LOGIN, Model, Role, check_dns_label
from gimletd.store import MAX_LIST_LIMIT

blueprint = Blueprint("users", __name__, url_prefix="/api")


def _admins_only() -> None:
    require_admin()


blueprint.before_request(authenticate)
blueprint.before_request(_admins_only)

LOGIN_PATTERN = LOGIN.pattern


class TokenRequest(Model):
    """When a token stops working: `expiresIn` (`90d`, `12h`), or never when absent."""

    expires_in: str | None = Field(default=None, alias="expiresIn", max_length=32)

    def expires_at(self) -> int | None:
        if self.expires_in is None:
            return None
        try:
            return int(time.time() + parse_duration(self.expires_in))
        except ValueError as exc:
            raise ApiError(422, f"expiresIn: {exc}") from None


class UserRequest(TokenRequest):
    """The body of `POST /api/user`."""

    login: str = Field(pattern=LOGIN_PATTERN)
    role: Role = Role.USER
    envs: list[str] | None = Field(default=None, max_length=100)

    @field_validator("envs")
    @classmethod
    def _envs_are_labels(cls, envs: list[str] | None) -> list[str] | None:
        for env in envs or []:
            if len(env) > DNS_LABEL_MAX:
                raise ValueError(f"env {env[:20]!r}... is longer than {DNS_LABEL_MAX} characters")
            check_dns_label(env, "env")
        return envs


@blueprint.get("/users")
def list_users() -> Response:
    return jsonify([user.to_json() for user in services().store.users()])


@blueprint.get("/user/<login>")
def get_user(login: str) -> Response:
    return jsonify(services().store.user(login).to_json())


@blueprint.post("/user")
def create_user() -> tuple[Response, int]:
    """Create a user; `201` with the user and its `token`, shown this once.

    :raise 409: when the login is taken.
    :raise 422: for envs on a role other than `user`.
    """
    body = UserRequest.model_validate_json(json_body())
    if body.envs is not None and body.role is not Role.USER:
        raise ApiError(422, f"envs limit a user; a {body.role.value} token has no such list")
    user, token = services().store.create_user(
        body.login,
        role=body.role,
        envs=body.envs,
        expires_at=body.expires_at(),
        audit=audit("user.create", body.login, role=body.role.value, envs=body.envs),
    )
    return jsonify({**user.to_json(), "token": token}), 201


@blueprint.post("/user/<login>/token")
def rotate_token(login: str) -> Response:
    """Give a user a new token; the old one stops working at once. Shown this once."""
    body = TokenRequest.model_validate_json(request.get_data(cache=False).strip() or b"{}")
    user, token = services().store.rotate_token(
        login, expires_at=body.expires_at(), audit=audit("user.rotate", login)
    )
    return jsonify({**user.to_json(), "token": token})


@blueprint.delete("/user/<login>")
def delete_user(login: str) -> Response:
    """Delete a user and revoke its token. :raise 409: for the last admin."""
    user = services().store.delete_user(login, audit=audit("user.delete", login))
    return jsonify({"deleted": user.to_json()})


@blueprint.get("/audit")
def audit_trail() -> Response:
    """The audit trail, newest first. Filters: `login`, `action`, `limit`, `offset`."""
    entries = services().store.audit_entries(
        limit=int_param("limit", default=50, minimum=1, maximum=MAX_LIST_LIMIT),
        offset=int_param("offset", default=0, minimum=0, maximum=10_000_000),
        login=text_param("login", max_length=256),
        action=text_param("action", max_length=32),
    )
    return jsonify([entry.to_json() for entry in entries])
