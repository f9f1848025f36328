"""`GET /api/openapi.json`: an OpenAPI 3.1 document of the whole API, built from the models.

Every schema comes from a pydantic model (the core's, the handlers' request
bodies, `api/schemas.py` for the other answers); this module only says which
route takes and answers which model, and its query parameters.
`tests/api/test_openapi.py` checks that every route of the app is here and
runs schemathesis against the live API with this document.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import schemas
from api.cleanup import BranchDeletedRequest, PrClosedRequest
from api.control import LockRequest
from api.releases import ReleaseRequest
from api.users import LOGIN_PATTERN, TokenRequest, UserRequest
from gimletd.flux import FluxEventBody
from gimletd.models import (
    DNS_LABEL,
    Artifact,
    AuditEntry,
    EnvLock,
    Event,
    HistoryEntry,
    Hold,
    UserInfo,
)

blueprint = Blueprint("openapi", __name__, url_prefix="/api")

ParamKind = Literal["string", "integer", "boolean", "label", "time", "sha", "strings"]
#: An answer's shape: a model, a list of a model, a map of a model, or any JSON object.
Shape = type[BaseModel] | tuple[Literal["list", "map"], type[BaseModel]] | None


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind = "string"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One route: what it takes and answers, and how a caller authenticates."""

    method: str
    path: str
    endpoint: str
    responses: dict[int, Shape]
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    auth: Literal["token", "none", "signature", "signature-or-token"] = "token"
    headers: tuple[str, ...] = field(default=())
    #: Answers text (Prometheus's format) rather than JSON.
    text: bool = False


def _page(*extra: Param) -> tuple[Param, ...]:
    return (*extra, Param("limit", "integer"), Param("offset", "integer"))


ENV = Param("env", "label", required=True)
APP = Param("app", "label", required=True)
EVENT_ANSWERS: dict[int, Shape] = {202: schemas.EventAnswer, 200: schemas.EventAnswer}

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/", "health.root", {200: schemas.Root}, auth="none"),
    Operation("get", "/health", "health.health", {200: schemas.Health}, auth="none"),
    Operation(
        "get", "/ready", "health.ready", {200: schemas.Ready, 503: schemas.Ready}, auth="none"
    ),
    Operation("get", "/metrics", "health.metrics", {200: None}, auth="none", text=True),
    Operation("get", "/api/openapi.json", "openapi.document", {200: None}, auth="none"),
    Operation(
        "post",
        "/api/artifact",
        "artifacts.save_artifact",
        {201: schemas.ArtifactAccepted, 200: schemas.ArtifactAccepted},
        body=Artifact,
        headers=("Idempotency-Key",),
    ),
    Operation(
        "get",
        "/api/artifacts",
        "artifacts.list_artifacts",
        {200: ("list", Artifact)},
        params=_page(
            Param("repository"),
            Param("app"),
            Param("branch"),
            Param("event"),
            Param("sourceBranch"),
            Param("sha", "strings"),
            Param("since", "time"),
            Param("until", "time"),
        ),
    ),
    Operation(
        "get", "/api/event", "events.get_event", {200: Event}, params=(Param("id", required=True),)
    ),
    Operation(
        "get",
        "/api/eventArtifactTrack",
        "events.track_artifact",
        {200: Event},
        params=(Param("id", required=True),),
    ),
    Operation("post", "/api/releases", "releases.release", {201: Event}, body=ReleaseRequest),
    Operation(
        "post",
        "/api/rollback",
        "releases.rollback",
        {201: Event},
        params=(ENV, APP, Param("sha", "sha", required=True), Param("force", "boolean")),
    ),
    Operation(
        "post",
        "/api/delete",
        "releases.delete",
        {201: Event},
        params=(ENV, APP, Param("force", "boolean")),
    ),
    Operation(
        "get",
        "/api/releases",
        "releases.history",
        {200: ("list", HistoryEntry)},
        params=_page(
            ENV,
            Param("app", "label"),
            Param("since", "time"),
            Param("until", "time"),
            Param("git-repo"),
            Param("reverse", "boolean"),
            Param("all", "boolean"),
        ),
    ),
    Operation(
        "get",
        "/api/status",
        "releases.status",
        {200: ("map", HistoryEntry)},
        params=(ENV, Param("app", "label")),
    ),
    Operation("get", "/api/envs", "releases.envs", {200: ("list", schemas.EnvSummary)}),
    Operation("get", "/api/gitopsRepo", "releases.gitops_repo", {200: schemas.GitopsRepos}),
    Operation(
        "get",
        "/api/holds",
        "control.list_holds",
        {200: ("list", Hold)},
        params=(Param("env", "label"),),
    ),
    Operation(
        "delete", "/api/holds", "control.lift_hold", {200: schemas.HoldLifted}, params=(ENV, APP)
    ),
    Operation("get", "/api/locks", "control.list_locks", {200: ("list", EnvLock)}),
    Operation("post", "/api/locks", "control.lock_env", {201: EnvLock}, body=LockRequest),
    Operation("delete", "/api/locks", "control.unlock_env", {200: schemas.Unlocked}, params=(ENV,)),
    Operation("get", "/api/queue", "control.queue", {200: schemas.Queue}, params=(ENV,)),
    Operation(
        "post",
        "/api/events/branch-deleted",
        "cleanup.branch_deleted",
        EVENT_ANSWERS,
        body=BranchDeletedRequest,
        headers=("Idempotency-Key",),
    ),
    Operation(
        "post",
        "/api/events/pr-closed",
        "cleanup.pr_closed",
        EVENT_ANSWERS,
        body=PrClosedRequest,
        headers=("Idempotency-Key",),
    ),
    Operation("get", "/api/appRepos", "cleanup.app_repos", {200: ("list", schemas.AppRepoInfo)}),
    Operation(
        "post",
        "/api/webhooks/github",
        "webhooks.github",
        {202: schemas.EventAnswer, 200: None},
        auth="signature",
        headers=("X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"),
    ),
    Operation(
        "post",
        "/api/flux-events",
        "flux.flux_event",
        {202: schemas.EventAnswer, 200: None},
        params=(ENV, Param("access_token")),
        body=FluxEventBody,
        auth="signature-or-token",
        headers=("X-Signature",),
    ),
    Operation("get", "/api/users", "users.list_users", {200: ("list", UserInfo)}),
    Operation("get", "/api/user/{login}", "users.get_user", {200: UserInfo}),
    Operation(
        "post", "/api/user", "users.create_user", {201: schemas.UserWithToken}, body=UserRequest
    ),
    Operation(
        "post",
        "/api/user/{login}/token",
        "users.rotate_token",
        {200: schemas.UserWithToken},
        body=TokenRequest,
    ),
    Operation("delete", "/api/user/{login}", "users.delete_user", {200: schemas.UserDeleted}),
    Operation(
        "get",
        "/api/audit",
        "users.audit_trail",
        {200: ("list", AuditEntry)},
        params=_page(Param("login"), Param("action")),
    ),
)

