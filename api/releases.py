"""Release operations: ad-hoc releases, rollbacks, deletes, history and status.

Writes are only accepted and queued here, as events; the workers apply them
through the same per-environment queue as policy deploys. History and status
are read from the release index in the database, never from git.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import Field, StrictBool

from api.auth import audit, authenticate, current_user, require_writer
from api.errors import ApiError, Unavailable
from api.query import (
    bool_param,
    checked_label,
    int_param,
    json_body,
    label_param,
    optional_label_param,
    text_param,
    time_param,
)
from api.services import services
from gimletd.gitops.layout import public_repo_url
from gimletd.models import DNS_LABEL_MAX, Event, EventType, Model, WriteKind
from gimletd.release import plan_operation, release_targets
from gimletd.store import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, HistoryFilter, PlannedWrite

blueprint = Blueprint("releases", __name__, url_prefix="/api")
blueprint.before_request(authenticate)

SHA_LENGTHS = (40, 64)


class ReleaseRequest(Model):
    """The body of `POST /api/releases`, as the Go original's clients send it."""

    env: str = Field(max_length=DNS_LABEL_MAX)
    app: str | None = Field(default=None, max_length=DNS_LABEL_MAX)
    artifact_id: str = Field(alias="artifactId", min_length=1, max_length=512)
    force: StrictBool = False


@blueprint.post("/releases")
def release() -> tuple[Response, int]:
    """Release a stored artifact to one of its environments, triggered by the caller.

    :raise 404: for an unknown artifact.
    :raise 422: when the artifact has no config for that env (or app); names those it has.
    :raise 423: when the environment is locked (an admin may pass `force`).
    """
    body = ReleaseRequest.model_validate_json(json_body())
    env = checked_label(body.env, "env", status=422)
    app = checked_label(body.app, "app", status=422) if body.app else None
    require_writer(env)
    artifact = services().store.artifact(body.artifact_id)
    targets = release_targets(artifact)
    if not any(t_env == env and app in (None, t_app) for t_env, t_app in targets):
        known = sorted({f"{t_env}/{t_app}" for t_env, t_app in targets})
        wanted = f"{env}/{app}" if app else env
        raise ApiError(
            422,
            f"artifact {artifact.id} has no environment config for {wanted}; "
            f"it has: {', '.join(known) or 'none'}",
            envs=sorted({t_env for t_env, _ in targets}),
        )
    _check_lock(env, body.force)
    request_blob = {"env": env, "app": app, "force": body.force}
    event = services().store.create_event(
        EventType.RELEASE,
        request=request_blob,
        triggered_by=current_user().login,
        artifact_id=artifact.id,
        audit=audit("release", f"{env}/{app or '*'}", artifactId=artifact.id, force=body.force),
    )
    return _accepted(event)


@blueprint.post("/rollback")
def rollback() -> tuple[Response, int]:
    """Restore `<env>/<app>/` to its content at the release commit `sha`, in one commit.

    :raise 422: when `sha` is not a commit that released that app in that env.
    :raise 423: when the environment is locked (an admin may pass `force`).
    """
    env, app = _env_and_app()
    require_writer(env)
    sha = (text_param("sha", max_length=64) or "").lower()
    if len(sha) not in SHA_LENGTHS or any(c not in "0123456789abcdef" for c in sha):
        raise ApiError(400, "query parameter 'sha' must be a full commit sha")
    store = services().store
    gitops_repo = gitops_repo_of(env)
    _require_index(gitops_repo)
    target = store.indexed_release(gitops_repo, env, app, sha)
    if target is None or target.kind is WriteKind.DELETE:
        raise ApiError(
            422,
            f"{sha} is not a commit that released {env}/{app}: "
            f"pick one from GET /api/releases?env={env}&app={app}",
        )
    force = bool_param("force")
    _check_lock(env, force)
    who = current_user().login
    event = store.create_event(
        EventType.ROLLBACK,
        request={
            "env": env, "app": app, "sha": sha, "artifactId": target.artifact_id, "force": force,
        },
        triggered_by=who,
        audit=audit("rollback", f"{env}/{app}", sha=sha, force=force),
        plan=_operation(WriteKind.ROLLBACK, gitops_repo, env, app, who, force=force, sha=sha,
                        artifact_id=target.artifact_id),
    )  # fmt: skip
    return _accepted(event)


@blueprint.post("/delete")
def delete() -> tuple[Response, int]:
    """Remove `<env>/<app>/` in one commit; queued and tracked like any other event.

    :raise 404: when the app was never released to that env.
    :raise 423: when the environment is locked (an admin may pass `force`).
    """
    env, app = _env_and_app()
    require_writer(env)
    gitops_repo = gitops_repo_of(env)
    _require_index(gitops_repo)
    live = {entry.app for entry in services().store.live_releases(gitops_repo, env)}
    if app not in live:
        raise ApiError(404, f"{env}/{app} is not released, there is nothing to delete")
    force = bool_param("force")
    _check_lock(env, force)
    who = current_user().login
    event = services().store.create_event(
        EventType.DELETE,
        request={"env": env, "app": app, "force": force},
        triggered_by=who,
        audit=audit("delete", f"{env}/{app}", force=force),
        plan=_operation(WriteKind.DELETE, gitops_repo, env, app, who, force=force),
    )
    return _accepted(event)


