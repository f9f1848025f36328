"""Release operations through the API: validation, locks, holds, the queue, history and status.

No worker runs here: these tests check what the API accepts, refuses and
answers. The history is served from an index built from real repositories.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.enqueue import RELEASE_QUEUE
from gimletd.gitops.repository import GitopsRepository
from gimletd.history import sync_index
from gimletd.settings import Settings
from gimletd.store import Store
from tests.conftest import ADMIN
from tests.support import gitops


def seed(fixtures_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    return data


@pytest.fixture
def artifact_id(client: FlaskClient, fixtures_dir: Path) -> str:
    response = client.post("/api/artifact", json=seed(fixtures_dir), headers=ADMIN)
    assert response.status_code == 201
    return str(response.json["id"])


@pytest.fixture
def indexed(store: Store, settings: Settings, tmp_path: Path) -> GitopsRepository:
    """The GitOps remote with its release index built (empty until a test commits)."""
    repo = GitopsRepository(settings.resolved_gitops_repo, cache_dir=tmp_path / "c", clone_name="t")
    sync_index(store, repo, repo.fetch())
    return repo


@pytest.fixture
def user(store: Store) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.create_user('alice')[1]}"}


def release(client: FlaskClient, body: Any, headers: dict[str, str] = ADMIN) -> Any:
    return client.post("/api/releases", json=body, headers=headers)


def test_an_ad_hoc_release_is_stored_as_an_event_of_the_caller_and_enqueued(
    client: FlaskClient, artifact_id: str, redis_url: str
) -> None:
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    response = release(client, {"env": "staging", "artifactId": artifact_id})
    assert response.status_code == 201, response.json
    event = client.get(f"/api/event?id={response.json['id']}", headers=ADMIN).json
    assert (event["type"], event["triggeredBy"], event["status"]) == ("release", "admin", "new")
    assert event["artifactID"] == artifact_id
    message = json.loads(queue.lpop(RELEASE_QUEUE) or b"{}")
    assert message["headers"]["task"] == "gimletd.events.process"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"env": "staging", "artifactId": "nope"}, 404, "does not exist"),
        ({"env": "production-eu", "artifactId": "{id}"}, 422, "it has: preview/"),
        ({"env": "staging", "app": "backend", "artifactId": "{id}"}, 422, "staging/backend"),
        ({"env": "../../etc", "artifactId": "{id}"}, 422, "DNS-1123"),
        ({"env": "prod/x", "artifactId": "{id}"}, 422, "DNS-1123"),
        ({"env": "staging"}, 422, "artifactId"),
        ({"env": ["staging"], "artifactId": "{id}"}, 422, "env"),
        ({"env": "staging", "artifactId": "{id}", "force": "yes"}, 422, "force"),
    ],
)
def test_an_ad_hoc_release_that_cannot_be_done_is_refused_with_the_reason(
    client: FlaskClient, artifact_id: str, body: dict[str, Any], status: int, says: str
) -> None:
    body = {k: v.replace("{id}", artifact_id) if isinstance(v, str) else v for k, v in body.items()}
    response = release(client, body)
    assert response.status_code == status, response.json
    assert says in response.json["message"]


def test_a_release_body_that_is_not_json_is_a_400(client: FlaskClient) -> None:
    response = client.post("/api/releases", data=b"{nope", headers=ADMIN)
    assert response.status_code in (400, 422)
    assert client.post("/api/releases", data=b"", headers=ADMIN).status_code == 400


def test_an_unknown_env_names_the_envs_the_artifact_has(
    client: FlaskClient, artifact_id: str
) -> None:
    response = release(client, {"env": "qa", "artifactId": artifact_id})
    assert response.status_code == 422
    assert response.json["envs"] == ["preview", "staging"]


def test_a_locked_environment_refuses_ad_hoc_operations_unless_an_admin_forces(
    client: FlaskClient, artifact_id: str, user: dict[str, str], indexed: GitopsRepository
) -> None:
    locked = client.post("/api/locks", json={"env": "staging", "reason": "freeze"}, headers=user)
    assert locked.status_code == 201, locked.json
    assert locked.json["lockedBy"] == "alice"
    again = client.post("/api/locks", json={"env": "staging", "reason": "x"}, headers=ADMIN)
    assert again.status_code == 409 and "alice" in again.json["message"]

    refused = release(client, {"env": "staging", "artifactId": artifact_id}, user)
    assert refused.status_code == 423
    assert refused.json["message"] == "staging is locked by alice: freeze"
    forced_by_user = release(client, {"env": "staging", "artifactId": artifact_id, "force": True},
                             user)  # fmt: skip
    assert forced_by_user.status_code == 403
    forced = release(client, {"env": "staging", "artifactId": artifact_id, "force": True})
    assert forced.status_code == 201
    assert client.post("/api/delete?env=staging&app=x", headers=user).status_code in (404, 423)
    # Other environments are not affected.
    assert release(client, {"env": "preview", "artifactId": artifact_id}, user).status_code == 201

    envs = {e["name"]: e for e in client.get("/api/envs", headers=ADMIN).json}
    assert envs["staging"]["lock"]["reason"] == "freeze"
    unlocked = client.delete("/api/locks?env=staging", headers=user)
    assert unlocked.status_code == 200
    assert unlocked.json["unlocked"]["reason"] == "freeze"
    assert client.delete("/api/locks?env=staging", headers=user).status_code == 404
    assert client.get("/api/locks", headers=user).json == []


def test_the_queue_says_why_each_write_waits(
    client: FlaskClient, store: Store, artifact_id: str, indexed: GitopsRepository
) -> None:
    from gimletd.models import Release
    from gimletd.store import PlannedWrite

    client.post("/api/locks", json={"env": "staging", "reason": "freeze"}, headers=ADMIN)
    repo = indexed.url
    for app_name in ("web", "api"):
        _, event = store.create_artifact(
            store.artifact(artifact_id).model_copy(update={"id": ""}), triggered_by="ci"
        )
        planned = Release(app=app_name, env="staging", artifact_id=artifact_id,
                          triggered_by="policy")  # fmt: skip
        store.plan_event(
            event.id, writes=[PlannedWrite(repo, "staging", app_name, {}, planned)], failures=[]
        )
    waiting = client.get("/api/queue?env=staging", headers=ADMIN).json
    assert [w["app"] for w in waiting["writes"]] == ["web", "api"]
    assert all("waiting for the lock of staging" in w["reason"] for w in waiting["writes"])
    client.delete("/api/locks?env=staging", headers=ADMIN)
    ready = client.get("/api/queue?env=staging", headers=ADMIN).json
    assert [w["reason"] for w in ready["writes"]] == ["next", "behind 1 other"]
    assert client.get("/api/queue?env=../x", headers=ADMIN).status_code == 400


def test_rollback_and_delete_check_their_target_against_the_index(
    client: FlaskClient, indexed: GitopsRepository, gitops_remote: Path, store: Store
) -> None:
    gitops.fast_import_releases(gitops_remote, [("staging", "web", "w1"), ("staging", "web", "w2")])
    sync_index(store, indexed, indexed.fetch())
    [newest, oldest] = [c.sha for c in gitops.commits(gitops_remote)]

    ok = client.post(f"/api/rollback?env=staging&app=web&sha={oldest}", headers=ADMIN)
    assert ok.status_code == 201, ok.json
    assert client.get(f"/api/event?id={ok.json['id']}", headers=ADMIN).json["type"] == "rollback"
    # Queued as it is accepted, ahead of any deploy accepted after it (I3).
    queued = client.get("/api/queue?env=staging", headers=ADMIN).json["writes"]
    assert [(w["eventId"], w["kind"]) for w in queued] == [(ok.json["id"], "rollback")]
    wrong_app = client.post(f"/api/rollback?env=staging&app=api&sha={oldest}", headers=ADMIN)
    assert (
        wrong_app.status_code == 422 and "not a commit that released" in wrong_app.json["message"]
    )
    assert (
        client.post("/api/rollback?env=staging&app=web&sha=abc", headers=ADMIN).status_code == 400
    )
    assert (
        client.post(f"/api/rollback?env=..&app=web&sha={oldest}", headers=ADMIN).status_code == 400
    )
    deleted = client.post("/api/delete?env=staging&app=web", headers=ADMIN)
    assert deleted.status_code == 201
    queued = client.get("/api/queue?env=staging", headers=ADMIN).json["writes"]
    assert [w["kind"] for w in queued] == ["rollback", "delete"]
    missing = client.post("/api/delete?env=staging&app=api", headers=ADMIN)
    assert missing.status_code == 404
    assert newest != oldest


def test_history_and_status_wait_for_the_index_to_be_built(
    client: FlaskClient, redis_url: str
) -> None:
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    response = client.get("/api/releases?env=staging", headers=ADMIN)
    assert response.status_code == 503
    assert response.json["retryAfter"] == 5
    assert response.headers["Retry-After"] == "5"
    message = json.loads(queue.lpop(RELEASE_QUEUE) or b"{}")
    assert message["headers"]["task"] == "gimletd.index.sync"


@pytest.fixture
def five_thousand(
    settings: Settings, store: Store, indexed: GitopsRepository, gitops_remote: Path
) -> GitopsRepository:
    """5,000 releases over 50 apps in two environments, written as the Go original did."""
    releases = [
        ("production" if i % 2 else "staging", f"app-{i % 50}", f"artifact-{i}")
        for i in range(5000)
    ]
    gitops.fast_import_releases(gitops_remote, releases)
    sync_index(store, indexed, indexed.fetch())
    return indexed


def test_history_and_status_of_a_repository_with_5000_releases(
    client: FlaskClient, five_thousand: GitopsRepository
) -> None:
    def get(path: str) -> Any:
        response = client.get(path, headers=ADMIN)
        assert response.status_code == 200, response.json
        return response.json

    newest = get("/api/releases?env=production&app=app-7&limit=3")
    assert [r["artifactId"] for r in newest] == ["artifact-4957", "artifact-4907", "artifact-4857"]
    assert all(r["gitopsRepo"] and len(r["gitopsRef"]) == 40 for r in newest)
    assert newest[0]["version"]["repositoryName"] == "acme/app-7"
    assert not any(r["rolledBack"] for r in newest)
    page = get("/api/releases?env=production&app=app-7&limit=2&offset=1")
    assert [r["artifactId"] for r in page] == ["artifact-4907", "artifact-4857"]
    oldest = get("/api/releases?env=production&app=app-7&limit=1&reverse=true")
    assert oldest[0]["artifactId"] == "artifact-7"
    whole_env = get("/api/releases?env=staging&limit=1000")
    assert len(whole_env) == 1000 and whole_env[0]["artifactId"] == "artifact-4998"
    assert get("/api/releases?env=staging&app=app-8&git-repo=acme/app-9") == []
    assert len(get("/api/releases?env=staging&app=app-8&git-repo=acme/app-8&limit=500")) == 100
    # Commit times start at 1,700,000,000 and grow by one second per release.
    since = datetime.fromtimestamp(1_700_000_000 + 4990, tz=UTC).isoformat()
    recent = get(f"/api/releases?env=production&since={since.replace('+00:00', 'Z')}&limit=100")
    assert [r["artifactId"] for r in recent] == [f"artifact-{i}" for i in (4999, 4997, 4995, 4993,
                                                                           4991)]  # fmt: skip

    status = get("/api/status?env=production")
    assert len(status) == 25
    assert status["app-7"]["artifactId"] == "artifact-4957"
    assert get("/api/status?env=production&app=app-7") == {"app-7": status["app-7"]}
    envs = {e["name"]: sorted(e["apps"]) for e in get("/api/envs")}
    assert len(envs["staging"]) == 25 and len(envs["production"]) == 25


def test_holds_are_listed_and_lifted_by_env_and_app(
    client: FlaskClient, store: Store, indexed: GitopsRepository, redis_url: str
) -> None:
    from gimletd.models import Hold

    assert client.delete("/api/holds?env=staging&app=web", headers=ADMIN).status_code == 404
    hold = Hold(env="staging", app="web", reason="rolled back", placed_by="bob", created=1)
    store.place_hold(indexed.url, hold)
    assert client.get("/api/holds?env=staging", headers=ADMIN).json[0]["placedBy"] == "bob"
    queue = redis.Redis.from_url(redis_url)
    queue.delete(RELEASE_QUEUE)
    lifted = client.delete("/api/holds?env=staging&app=web", headers=ADMIN)
    assert lifted.status_code == 200 and lifted.json["liftedBy"] == "admin"
    assert store.hold(indexed.url, "staging", "web") is None
    message = json.loads(queue.lpop(RELEASE_QUEUE) or b"{}")
    assert message["headers"]["task"] == "gimletd.gitops.drain"


@pytest.fixture
def mapped(tmp_path: Path, settings: Settings) -> Iterator[Flask]:
    configured = settings.model_copy(
        update={
            "gitops_repo": "https://user:secret-token@git.example.com/acme/gitops.git",
            "gitops_repos": "production=https://git.example.com/acme/prod.git",
        }
    )
    app = create_app(configured)
    yield app
    app.extensions["gimletd"].close()


def test_the_gitops_repositories_are_shown_without_credentials(mapped: Flask) -> None:
    body = mapped.test_client().get("/api/gitopsRepo", headers=ADMIN).json
    assert body == {
        "gitopsRepo": "https://git.example.com/acme/gitops.git",
        "gitopsRepos": {"production": "https://git.example.com/acme/prod.git"},
    }
