"""Attacks on the API: each is refused with a 4xx JSON message and leaves nothing behind.

Nothing behind means: no artifact, no event, no audit entry, and no message
on the queue (the test Redis's `celery` list keeps its length).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from pydantic import SecretStr

from api import create_app
from api.enqueue import RELEASE_QUEUE
from gimletd.settings import Settings
from gimletd.store import ArtifactFilter, Store
from tests.conftest import ADMIN

#: Nine levels of nine aliases: a billion "lol"s once expanded.
YAML_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture
def seed(fixtures_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    return data


@pytest.fixture
def nothing_left(store: Store, settings: Settings) -> Callable[[], None]:
    """Checks that what was stored and queued before the test is all there is."""
    queue = redis.Redis.from_url(settings.resolved_redis_url)
    queued, audited = queue.llen(RELEASE_QUEUE), store.audit_entries()

    def check() -> None:
        assert store.artifacts(ArtifactFilter(limit=10)) == []
        assert store.audit_entries() == audited
        assert queue.llen(RELEASE_QUEUE) == queued

    return check


def in_env(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda artifact: change(artifact["environments"][0])


ARTIFACT_ATTACKS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("path traversal in env", in_env(lambda e: e.update(env="../../etc")), "DNS-1123"),
    ("a slash in app", in_env(lambda e: e.update(app="prod/x")), "DNS-1123"),
    ("YAML bomb in manifests", in_env(lambda e: e.update(manifests=YAML_BOMB)), "alias"),
    ("YAML bomb in a patch", in_env(lambda e: e.update(strategicMergePatches=YAML_BOMB)),
     "alias"),
    ("an unknown template function", in_env(lambda e: e.update(
        app="{{ .BRANCH | someUnknownFunc }}")), "unknown function 'someUnknownFunc'"),
    ("call in a value", in_env(lambda e: e["values"].update(image="{{ call .X }}")),
     "unknown function 'call'"),
    ("a nested field", in_env(lambda e: e.update(namespace="{{ .X.__class__ }}")),
     "nested fields"),
    ("a template in a values key", in_env(lambda e: e["values"].update({"{{ printf }}": 1})),
     "unknown function 'printf'"),
    ("too many items", lambda a: a.update(items=[{}] * 1001), "at most 1000"),
    ("too many environments", lambda a: a.update(environments=a["environments"] * 101),
     "at most 200"),
    ("a NUL in the sha", lambda a: a["version"].update(sha="ab\x00cd"), "version.sha"),
    ("a sha that is a ref", lambda a: a["version"].update(sha="HEAD~1"), "not a commit sha"),
    ("a branch git refuses", lambda a: a["version"].update(branch="main..x"),
     "version.branch"),
    ("a tag with a space", lambda a: a["version"].update(tag="v1 rc"), "version.tag"),
    ("a malformed glob", in_env(lambda e: e.update(deploy={"branch": "[", "event": "push"})),
     "deploy.branch"),
    # JSON has no such numbers; stored, they would silently come back as null.
    ("Infinity in an item", lambda a: a.update(items=[{"replicas": float("inf")}]), "finite"),
    ("NaN in a value", in_env(lambda e: e["values"].update(replicas=float("nan"))), "finite"),
    ("an unknown field of -Infinity", lambda a: a.update(later=[float("-inf")]), "finite"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "change", "message"), ARTIFACT_ATTACKS)
def test_hostile_artifacts_are_refused_and_nothing_is_stored(
    client: FlaskClient,
    seed: dict[str, Any],
    nothing_left: Callable[[], None],
    name: str,
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    artifact = copy.deepcopy(seed)
    change(artifact)
    response = client.post("/api/artifact", json=artifact, headers=ADMIN)
    assert response.status_code == 422, (name, response.json)
    assert message in response.json["message"], response.json["message"]
    nothing_left()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"x" * (6 * 1024 * 1024), 413, "larger than"),
        (b'{"version": {}, "items": [' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, "recursion"),
        (b"\xff\xfe not utf-8", 400, "not valid JSON"),
        (b"[]", 422, "invalid input"),
        (b'{"version": {"repositoryName": "a"}, "items": [{"n": 1e400}]}', 422, "finite"),
        (b"", 400, "empty"),
    ],
)
def test_malformed_bodies_are_refused(
    client: FlaskClient,
    nothing_left: Callable[[], None],
    body: bytes,
    status: int,
    message: str,
) -> None:
    response = client.post("/api/artifact", data=body, headers=ADMIN,
                           content_type="application/json")  # fmt: skip
    assert response.status_code == status
    assert message in response.json["message"]
    nothing_left()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/releases?env=../../etc", "not a DNS-1123 label"),
        ("/api/releases?env=staging&limit=100000", "between 1 and 1000"),
        ("/api/releases?env=staging&since=yesterday", "RFC 3339"),
        ("/api/artifacts?offset=-1", "between 0"),
        ("/api/queue?env=" + "a" * 100, "longer than"),
        ("/api/event?id=%00", "NUL"),
    ],
)
def test_bad_query_parameters_are_refused_with_a_message(
    client: FlaskClient, path: str, message: str
) -> None:
    response = client.get(path, headers=ADMIN)
    assert response.status_code == 400
    assert message in response.json["message"]


def test_a_rollback_to_something_that_is_not_a_sha_is_refused(client: FlaskClient) -> None:
    for sha in ("HEAD~1", "main", "../../x", "a" * 39, "g" * 40):
        response = client.post(f"/api/rollback?env=staging&app=web&sha={sha}", headers=ADMIN)
        assert response.status_code == 400, sha
        assert "full commit sha" in response.json["message"]


def test_forged_webhooks_store_nothing(
    client: FlaskClient, nothing_left: Callable[[], None], fixtures_dir: Path
) -> None:
    body = (fixtures_dir / "payloads" / "github" / "delete-branch.json").read_bytes()
    github = client.post(
        "/api/webhooks/github", data=body, content_type="application/json",
        headers={"X-GitHub-Event": "delete", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )  # fmt: skip
    assert github.status_code == 401
    flux = client.post("/api/flux-events?env=staging", data=b"{}",
                       content_type="application/json")  # fmt: skip
    assert flux.status_code == 401
    nothing_left()


@pytest.mark.parametrize("branch", ["a..b", "x y", "-rf", "refs/heads/x.lock", "\x00"])
def test_a_reported_branch_git_would_refuse_is_refused(
    client: FlaskClient, nothing_left: Callable[[], None], branch: str
) -> None:
    body = {"repository": "mycompany/frontend", "branch": branch}
    response = client.post("/api/events/branch-deleted", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert "branch" in response.json["message"]
    nothing_left()


def test_a_commit_url_that_is_not_a_url_does_not_break_the_push(
    client: FlaskClient, seed: dict[str, Any]
) -> None:
    artifact = copy.deepcopy(seed)
    artifact["version"]["url"] = "https://[::1/commit/" + "a" * 40
    artifact["environments"][1]["cleanup"] = {"app": "x", "event": "branchDeleted", "branch": "*"}
    assert client.post("/api/artifact", json=artifact, headers=ADMIN).status_code == 201


def test_a_signed_webhook_nested_too_deep_is_a_400(settings: Settings) -> None:
    secret = "s"
    app = create_app(settings.model_copy(update={"github_webhook_secret": SecretStr(secret)}))
    body = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    response = app.test_client().post(
        "/api/webhooks/github", data=body, content_type="application/json",
        headers={"X-GitHub-Event": "delete", "X-Hub-Signature-256": signature},
    )  # fmt: skip
    assert response.status_code == 400
    app.extensions["gimletd"].close()
