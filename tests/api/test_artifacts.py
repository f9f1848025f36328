"""`POST /api/artifact` and `GET /api/artifacts`: what CI integrations rely on."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from api.enqueue import RELEASE_QUEUE, Enqueuer
from gimletd.models import EventStatus
from gimletd.settings import Settings
from tests.conftest import ADMIN

ARTIFACT_ID = re.compile(r"^mycompany/frontend-[0-9a-f-]{36}$")


def seed(fixtures_dir: Path, name: str = "seed-artifact-restored.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures_dir / name).read_text())
    return data


def post(client: FlaskClient, body: Any, headers: dict[str, str] = ADMIN) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/artifact", data=data, headers=headers, content_type="application/json")


@pytest.mark.parametrize("name", ["seed-artifact.json", "seed-artifact-restored.json"])
def test_both_seed_artifacts_are_accepted(
    client: FlaskClient, fixtures_dir: Path, name: str
) -> None:
    """The brief's artifact, empty and duplicated fields included, is stored as sent."""
    response = post(client, seed(fixtures_dir, name))
    assert response.status_code == 201, response.json
    body = response.json
    assert ARTIFACT_ID.match(body["id"])
    assert isinstance(body["created"], int)
    assert body["version"]["sha"] == "deae5dbaf237766240181fa397e923d3c5253112"
    event = client.get(f"/api/event?id={body['eventId']}", headers=ADMIN).json
    assert event["status"] == EventStatus.NEW.value
    assert event["artifactID"] == body["id"]