@blueprint.get("/releases")
def history() -> Response:
    """Releases newest first, with the Go original's filters, from the release index."""
    env = label_param("env")
    gitops_repo = gitops_repo_of(env)
    kinds = [WriteKind.RELEASE]
    if bool_param("all"):
        kinds = list(WriteKind)
    query = HistoryFilter(
        gitops_repo=gitops_repo,
        env=env,
        app=optional_label_param("app"),
        kinds=kinds,
        source_repository=text_param("git-repo"),
        limit=int_param("limit", default=DEFAULT_LIST_LIMIT, minimum=1, maximum=MAX_LIST_LIMIT),
        offset=int_param("offset", default=0, minimum=0, maximum=10_000_000),
        since=time_param("since"),
        until=time_param("until"),
        reverse=bool_param("reverse"),
    )
    _require_index(gitops_repo)  # after the parameters: bad input is a 400 in any case
    return jsonify([entry.to_json() for entry in services().store.history(query)])


@blueprint.get("/status")
def status() -> Response:
    """The release each app of the env runs, keyed by app, as the Go original answered."""
    env = label_param("env")
    app = optional_label_param("app")
    gitops_repo = gitops_repo_of(env)
    _require_index(gitops_repo)
    live = services().store.live_releases(gitops_repo, env)
    return jsonify({e.app: e.to_json() for e in live if app in (None, e.app)})


@blueprint.get("/envs")
def envs() -> Response:
    """Every environment with its apps, its repository and its lock, if any."""
    store = services().store
    settings = services().settings
    result: dict[str, dict[str, Any]] = {}
    for gitops_repo in settings.all_gitops_repos:
        locks = {lock.env: lock for lock in store.env_locks(gitops_repo)}
        for entry in store.live_releases(gitops_repo):
            if settings.gitops_repo_for(entry.env) != gitops_repo:
                continue  # left behind in a repository the env no longer maps to
            env = result.setdefault(entry.env, _env_summary(entry.env, gitops_repo, locks))
            env["apps"].append(entry.app)
        for env_name in locks:
            if settings.gitops_repo_for(env_name) == gitops_repo:
                result.setdefault(env_name, _env_summary(env_name, gitops_repo, locks))
    return jsonify([result[name] for name in sorted(result)])


@blueprint.get("/gitopsRepo")
def gitops_repo() -> Response:
    """The GitOps repository (`gitopsRepo`, as in the original) and the per-env ones."""
    settings = services().settings
    return jsonify(
        {
            "gitopsRepo": public_repo_url(settings.resolved_gitops_repo),
            "gitopsRepos": {
                env: public_repo_url(url) for env, url in settings.gitops_repos_by_env.items()
            },
        }
    )


def _env_summary(env: str, gitops_repo: str, locks: dict[str, Any]) -> dict[str, Any]:
    lock = locks.get(env)
    return {
        "name": env,
        "apps": [],
        "gitopsRepo": public_repo_url(gitops_repo),
        "lock": lock.to_json() if lock else None,
    }


def _env_and_app() -> tuple[str, str]:
    return label_param("env"), label_param("app")


def gitops_repo_of(env: str) -> str:
    return services().settings.gitops_repo_for(env)


def _require_index(gitops_repo: str) -> None:
    """:raise 503: until the release index of the repository has been built once."""
    if services().store.index_head(gitops_repo) is None:
        services().enqueuer.sync_index()
        raise Unavailable(
            "the release index of the GitOps repository is being built; retry shortly"
        )


def _check_lock(env: str, force: bool) -> None:
    """:raise 423: when env is locked, unless an admin forces; 403 when a non-admin forces.

    A non-admin's `force` is refused even while env is unlocked: the event keeps
    it, and a lock placed before the write is applied would not hold it back.
    """
    if force and not current_user().admin:
        raise ApiError(403, f"only an admin can force a write through the lock of {env}")
    lock = services().store.env_lock(gitops_repo_of(env), env)
    if lock is None or force:
        return
    raise ApiError(423, f"{env} is locked by {lock.locked_by}: {lock.reason}", lock=lock.to_json())


def _operation(
    kind: WriteKind, gitops_repo: str, env: str, app: str, who: str, *, force: bool,
    sha: str = "", artifact_id: str = "",
) -> Callable[[str], list[PlannedWrite]]:  # fmt: skip
    """The planning of a rollback or delete, done as it is accepted: it needs no rendering.

    Queued from the start, it goes ahead of any deploy accepted after it (I3), and its
    hold keeps that deploy back.
    """

    def plan(event_id: str) -> list[PlannedWrite]:
        return [
            plan_operation(
                kind, gitops_repo=gitops_repo, env=env, app=app, event_id=event_id,
                triggered_by=who, now=time.time(), target_sha=sha, artifact_id=artifact_id,
                forced=force,
            )
        ]  # fmt: skip

    return plan


def _accepted(event: Event) -> tuple[Response, int]:
    """201 with the event, once it is stored (I1); the sweep enqueues it if the queue is down."""
    services().enqueuer.process_event(event.id)
    return jsonify(event.to_json()), 201
