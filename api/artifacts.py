"""`/api/artifact` and `/api/artifacts`: CI pushes artifacts, people list them."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from api.auth import audit, authenticate, current_user
from api.errors import ApiError
from api.query import idempotency_key, int_param, text_param, time_param
from api.services import services
from gimletd import yamlsafe
from gimletd.app_repos import app_repo_url, needs_branch_polling
from gimletd.errors import Conflict, PolicyError, TemplateError, UnsafeYAML
from gimletd.models import Artifact, Event, GitEvent
from gimletd.policy import check_cleanup_policy, check_deploy_policy
from gimletd.store import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, ArtifactFilter, ArtifactPush
from gimletd.templating import check_manifest_templates

log = logging.getLogger(__name__)

blueprint = Blueprint("artifacts", __name__, url_prefix="/api")
blueprint.before_request(authenticate)

MAX_SHA_PARAM = 128


@blueprint.post("/artifact")
def save_artifact() -> tuple[Response, int]:
    """Store an artifact and its event, then enqueue the event.

    Answers 201 once both are in the database (I1), whether or not the queue
    took the event: the sweep enqueues what the queue missed. Pushes that
    arrive together are stored in one transaction (see `api.intake`). An
    artifact with a cleanup policy registers its repository for branch polling.

    With an `Idempotency-Key`, a push repeated with the same key and artifact
    (a client retrying a 503 or a timeout whose first try was stored after all)
    answers 200 with the first push's artifact and event, `duplicate: true`, and
    stores nothing.
    """
    artifact = parse_artifact(request.get_data(cache=False))
    login = current_user().login
    key = idempotency_key(login, "artifact")
    store = services().store
    if key is not None and (earlier := store.event_with_key(key)) is not None:
        return _repeated_push(earlier, artifact)
    push = ArtifactPush(
        artifact,
        triggered_by=login,
        poll_url=app_repo_url(artifact) if needs_branch_polling(artifact) else None,
        audit=audit(
            "artifact.push",
            "",  # the store names the artifact by the id it gives it
            repository=artifact.version.repository_name,
            sha=artifact.version.sha,
        ),
        dedupe_key=key,
    )
    try:
        stored, event = services().intake.push(push)
    except Conflict:
        # The same key arrived twice at once, and the other request stored it first.
        if key is None or (earlier := store.event_with_key(key)) is None:
            raise
        return _repeated_push(earlier, artifact)
    # The first line of a release's trail: the workers' lines carry the same event_id.
    log.info(
        "artifact %s accepted from %s as event %s",
        stored.id,
        login,
        event.id,
        extra={"event_id": event.id},
    )
    return jsonify({**stored.to_json(), "eventId": event.id}), 201


def _repeated_push(earlier: Event, artifact: Artifact) -> tuple[Response, int]:
    """The answer to a push whose `Idempotency-Key` was used before.

    :raise 422: when the key came with another artifact: reusing a key is a
        client's mistake, and storing either one silently would hide it.
    """
    stored = services().store.artifact(earlier.artifact_id)
    if _comparable(stored) != _comparable(artifact):
        raise ApiError(
            422,
            f"this Idempotency-Key was used for another artifact ({stored.id}): "
            "send a new key with each new artifact",
        )
    return jsonify({**stored.to_json(), "eventId": earlier.id, "duplicate": True}), 200


def _comparable(artifact: Artifact) -> dict[str, object]:
    """The artifact as the client sent it: without the id and time the store gave it."""
    return {**artifact.to_json(), "id": None, "created": None}


def parse_artifact(body: bytes) -> Artifact:
    """Validate an artifact: JSON shape, names, and policies.

    :raise 400: when the body is empty or not JSON.
    :raise 422: when a field is invalid; the message names it.
    """
    if not body.strip():
        raise ApiError(400, "the request body is empty: send the artifact as JSON")
    try:
        artifact = Artifact.model_validate_json(body)
    except ValidationError as exc:
        invalid_json = [e for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
        if invalid_json:
            raise ApiError(400, f"the body is not valid JSON: {invalid_json[0]['msg']}") from exc
        raise
    if not artifact.version.repository_name:
        raise ApiError(422, "version.repositoryName is required: it names the artifact")
    try:
        artifact.version.check_refs()
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    for index, manifest in enumerate(artifact.environments):
        where = f"environments[{index}] ({manifest.env}/{manifest.app})"
        try:
            check_deploy_policy(manifest.deploy)
            check_cleanup_policy(manifest.cleanup)
            check_manifest_templates(manifest)
            for field, text in (
                ("manifests", manifest.manifests),
                ("strategicMergePatches", manifest.strategic_merge_patches),
            ):
                yamlsafe.check_template_source(text, what=field)
            for n, patch in enumerate(manifest.json6902_patches):
                yamlsafe.check_template_source(patch.patch, what=f"json6902Patches[{n}].patch")
        except (PolicyError, TemplateError, UnsafeYAML) as exc:
            raise ApiError(422, f"{where}: {exc}") from exc
    return artifact


@blueprint.get("/artifacts")
def list_artifacts() -> Response:
    """Artifacts newest first, with the Go original's filters."""
    event = text_param("event")
    if event is not None and event not in {e.value for e in GitEvent}:
        raise ApiError(400, f"query parameter 'event' must be push, tag or pr, not {event!r}")
    query = ArtifactFilter(
        repository=text_param("repository") or text_param("app"),
        branch=text_param("branch"),
        event=event,
        source_branch=text_param("sourceBranch"),
        shas=[sha for sha in request.args.getlist("sha") if _valid_sha_param(sha)],
        limit=int_param("limit", default=DEFAULT_LIST_LIMIT, minimum=1, maximum=MAX_LIST_LIMIT),
        offset=int_param("offset", default=0, minimum=0, maximum=10_000_000),
        since=time_param("since"),
        until=time_param("until"),
    )
    return jsonify([artifact.to_json() for artifact in services().store.artifacts(query)])


def _valid_sha_param(sha: str) -> bool:
    """:raise 400: for a `sha` that cannot be a commit sha."""
    if len(sha) > MAX_SHA_PARAM or "\x00" in sha:
        raise ApiError(400, f"query parameter 'sha' must be a commit sha, not {sha[:80]!r}")
    return bool(sha)
