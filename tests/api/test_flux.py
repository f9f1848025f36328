"""`POST /api/flux-events`: Flux's events accepted, signed or with a token, and refused.

No worker runs here; `tests/workers/test_notify_flow.py` follows the events to
the statuses and the notifications.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from api import create_app
from gimletd.settings import Settings
from tests.conftest import ADMIN, ADMIN_TOKEN


@pytest.fixture
def vector(fixtures_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (fixtures_dir / "payloads" / "flux" / "generic-hmac-test-vector.json").read_text()
    )
    return data


@pytest.fixture
def signed(settings: Settings, vector: dict[str, Any]) -> Iterator[FlaskClient]:
    """The API with FLUX_WEBHOOK_SECRET set to the test vector's key."""
    secret = SecretStr(vector["token"])
    app = create_app(settings.model_copy(update={"flux_webhook_secret": secret}))
    yield app.test_client()
    app.extensions["gimletd"].close()


def flux_headers(vector: dict[str, Any], signature: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": vector["Content-Type"],
        "Gotk-Component": vector["Gotk-Component"],
        "X-Signature": vector["X-Signature"] if signature is None else signature,
    }


def test_a_signed_event_is_stored_once_and_queued(
    signed: FlaskClient, vector: dict[str, Any]
) -> None:
    body = vector["body"].encode()
    first = signed.post("/api/flux-events?env=production", data=body, headers=flux_headers(vector))
    assert first.status_code == 202, first.json
    assert first.json["type"] == "fluxEvent" and first.json["status"] == "new"
    assert first.json["triggeredBy"] == "flux"
    # Flux retries a delivery it thinks failed: the same bytes are the same event.
    again = signed.post("/api/flux-events?env=production", data=body, headers=flux_headers(vector))
    assert again.status_code == 200
    assert (again.json["id"], again.json["duplicate"]) == (first.json["id"], True)
    stored = signed.get(f"/api/event?id={first.json['id']}", headers=ADMIN)
    assert stored.json["status"] == "new"


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "sha256=" + "0" * 64,
        "md5=abc",
        "sha256",
        "sha512=" + hmac.new(b"another key", b"x", hashlib.sha512).hexdigest(),
    ],
)
def test_a_forged_or_missing_signature_is_refused(
    signed: FlaskClient, vector: dict[str, Any], signature: str
) -> None:
    response = signed.post(
        "/api/flux-events?env=production",
        data=vector["body"].encode(),
        headers=flux_headers(vector, signature),
    )
    assert response.status_code == 401
    assert "X-Signature" in response.json["message"]


def test_a_token_does_not_replace_the_signature_once_a_secret_is_set(
    signed: FlaskClient, vector: dict[str, Any]
) -> None:
    response = signed.post(
        "/api/flux-events?env=production",
        data=vector["body"].encode(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 401


def test_other_hashes_flux_may_use_are_accepted(
    signed: FlaskClient, vector: dict[str, Any]
) -> None:
    body = vector["body"].encode()
    signature = "sha512=" + hmac.new(vector["token"].encode(), body, hashlib.sha512).hexdigest()
    response = signed.post(
        "/api/flux-events?env=staging", data=body, headers=flux_headers(vector, signature)
    )
    assert response.status_code == 202


def test_without_a_secret_a_token_is_needed_in_the_header_or_the_address(
    client: FlaskClient, fixtures_dir: Path
) -> None:
    body = (fixtures_dir / "payloads" / "flux" / "kustomization-failed.json").read_bytes()
    json_type = {"Content-Type": "application/json"}
    assert client.post("/api/flux-events?env=prod", data=body, headers=json_type).status_code == 401
    wrong = client.post("/api/flux-events?env=prod&access_token=nope", data=body, headers=json_type)
    assert wrong.status_code == 401
    # The Go original's Flux provider address carried the token as `access_token`.
    address = f"/api/flux-events?env=prod&access_token={ADMIN_TOKEN}"
    response = client.post(address, data=body, headers=json_type)
    assert response.status_code == 202
    assert response.json["triggeredBy"] == "admin"
    header = client.post("/api/flux-events?env=prod", data=body, headers={**ADMIN, **json_type})
    assert header.status_code == 200 and header.json["duplicate"] is True


@pytest.mark.parametrize(
    ("query", "body", "status", "message"),
    [
        ("", b"{}", 400, "'env' is required"),
        ("?env=../../etc", b"{}", 400, "not a DNS-1123 label"),
        ("?env=prod%2Fx", b"{}", 400, "not a DNS-1123 label"),
        ("?env=prod", b"", 400, "empty"),
        ("?env=prod", b"{not json", 400, "not a Flux event"),
        ("?env=prod", b'{"metadata": "x"}', 400, "not a Flux event"),
    ],
)
def test_bad_requests_are_refused_and_store_nothing(
    client: FlaskClient, query: str, body: bytes, status: int, message: str
) -> None:
    response = client.post(f"/api/flux-events{query}", data=body, headers=ADMIN)
    assert response.status_code == status
    assert message in response.json["message"]


def test_an_event_about_no_git_commit_is_answered_and_ignored(client: FlaskClient) -> None:
    body = {"severity": "info", "reason": "InstallSucceeded", "metadata": {"revision": "6.3.1"}}
    response = client.post("/api/flux-events?env=prod", json=body, headers=ADMIN)
    assert response.status_code == 200
    assert "not a git commit" in response.json["ignored"]
