"""`POST /api/flux-events?env=`: Flux's notification-controller reports on applying GitOps commits.

Point a Flux `Provider` of type `generic-hmac` (or `generic`) at it. With
FLUX_WEBHOOK_SECRET set, every event must carry a valid `X-Signature`
(`sha256=<hex HMAC of the raw body>`; sha224, sha384 and sha512 too) and no
token is needed. Without it, a user token is needed: `Authorization: Bearer`,
or `?access_token=` in the Provider's address as the Go original's setup had it.

The event is stored and queued, and answered 202 at once; an identical
redelivery (Flux retries on 5xx and timeouts) answers 200 with the first.
"""

from __future__ import annotations

import hashlib
import time

from flask import Blueprint, Response, jsonify, request

from api.auth import authenticate, authenticate_token, current_user
from api.errors import ApiError
from api.query import json_body, label_param
from api.services import services
from gimletd.errors import Conflict, InputError
from gimletd.flux import read_flux_event
from gimletd.models import EventType
from gimletd.webhooks import Ignored, signature_matches

blueprint = Blueprint("flux", __name__, url_prefix="/api")

#: The hashes Flux's own verifier accepts in `X-Signature`.
SIGNATURE_ALGORITHMS = frozenset({"sha224", "sha256", "sha384", "sha512"})


@blueprint.post("/flux-events")
def flux_event() -> tuple[Response, int]:
    """Store a Flux event about environment `env` and queue the recording of its status.

    :raise 401: a missing or wrong signature (FLUX_WEBHOOK_SECRET set) or token (unset).
    """
    env = label_param("env")
    body = json_body()
    reporter = _authenticate(body)
    try:
        report = read_flux_event(body, env, now=time.time())
    except InputError as exc:
        raise ApiError(400, str(exc)) from None
    if isinstance(report, Ignored):
        return jsonify({"ignored": report.reason}), 200
    store = services().store
    key = "flux:" + hashlib.sha256(env.encode() + b"\x00" + body).hexdigest()
    try:
        event = store.create_event(
            EventType.FLUX, request=report.to_json(), triggered_by=reporter, dedupe_key=key
        )
    except Conflict:
        first = store.event_with_key(key)
        if first is None:  # it was there a moment ago: only a deleted database says otherwise
            raise
        return jsonify({**first.to_json(), "duplicate": True}), 200
    services().enqueuer.process_event(event.id)
    return jsonify(event.to_json()), 202


def _authenticate(body: bytes) -> str:
    """Who reports: `flux` for a signed event, else the token's user."""
    secret = services().settings.flux_webhook_secret
    if secret is not None:
        signature = request.headers.get("X-Signature")
        if not signature_matches(
            secret.get_secret_value().encode(), body, signature, algorithms=SIGNATURE_ALGORITHMS
        ):
            raise ApiError(
                401, "X-Signature is missing or wrong: the event is not signed with "
                "FLUX_WEBHOOK_SECRET",
            )  # fmt: skip
        return "flux"
    token = request.args.get("access_token", "")
    if token and not request.headers.get("Authorization"):
        authenticate_token(token)
    else:
        authenticate()
    return current_user().login