def test_an_accepted_artifact_starts_its_release_trail_in_the_log(
    client: FlaskClient, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The API's line carries the event id that the workers' lines about the release carry."""
    with caplog.at_level(logging.INFO, logger="api.artifacts"):
        body = post(client, seed(fixtures_dir)).json
    [line] = [r for r in caplog.records if getattr(r, "event_id", None) == body["eventId"]]
    assert body["id"] in line.getMessage()


def test_an_accepted_artifact_is_enqueued_by_task_name(
    client: FlaskClient, fixtures_dir: Path, redis_url: str
) -> None:
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    event_id = post(client, seed(fixtures_dir)).json["eventId"]
    message = json.loads(queue.lpop(RELEASE_QUEUE) or b"{}")
    assert message["headers"]["task"] == "gimletd.events.process"
    assert event_id in message["headers"]["argsrepr"]


def test_events_stored_together_are_enqueued_as_one_message(redis_url: str) -> None:
    """A batch of the intake costs the API one broker message; a worker fans it out."""
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    assert Enqueuer(redis_url).process_events(["event-1", "event-2", "event-3"])
    messages = [json.loads(m) for m in queue.lrange(RELEASE_QUEUE, 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["gimletd.events.dispatch"]
    args, _, _ = json.loads(base64.b64decode(messages[0]["body"]))
    assert args == [["event-1", "event-2", "event-3"]]


def test_a_drain_message_shows_its_repository_without_credentials(redis_url: str) -> None:
    """Worker logs print a task's argsrepr; the task itself still gets the URL it needs."""
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    url = "https://deployer:s3cret@git.example.com/org/gitops.git"
    assert Enqueuer(redis_url).drain(url, "staging")
    [message] = [json.loads(m) for m in queue.lrange(RELEASE_QUEUE, 0, -1)]
    assert message["headers"]["argsrepr"] == (
        "['https://git.example.com/org/gitops.git', 'staging']"
    )
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [url, "staging"]


def test_the_artifact_is_accepted_while_redis_is_down(
    settings: Settings, fixtures_dir: Path
) -> None:
    """I1: the event is stored and the answer is 201; the sweep enqueues it later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port}/0"})
    app = create_app(down)
    response = post(app.test_client(), seed(fixtures_dir))
    assert response.status_code == 201
    stored = app.extensions["gimletd"].store.event(response.json["eventId"])
    assert stored.status is EventStatus.NEW


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "authentication required"),
        ({"Authorization": "Bearer nope"}, "not valid"),
        ({"Authorization": "Basic dGVzdA=="}, "authentication required"),
        ({"Authorization": "Bearer "}, "authentication required"),
    ],
)
def test_unauthenticated_requests_get_401_json(
    client: FlaskClient, fixtures_dir: Path, headers: dict[str, str], message: str
) -> None:
    response = post(client, seed(fixtures_dir), headers)
    assert response.status_code == 401
    assert message in response.json["message"]
    assert client.get("/api/artifacts", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"env": "../etc"}, "env"),
        ({"env": "prod/x"}, "env"),
        ({"app": ""}, "app"),
        ({"app": "a/b"}, "app"),
        ({"app": "Frontend"}, "app"),
        ({"namespace": "../kube-system"}, "namespace"),
        ({"values": "not-a-map"}, "values"),
    ],
)
def test_invalid_environment_configs_are_422_naming_the_field(
    client: FlaskClient, fixtures_dir: Path, change: dict[str, Any], field: str
) -> None:
    artifact = seed(fixtures_dir)
    artifact["environments"][0].update(change)
    response = post(client, artifact)
    assert response.status_code == 422
    assert field in response.json["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"", 400), (b"{not json", 400), (b"[]", 422), (b'"x"', 422), (b"{}", 422)],
)
def test_malformed_bodies_are_4xx_json(client: FlaskClient, body: bytes, status: int) -> None:
    response = post(client, body)
    assert response.status_code == status
    assert response.json["message"]


def test_wrong_types_are_422(client: FlaskClient, fixtures_dir: Path) -> None:
    artifact = seed(fixtures_dir)
    artifact["context"] = {"CI": 1}
    assert post(client, artifact).status_code == 422
    artifact = seed(fixtures_dir)
    artifact["version"]["event"] = "merge"
    response = post(client, artifact)
    assert response.status_code == 422
    assert "version.event" in response.json["message"]


def test_two_environment_configs_for_one_env_and_app_are_accepted(
    client: FlaskClient, fixtures_dir: Path
) -> None:
    """As in the original: say one for pushes to main and one for tags; only one can match."""
    artifact = seed(fixtures_dir)
    tagged = dict(artifact["environments"][0], deploy={"tag": "v*", "event": "tag"})
    artifact["environments"].append(tagged)
    assert post(client, artifact).status_code == 201


def test_a_malformed_policy_is_422(client: FlaskClient, fixtures_dir: Path) -> None:
    artifact = seed(fixtures_dir)
    artifact["environments"][0]["deploy"] = {"branch": "[main", "event": "push"}
    response = post(client, artifact)
    assert response.status_code == 422
    assert "environments[0]" in response.json["message"]


def test_nothing_is_stored_for_a_rejected_artifact(client: FlaskClient, fixtures_dir: Path) -> None:
    artifact = seed(fixtures_dir)
    artifact["environments"][0]["env"] = "../etc"
    post(client, artifact)
    assert client.get("/api/artifacts", headers=ADMIN).json == []


def test_bodies_over_the_limit_get_413(settings: Settings, fixtures_dir: Path) -> None:
    app = create_app(settings.model_copy(update={"max_body_bytes": 1024}))
    artifact = seed(fixtures_dir)
    artifact["context"]["BIG"] = "x" * 2048
    response = post(app.test_client(), artifact)
    assert response.status_code == 413
    assert "1024 bytes" in response.json["message"]


def test_artifacts_are_listed_with_the_originals_filters(
    client: FlaskClient, fixtures_dir: Path
) -> None:
    main = seed(fixtures_dir)
    main["version"].update(branch="main", event="push", sha="1" * 40)
    pr = seed(fixtures_dir)
    pr["version"].update(branch="feature/x", event="pr", sha="2" * 40)
    main_id, pr_id = (post(client, a).json["id"] for a in (main, pr))

    def ids(query: str) -> set[str]:
        response = client.get(f"/api/artifacts?{query}", headers=ADMIN)
        assert response.status_code == 200, response.json
        return {a["id"] for a in response.json}

    assert ids("") == {main_id, pr_id}
    assert ids("branch=main") == {main_id}
    assert ids("event=pr") == {pr_id}
    assert ids(f"sha={'1' * 40}&sha={'2' * 40}") == {main_id, pr_id}
    assert ids("repository=mycompany/frontend") == {main_id, pr_id}
    assert ids("app=mycompany/frontend") == {main_id, pr_id}, "the original's parameter name"
    assert ids("repository=other/repo") == set()
    newest_first = client.get("/api/artifacts", headers=ADMIN).json
    assert [a["id"] for a in newest_first] == [pr_id, main_id]
    assert len(ids("limit=1")) == 1
    assert ids("since=2999-01-01T00:00:00Z") == set()
    assert ids("until=2999-01-01T00:00:00%2B02:00") == {main_id, pr_id}
    assert ids("until=2999-01-01T00:00:00+02:00") == {main_id, pr_id}, "unencoded '+'"


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=0", "limit=100000", "offset=-1", "since=yesterday",
     "since=2021-01-01", "until=2021-01-01T00:00:00", "event=merge", "branch=a%00b",
     f"sha={'a' * 200}"],
)  # fmt: skip
def test_bad_list_parameters_are_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/artifacts?{query}", headers=ADMIN)
    assert response.status_code == 400
    assert response.json["message"]