_PARAM_SCHEMAS: dict[ParamKind, dict[str, Any]] = {
    "string": {"type": "string", "maxLength": 512},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "label": {"type": "string", "pattern": DNS_LABEL.pattern, "maxLength": 63},
    "time": {"type": "string", "format": "date-time"},
    "sha": {"type": "string", "pattern": "^([0-9a-f]{40}|[0-9a-f]{64})$"},
    "strings": {"type": "array", "items": {"type": "string", "maxLength": 128}},
}


@blueprint.get("/openapi.json")
def document() -> Response:
    """This API, as an OpenAPI 3.1 document."""
    return jsonify(openapi_document(current_app))


@functools.cache
def _built() -> dict[str, Any]:
    bodies = [(op.body, "validation") for op in OPERATIONS if op.body is not None]
    answers = [(model, "serialization") for op in OPERATIONS for model in _models(op)]
    refs, defs = models_json_schema(
        list(dict.fromkeys([*bodies, *answers])),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
        by_alias=True,
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GimletD",
            "version": "1",
            "description": "GitOps release manager: CI pushes release artifacts; GimletD "
            "commits rendered manifests to the GitOps repository.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def openapi_document(app: Flask) -> dict[str, Any]:
    """The document, with each operation's summary from its view function's docstring."""
    document = _built()
    for op in OPERATIONS:
        view = app.view_functions.get(op.endpoint)
        doc = inspect.getdoc(view) if view is not None else None
        if doc:
            document["paths"][op.path][op.method]["summary"] = doc.splitlines()[0]
    return document


def _models(op: Operation) -> list[type[BaseModel]]:
    found = [schemas.ErrorBody]
    for shape in op.responses.values():
        if isinstance(shape, tuple):
            found.append(shape[1])
        elif shape is not None:
            found.append(shape)
    return found


def _operation(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    def answer(shape: Shape) -> dict[str, Any]:
        if shape is None:
            return {"type": "object"}
        if isinstance(shape, tuple):
            kind, model = shape
            item = refs[(model, "serialization")]
            return (
                {"type": "array", "items": item}
                if kind == "list"
                else {"type": "object", "additionalProperties": item}
            )
        return dict(refs[(shape, "serialization")])

    operation: dict[str, Any] = {
        "operationId": op.endpoint.replace(".", "_"),
        "parameters": [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "schema": _PARAM_SCHEMAS[p.kind],
            }
            for p in op.params
        ]
        + [
            {
                "name": name,
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
            }
            for name in op.headers
        ]
        + [
            {
                "name": "login",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": LOGIN_PATTERN},
            }
            for _ in [0]
            if "{login}" in op.path
        ],
        "responses": {
            str(status): {
                "description": "OK" if status < 300 else "see the body",
                "content": {"text/plain": {"schema": {"type": "string"}}}
                if op.text
                else {"application/json": {"schema": answer(shape)}},
            }
            for status, shape in op.responses.items()
        }
        | {
            "default": {
                "description": "an error, explained",
                "content": {
                    "application/json": {"schema": refs[(schemas.ErrorBody, "serialization")]}
                },
            }
        },
    }
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body is not TokenRequest,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    if op.auth == "signature-or-token":
        # A token (header or `access_token`), or with FLUX_WEBHOOK_SECRET the signature only.
        operation["security"] = [{"bearer": []}, {}]
    elif op.auth != "token":
        operation["security"] = []
    return operation
