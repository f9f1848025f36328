"""`POST /api/webhooks/github` and the generic reports, with GitHub's real payloads.

Nothing here runs a worker: these tests are about what is accepted, refused and
stored. `tests/workers/test_cleanup_flow.py` follows the events to the GitOps repo.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import text
from werkzeug.test import TestResponse

from api import create_app
from gimletd.settings import Settings
from tests.conftest import ADMIN

SECRET = "It's a Secret to Everybody"


@pytest.fixture
def hooks(settings: Settings) -> Iterator[FlaskClient]:
    """The API with a webhook secret set."""
    app = create_app(settings.model_copy(update={"github_webhook_secret": SecretStr(SECRET)}))
    yield app.test_client()
    app.extensions["gimletd"].close()


def github_payload(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / "payloads" / "github" / name).read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    client: FlaskClient,
    event: str,
    body: bytes,
    *,
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    signature: str | None = None,
    content_type: str = "application/json",
) -> TestResponse:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body) if signature is None else signature,
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    return client.post(
        "/api/webhooks/github", data=body, headers=headers, content_type=content_type
    )


def stored_events(settings: Settings) -> list[dict[str, Any]]:
    from gimletd.store import Store

    store = Store(settings.resolved_database_url)
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT type, repository, branch FROM events")).all()
    store.close()
    return [dict(type=r[0], repository=r[1], branch=r[2]) for r in rows]


def test_a_signed_branch_delete_is_stored_as_a_branch_deleted_event(
    hooks: FlaskClient, fixtures_dir: Path, settings: Settings
) -> None:
    response = deliver(hooks, "delete", github_payload(fixtures_dir, "delete-branch.json"))
    assert response.status_code == 202, response.json
    event = response.json
    assert (event["type"], event["repository"], event["branch"], event["triggeredBy"]) == (
        "branchDeleted", "Codertocat/Hello-World", "changes", "github:Codertocat",
    )  # fmt: skip
    assert hooks.get(f"/api/event?id={event['id']}", headers=ADMIN).json["status"] == "new"


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        sign(b"another body"),
        "sha256=" + "0" * 64,
        "sha1=0a4d55a8d778e5022fab701977c5d840bbc486d0",
    ],
)
def test_forged_deliveries_are_refused_and_store_nothing(
    hooks: FlaskClient, fixtures_dir: Path, settings: Settings, signature: str | None
) -> None:
    body = github_payload(fixtures_dir, "delete-branch.json")
    headers = {"X-GitHub-Event": "delete", "X-GitHub-Delivery": "d-forged"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response = hooks.post(
        "/api/webhooks/github", data=body, headers=headers, content_type="application/json"
    )
    assert response.status_code == 401
    assert "missing or wrong" in response.json["message"]
    wrong_secret = deliver(hooks, "delete", body, signature=sign(body, "guessed"))
    assert wrong_secret.status_code == 401
    assert stored_events(settings) == []


@pytest.mark.parametrize("secret", [None, ""])
def test_without_a_secret_no_delivery_is_accepted(
    settings: Settings, fixtures_dir: Path, secret: str | None
) -> None:
    """Also an empty one: anyone could sign with the empty key."""
    configured = settings.model_copy(
        update={"github_webhook_secret": None if secret is None else SecretStr(secret)}
    )
    app = create_app(configured)
    body = github_payload(fixtures_dir, "delete-branch.json")
    response = deliver(app.test_client(), "delete", body, signature=sign(body, ""))
    app.extensions["gimletd"].close()
    assert response.status_code == 401
    assert "GITHUB_WEBHOOK_SECRET" in response.json["message"]
    assert stored_events(settings) == []


def test_a_redelivery_is_processed_once(
    hooks: FlaskClient, fixtures_dir: Path, settings: Settings
) -> None:
    body = github_payload(fixtures_dir, "pull_request-closed.json")
    first = deliver(hooks, "pull_request", body, delivery="d-1")
    again = deliver(hooks, "pull_request", body, delivery="d-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["duplicate"] is True
    assert again.json["id"] == first.json["id"]
    assert len(stored_events(settings)) == 1


def test_a_second_report_of_one_branch_deletion_creates_nothing(
    hooks: FlaskClient, fixtures_dir: Path, settings: Settings
) -> None:
    body = github_payload(fixtures_dir, "delete-branch.json")
    first = deliver(hooks, "delete", body, delivery="d-1")
    other_delivery = deliver(hooks, "delete", body, delivery="d-2")
    by_api = hooks.post(
        "/api/events/branch-deleted",
        json={"repository": "Codertocat/Hello-World", "branch": "changes"},
        headers=ADMIN,
    )
    assert [r.status_code for r in (first, other_delivery, by_api)] == [202, 200, 200]
    assert other_delivery.json["id"] == by_api.json["id"] == first.json["id"]
    assert stored_events(settings) == [
        {"type": "branchDeleted", "repository": "Codertocat/Hello-World", "branch": "changes"}
    ]


def test_closed_pull_requests_are_recorded_merged_or_not(
    hooks: FlaskClient, fixtures_dir: Path
) -> None:
    for name in ("pull_request-closed.json", "pull_request-closed-merged.json"):
        body = github_payload(fixtures_dir, name)
        response = deliver(hooks, "pull_request", body, delivery=f"d-{name}")
        assert response.status_code == 202
        assert (response.json["type"], response.json["branch"]) == ("prClosed", "changes")


@pytest.mark.parametrize(
    ("event", "name", "why"),
    [
        ("push", "push-ref-deleted.json", "its delete event is the one acted on"),
        ("delete", "delete-tag.json", "a deleted tag has no preview apps"),
        ("push", "push.json", "pushes are not acted on"),
    ],
)
def test_deliveries_not_acted_on_are_answered_and_not_stored(
    hooks: FlaskClient, fixtures_dir: Path, settings: Settings, event: str, name: str, why: str
) -> None:
    response = deliver(hooks, event, github_payload(fixtures_dir, name))
    assert response.status_code == 200
    assert why in response.json["ignored"]
    assert stored_events(settings) == []


def test_ping_is_answered(hooks: FlaskClient) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    response = deliver(hooks, "ping", body)
    assert (response.status_code, response.json) == (200, {"message": "pong"})


def test_a_form_encoded_delivery_is_read_from_its_payload_field(
    hooks: FlaskClient, fixtures_dir: Path
) -> None:
    body = urlencode({"payload": github_payload(fixtures_dir, "delete-branch.json")}).encode()
    response = deliver(hooks, "delete", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202, response.json
    assert response.json["branch"] == "changes"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"ref": "x", "ref_type": "branch"}', 422, "repository"),
        (json.dumps({"ref": "../../etc\x00", "ref_type": "branch",
                     "repository": {"full_name": "a/b"}}).encode(), 422, "ref"),
    ],
)  # fmt: skip
def test_signed_but_malformed_deliveries_are_refused(
    hooks: FlaskClient, settings: Settings, body: bytes, status: int, fragment: str
) -> None:
    response = deliver(hooks, "delete", body)
    assert response.status_code == status
    assert fragment in response.json["message"]
    assert stored_events(settings) == []


def test_a_huge_delivery_is_refused(settings: Settings) -> None:
    app = create_app(
        settings.model_copy(
            update={"github_webhook_secret": SecretStr(SECRET), "max_body_bytes": 1024}
        )
    )
    response = deliver(app.test_client(), "delete", b"{" + b" " * 4096 + b"}")
    app.extensions["gimletd"].close()
    assert response.status_code == 413


def test_other_scms_report_with_a_token(client: FlaskClient, settings: Settings) -> None:
    body = {"repository": "group/frontend", "branch": "feature/x"}
    assert client.post("/api/events/branch-deleted", json=body).status_code == 401
    created = client.post("/api/events/branch-deleted", json=body, headers=ADMIN)
    assert created.status_code == 202
    assert (created.json["type"], created.json["triggeredBy"]) == ("branchDeleted", "admin")
    closed = {"repository": "group/frontend", "branch": "fix", "number": 7, "merged": False}
    keyed = {**ADMIN, "Idempotency-Key": "pipeline-42"}
    first = client.post("/api/events/pr-closed", json=closed, headers=keyed)
    retried = client.post("/api/events/pr-closed", json=closed, headers=keyed)
    assert (first.status_code, retried.status_code) == (202, 200)
    assert retried.json["id"] == first.json["id"]
    other_branch = client.post("/api/events/pr-closed", json={**closed, "branch": "fix-2"},
                               headers=keyed)  # fmt: skip
    assert other_branch.status_code == 202, "the same key with another report is another report"
    assert len(stored_events(settings)) == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"[]", 422),
        (b'{"repository": "a/b"}', 422),
        (b'{"repository": "", "branch": "x"}', 422),
        (b'{"repository": "a/b", "branch": 7}', 422),
    ],
)
def test_malformed_reports_are_refused(
    client: FlaskClient, settings: Settings, body: bytes, status: int
) -> None:
    response = client.post(
        "/api/events/branch-deleted", data=body, headers=ADMIN, content_type="application/json"
    )
    assert response.status_code == status, response.json
    assert response.json["message"]
    assert stored_events(settings) == []


def test_repositories_with_cleanup_policies_are_listed_for_polling(
    settings: Settings, fixtures_dir: Path
) -> None:
    configured = settings.model_copy(
        update={"app_repos": "mycompany/frontend=https://bot:s3cret@git.example.com/fe.git"}
    )
    app = create_app(configured)
    client = app.test_client()
    artifact = fixtures_dir / "seed-artifact-restored.json"
    client.post("/api/artifact", data=artifact.read_bytes(), headers=ADMIN,
                content_type="application/json")  # fmt: skip
    repos = client.get("/api/appRepos", headers=ADMIN).json
    app.extensions["gimletd"].close()
    assert repos == [
        {
            "repository": "mycompany/frontend",
            "url": "https://git.example.com/fe.git",
            "polledAt": None,
            "pollError": "",
        }
    ]


def test_an_absurd_delivery_id_is_refused(
    hooks: FlaskClient, fixtures_dir: Path, settings: Settings
) -> None:
    body = github_payload(fixtures_dir, "delete-branch.json")
    response = deliver(hooks, "delete", body, delivery="d" * 201)
    assert response.status_code == 400
    assert "X-GitHub-Delivery" in response.json["message"]
    assert stored_events(settings) == []
