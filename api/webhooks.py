"""`POST /api/webhooks/github`: GitHub reports deleted branches and closed pull requests.

Authenticated by the delivery's signature, not a token: the HMAC of the raw
body is checked before anything is parsed, and a delivery that fails the check
stores nothing. The work is queued, so GitHub gets its answer well within its
10 seconds; `X-GitHub-Delivery` makes a redelivery a no-op.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, Response, jsonify, request

from api.cleanup import accept_cleanup_report
from api.errors import ApiError
from api.query import MAX_DEDUPE_KEY
from api.services import services
from gimletd.webhooks import Ignored, github_cleanup_report, signature_matches

blueprint = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")

FORM = "application/x-www-form-urlencoded"


@blueprint.post("/github")
def github() -> tuple[Response, int]:
    """Act on `delete` (branch) and `pull_request` (closed) deliveries; answer `ping`.

    :raise 401: when GITHUB_WEBHOOK_SECRET is unset or the signature does not match.
    """
    secret = services().settings.github_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise ApiError(401, "GitHub webhooks are refused: GITHUB_WEBHOOK_SECRET is not set")
    body = request.get_data(cache=False)
    signature = request.headers.get("X-Hub-Signature-256")
    if not signature_matches(secret.get_secret_value().encode(), body, signature):
        raise ApiError(
            401,
            "X-Hub-Signature-256 is missing or wrong: the delivery is not signed with "
            "GITHUB_WEBHOOK_SECRET",
        )
    event_name = request.headers.get("X-GitHub-Event", "")
    if event_name == "ping":
        return jsonify({"message": "pong"}), 200
    delivery = request.headers.get("X-GitHub-Delivery", "").strip()
    if len(delivery) > MAX_DEDUPE_KEY:
        raise ApiError(400, f"X-GitHub-Delivery is longer than {MAX_DEDUPE_KEY} characters")
    report = github_cleanup_report(event_name, _payload(body), delivery=delivery)
    if isinstance(report, Ignored):
        return jsonify({"ignored": report.reason}), 200
    return accept_cleanup_report(report, dedupe_key=f"github:{delivery}" if delivery else None)


def _payload(body: bytes) -> Any:
    """The delivery's JSON, from the body or, for a form-encoded hook, its `payload` field."""
    text = body
    if request.mimetype == FORM:
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise ApiError(400, "the form-encoded delivery has no 'payload' field")
        text = fields["payload"][0].encode()
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the delivery is not valid JSON: {type(exc).__name__}") from None
