"""`Idempotency-Key` on `POST /api/artifact`: a retried push is stored once.

A client that gets a 503 or a timeout cannot know whether its push was
stored (the database may have committed just before the connection broke).
With the same key, its retry answers the first push instead of storing a
second artifact that would be released again.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from flask.testing import FlaskClient

from api.enqueue import RELEASE_QUEUE
from gimletd.models import Role
from gimletd.settings import Settings
from gimletd.store import Store
from tests.api.test_artifacts import post, seed
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.support.processes import start_api


def keyed(key: str, headers: dict[str, str] = ADMIN) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def stored_artifacts(client: FlaskClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get("/api/artifacts", headers=ADMIN).json
    return listed


def test_a_repeated_push_answers_the_first_and_stores_nothing(
    client: FlaskClient, fixtures_dir: Path, redis_url: str
) -> None:
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    artifact = seed(fixtures_dir)
    first = post(client, artifact, keyed("ci-run-7"))
    again = post(client, artifact, keyed("ci-run-7"))
    assert first.status_code == 201, first.json
    assert again.status_code == 200, again.json
    assert again.json["duplicate"] is True
    assert (again.json["id"], again.json["eventId"]) == (first.json["id"], first.json["eventId"])
    assert [a["id"] for a in stored_artifacts(client)] == [first.json["id"]]
    assert queue.llen(RELEASE_QUEUE) == 1, "the repeat must not enqueue the event again"


def test_pushes_without_a_key_or_with_other_keys_are_separate(
    client: FlaskClient, fixtures_dir: Path
) -> None:
    artifact = seed(fixtures_dir)
    answers = [
        post(client, artifact),
        post(client, artifact),
        post(client, artifact, keyed("one")),
        post(client, artifact, keyed("two")),
    ]
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json["id"] for a in answers}) == 4
    assert len(stored_artifacts(client)) == 4


def test_the_key_counts_for_its_user_only(
    client: FlaskClient, fixtures_dir: Path, store: Store
) -> None:
    """Another user's key is never matched, so no one can read a push by guessing keys."""
    ci = {"Authorization": f"Bearer {store.create_user('ci', role=Role.CI)[1]}"}
    artifact = seed(fixtures_dir)
    mine = post(client, artifact, keyed("shared-key"))
    theirs = post(client, artifact, keyed("shared-key", ci))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json["id"] != theirs.json["id"]


def test_a_key_reused_for_another_artifact_is_422_and_stores_nothing(
    client: FlaskClient, fixtures_dir: Path
) -> None:
    artifact = seed(fixtures_dir)
    first = post(client, artifact, keyed("reused"))
    artifact["version"]["sha"] = "f" * 40
    reused = post(client, artifact, keyed("reused"))
    assert reused.status_code == 422
    assert "another artifact" in reused.json["message"]
    assert first.json["id"] in reused.json["message"]
    assert [a["id"] for a in stored_artifacts(client)] == [first.json["id"]]


def test_an_overlong_key_is_400(client: FlaskClient, fixtures_dir: Path) -> None:
    response = post(client, seed(fixtures_dir), keyed("k" * 201))
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json["message"]
    assert stored_artifacts(client) == []


def test_concurrent_pushes_with_one_key_store_one_artifact(
    settings: Settings, fixtures_dir: Path, tmp_path: Path
) -> None:
    """Retries that overlap (a client timing out while its first try still runs) race to
    store; the one that loses the race answers the winner's push, never 409 or 500."""
    api, url = start_api(settings, tmp_path, workers=4)
    body = json.dumps(seed(fixtures_dir))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    try:
        for round_ in range(10):
            keyed_headers = headers | {"Idempotency-Key": f"race-{round_}"}

            def push(_: int, keyed_headers: dict[str, str] = keyed_headers) -> httpx.Response:
                return httpx.post(f"{url}/api/artifact", content=body, headers=keyed_headers,
                                  timeout=30)  # fmt: skip

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(push, range(8)))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200] * 7 + [201], [a.text for a in answers]
            assert len({a.json()["id"] for a in answers}) == 1
        listed = httpx.get(f"{url}/api/artifacts", headers=headers, params={"limit": 100}).json()
        assert len(listed) == 10
    finally:
        api.stop()
