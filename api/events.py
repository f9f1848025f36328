"""`/api/event` and `/api/eventArtifactTrack`: what became of an accepted event."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.auth import authenticate
from api.query import required_param
from api.services import services

blueprint = Blueprint("events", __name__, url_prefix="/api")
blueprint.before_request(authenticate)


@blueprint.get("/event")
def get_event() -> Response:
    """An event's status, statusDesc, gitopsHashes and per-environment results."""
    return jsonify(services().store.event(required_param("id")).to_json())


@blueprint.get("/eventArtifactTrack")
def track_artifact() -> Response:
    """The newest event releasing the artifact `id`, as the original's CLI tracks it."""
    return jsonify(services().store.event_for_artifact(required_param("id")).to_json())
