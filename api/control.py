"""Holds, environment locks and the write queue: what keeps a release back, and why.

A hold keeps policy deploys off one app (placed by a rollback or by a release
of an older artifact); a lock freezes a whole environment. Lifting either asks
the workers to apply what waited.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from pydantic import Field

from api.auth import audit, authenticate, current_user, require_writer
from api.errors import ApiError
from api.query import checked_label, json_body, label_param, optional_label_param
from api.releases import gitops_repo_of
from api.services import services
from gimletd.gitops.layout import public_repo_url
from gimletd.models import DNS_LABEL_MAX, Model
from gimletd.release import waiting_reason

blueprint = Blueprint("control", __name__, url_prefix="/api")
blueprint.before_request(authenticate)

MAX_REASON = 1024


class LockRequest(Model):
    """The body of `POST /api/locks`."""

    env: str = Field(max_length=DNS_LABEL_MAX)
    reason: str = Field(min_length=1, max_length=MAX_REASON)


@blueprint.get("/holds")
def list_holds() -> Response:
    env = optional_label_param("env")
    store, settings = services().store, services().settings
    repos = [gitops_repo_of(env)] if env else settings.all_gitops_repos
    holds = [hold for repo in repos for hold in store.holds(repo, env)]
    return jsonify([hold.to_json() for hold in holds])


@blueprint.delete("/holds")
def lift_hold() -> Response:
    """Let policy deploys of env/app through again; those that waited are applied."""
    env, app = label_param("env"), label_param("app")
    require_writer(env)
    gitops_repo = gitops_repo_of(env)
    hold = services().store.lift_hold(
        gitops_repo, env, app, audit=audit("hold.lift", f"{env}/{app}")
    )
    if hold is None:
        raise ApiError(404, f"{env}/{app} is not held")
    services().enqueuer.drain(gitops_repo, env)
    return jsonify({"lifted": hold.to_json(), "liftedBy": current_user().login})


@blueprint.get("/locks")
def list_locks() -> Response:
    store = services().store
    locks = [
        lock for repo in services().settings.all_gitops_repos for lock in store.env_locks(repo)
    ]
    return jsonify([lock.to_json() for lock in locks])


@blueprint.post("/locks")
def lock_env() -> tuple[Response, int]:
    """Freeze an environment: no writes until unlocked; policy deploys wait in order.

    :raise 409: when it is locked already (the answer names by whom and why).
    """
    body = LockRequest.model_validate_json(json_body())
    env = checked_label(body.env, "env", status=422)
    require_writer(env)
    store = services().store
    gitops_repo = gitops_repo_of(env)
    existing = store.env_lock(gitops_repo, env)
    if existing is not None:
        raise ApiError(
            409,
            f"{env} is already locked by {existing.locked_by}: {existing.reason}",
            lock=existing.to_json(),
        )
    lock = store.lock_env(
        gitops_repo,
        env,
        reason=body.reason,
        locked_by=current_user().login,
        audit=audit("lock", env, reason=body.reason),
    )
    return jsonify(lock.to_json()), 201


@blueprint.delete("/locks")
def unlock_env() -> Response:
    """Lift an environment's lock; what waited is applied in order."""
    env = label_param("env")
    require_writer(env)
    gitops_repo = gitops_repo_of(env)
    lock = services().store.unlock_env(gitops_repo, env, audit=audit("unlock", env))
    if lock is None:
        raise ApiError(404, f"{env} is not locked")
    services().enqueuer.drain(gitops_repo, env)
    return jsonify({"unlocked": lock.to_json(), "unlockedBy": current_user().login})


@blueprint.get("/queue")
def queue() -> Response:
    """What waits to be written to an environment, oldest first, and why it waits."""
    env = label_param("env")
    store = services().store
    gitops_repo = gitops_repo_of(env)
    lock = store.env_lock(gitops_repo, env)
    writes = store.unfinished_writes(gitops_repo, env)
    holds = {hold.app: hold for hold in store.holds(gitops_repo, env)}
    entries = []
    ahead = 0
    for write in writes:
        reason = waiting_reason(write, lock, holds.get(write.app))
        if reason is None:
            reason = _ready_reason(write.status.value, write.attempts, ahead)
            ahead += 1
        entries.append(
            {
                "eventId": write.event_id,
                "env": write.env,
                "app": write.app,
                "kind": write.kind.value,
                "artifactId": write.release.artifact_id,
                "triggeredBy": write.release.triggered_by,
                "status": write.status.value,
                "attempts": write.attempts,
                "reason": reason,
            }
        )
    return jsonify(
        {
            "env": env,
            "gitopsRepo": public_repo_url(gitops_repo),
            "lock": lock.to_json() if lock else None,
            "writes": entries,
        }
    )


def _ready_reason(status: str, attempts: int, ahead: int) -> str:
    if status == "applying":
        return "being applied"
    retrying = f" (retrying after {attempts} failed attempts)" if attempts else ""
    if ahead:
        return f"behind {ahead} other{'s' if ahead > 1 else ''}{retrying}"
    return f"next{retrying}"
