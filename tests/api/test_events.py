"""`GET /api/event`, `GET /api/eventArtifactTrack`, health and readiness."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from flask.testing import FlaskClient

from api import create_app
from gimletd.settings import Settings
from tests.conftest import ADMIN


def test_an_event_is_found_by_id_and_by_artifact(client: FlaskClient, fixtures_dir: Path) -> None:
    body = (fixtures_dir / "seed-artifact-restored.json").read_bytes()
    created = client.post(
        "/api/artifact", data=body, headers=ADMIN, content_type="application/json"
    ).json
    by_id = client.get(f"/api/event?id={created['eventId']}", headers=ADMIN)
    by_artifact = client.get(f"/api/eventArtifactTrack?id={created['id']}", headers=ADMIN)
    assert by_id.status_code == by_artifact.status_code == 200
    assert by_id.json == by_artifact.json
    assert by_id.json["status"] == "new"
    assert by_id.json["gitopsHashes"] == []


def test_unknown_and_missing_ids(client: FlaskClient) -> None:
    assert client.get("/api/event?id=nope", headers=ADMIN).status_code == 404
    assert client.get("/api/eventArtifactTrack?id=nope", headers=ADMIN).status_code == 404
    missing = client.get("/api/event", headers=ADMIN)
    assert missing.status_code == 400
    assert "'id' is required" in missing.json["message"]


def test_unknown_routes_and_methods_answer_json(client: FlaskClient) -> None:
    assert client.get("/api/nothing", headers=ADMIN).json["message"]
    response = client.delete("/api/artifacts", headers=ADMIN)
    assert response.status_code == 405
    assert json.loads(response.data)["message"]


def test_root_and_health_need_no_token(client: FlaskClient) -> None:
    assert client.get("/").json["name"] == "gimletd"
    assert client.get("/health").json == {"status": "ok"}


def test_ready_when_database_and_redis_answer(client: FlaskClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json == {"ready": True, "database": "ok", "redis": "ok"}


def test_not_ready_without_redis(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"}))
    response = app.test_client().get("/ready")
    assert response.status_code == 503
    assert response.json["database"] == "ok"
    assert "unavailable" in response.json["redis"]
