"""Who may do what: every route against every kind of caller, and users, tokens and the audit.

The matrix sends each route's request as each caller and checks the status:
401 for no, a bad, a revoked or an expired token; 403 for a role or an
environment the caller does not have; anything else (2xx, or a 4xx about the
request itself) when the caller is allowed, never a 5xx. A refused write
leaves no trace: no event, no audit entry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from api import create_app
from gimletd import cli
from gimletd.gitops.repository import GitopsRepository
from gimletd.history import sync_index
from gimletd.models import Role
from gimletd.settings import Settings
from gimletd.store import Store, UserRow
from tests.conftest import ADMIN

CALLERS = ("none", "bad", "revoked", "expired", "ci", "user-other", "user-staging", "admin")
ANYONE = frozenset(CALLERS) - {"none", "bad", "revoked", "expired"}
WRITERS = frozenset({"user-staging", "admin"})
ADMINS = frozenset({"admin"})
PUBLIC = frozenset(CALLERS)
SHA = "a" * 40

#: (method, path, JSON body or None, who may)
ROUTES: list[tuple[str, str, Any, frozenset[str]]] = [
    ("GET", "/", None, PUBLIC),
    ("GET", "/health", None, PUBLIC),
    ("GET", "/api/openapi.json", None, PUBLIC),
    ("GET", "/api/artifacts", None, ANYONE),
    ("GET", "/api/event?id=nope", None, ANYONE),
    ("GET", "/api/eventArtifactTrack?id=nope", None, ANYONE),
    ("GET", "/api/releases?env=staging", None, ANYONE),
    ("GET", "/api/status?env=staging", None, ANYONE),
    ("GET", "/api/envs", None, ANYONE),
    ("GET", "/api/gitopsRepo", None, ANYONE),
    ("GET", "/api/holds", None, ANYONE),
    ("GET", "/api/locks", None, ANYONE),
    ("GET", "/api/queue?env=staging", None, ANYONE),
    ("GET", "/api/appRepos", None, ANYONE),
    ("POST", "/api/artifact", "artifact", ANYONE),
    ("POST", "/api/events/branch-deleted", {"repository": "a/b", "branch": "x"}, ANYONE),
    ("POST", "/api/events/pr-closed", {"repository": "a/b", "branch": "y"}, ANYONE),
    ("POST", "/api/flux-events?env=staging", {"metadata": {"revision": "1.0.0"}}, ANYONE),
    ("POST", "/api/releases", "release", WRITERS),
    ("POST", f"/api/rollback?env=staging&app=frontend&sha={SHA}", None, WRITERS),
    ("POST", "/api/delete?env=staging&app=frontend", None, WRITERS),
    ("POST", "/api/locks", {"env": "staging", "reason": "freeze"}, WRITERS),
    ("DELETE", "/api/locks?env=staging", None, WRITERS),
    ("DELETE", "/api/holds?env=staging&app=frontend", None, WRITERS),
    ("GET", "/api/users", None, ADMINS),
    ("GET", "/api/user/admin", None, ADMINS),
    ("POST", "/api/user", "new-user", ADMINS),
    ("POST", "/api/user/nobody/token", None, ADMINS),
    ("DELETE", "/api/user/nobody", None, ADMINS),
    ("GET", "/api/audit", None, ADMINS),
]


@pytest.fixture(autouse=True)
def indexed(store: Store, settings: Settings, tmp_path: Path) -> None:
    """The release index of the (empty) GitOps remote is built, as a worker would."""
    repo = GitopsRepository(settings.resolved_gitops_repo, cache_dir=tmp_path / "c", clone_name="t")
    sync_index(store, repo, repo.fetch())


@pytest.fixture
def callers(store: Store) -> dict[str, dict[str, str]]:
    """The Authorization header of each kind of caller."""

    def token(login: str, **options: Any) -> str:
        return store.create_user(login, **options)[1]

    revoked = token("gone")
    store.delete_user("gone")
    headers = {
        "bad": "Bearer not-a-token",
        "revoked": f"Bearer {revoked}",
        "expired": f"Bearer {token('old', expires_at=int(time.time()) - 1)}",
        "ci": f"Bearer {token('pipeline', role=Role.CI)}",
        "user-other": f"Bearer {token('bob', envs=['production'])}",
        "user-staging": f"Bearer {token('alice', envs=['staging'])}",
        "admin": ADMIN["Authorization"],
    }
    result = {name: {"Authorization": value} for name, value in headers.items()}
    result["none"] = {}
    return result


@pytest.fixture
def seed(fixtures_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    return data


def body_for(kind: Any, caller: str, seed: dict[str, Any], artifact_id: str) -> Any:
    if kind == "artifact":
        return seed
    if kind == "release":
        return {"env": "staging", "artifactId": artifact_id}
    if kind == "new-user":
        return {"login": f"made-by-{caller}"}
    return kind


def test_every_route_against_every_caller(
    client: FlaskClient, callers: dict[str, dict[str, str]], seed: dict[str, Any], store: Store
) -> None:
    pushed = client.post("/api/artifact", json=seed, headers=ADMIN)
    assert pushed.status_code == 201
    artifact_id = pushed.json["id"]
    failures = []
    for method, path, kind, allowed in ROUTES:
        for caller in CALLERS:
            audit_before = len(store.audit_entries(limit=1000))
            body = body_for(kind, caller, seed, artifact_id)
            response = client.open(
                path, method=method, headers=callers[caller],
                json=body if body is not None else None,
            )  # fmt: skip
            status = response.status_code
            if caller in allowed:
                ok = status not in (401, 403) and status < 500
            elif caller in ("none", "bad", "revoked", "expired"):
                ok = status == 401
            else:
                ok = status == 403
            if status in (401, 403):
                ok = ok and len(store.audit_entries(limit=1000)) == audit_before
                ok = ok and "message" in (response.json or {})
            if not ok:
                failures.append(f"{method} {path} as {caller}: {status} {response.json}")
    assert not failures, "\n".join(failures)


def test_a_user_refused_an_env_is_told_which_env_and_which_it_has(
    client: FlaskClient, callers: dict[str, dict[str, str]]
) -> None:
    response = client.post("/api/locks", json={"env": "staging", "reason": "x"},
                           headers=callers["user-other"])  # fmt: skip
    assert response.status_code == 403
    assert (
        response.json["message"] == "bob may not write to staging: its environments are production"
    )
    ci = client.delete("/api/locks?env=staging", headers=callers["ci"])
    assert "ci token" in ci.json["message"] and "staging" in ci.json["message"]


def test_tokens_are_shown_once_stored_hashed_rotated_and_revoked(
    client: FlaskClient, store: Store
) -> None:
    created = client.post(
        "/api/user",
        json={"login": "carol", "role": "user", "envs": ["staging"], "expiresIn": "30d"},
        headers=ADMIN,
    )
    assert created.status_code == 201
    token = created.json["token"]
    assert created.json["envs"] == ["staging"] and created.json["role"] == "user"
    assert created.json["expiresAt"] > time.time() + 29 * 86400
    carol = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/envs", headers=carol).status_code == 200
    shown = client.get("/api/user/carol", headers=ADMIN).json
    assert "token" not in shown and token not in json.dumps(
        client.get("/api/users", headers=ADMIN).json
    )
    with store.session() as session:
        stored = session.query(UserRow).filter_by(login="carol").one()
        assert token not in (stored.token_hash, stored.envs) and len(stored.token_hash) == 64

    rotated = client.post("/api/user/carol/token", headers=ADMIN)
    assert rotated.status_code == 200 and rotated.json["token"] != token
    assert client.get("/api/envs", headers=carol).status_code == 401
    carol = {"Authorization": f"Bearer {rotated.json['token']}"}
    assert client.get("/api/envs", headers=carol).status_code == 200
    assert client.delete("/api/user/carol", headers=ADMIN).status_code == 200
    assert client.get("/api/envs", headers=carol).status_code == 401
    # The Go original's body still works: a user for every environment.
    legacy = client.post("/api/user", json={"login": "dave"}, headers=ADMIN)
    assert (legacy.status_code, legacy.json["role"], legacy.json.get("envs")) == (201, "user", None)
    assert client.post("/api/user", json={"login": "dave"}, headers=ADMIN).status_code == 409


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"login": "../../etc"}, "login"),
        ({"login": "ci", "role": "ci", "envs": ["staging"]}, "envs limit a user"),
        ({"login": "x", "envs": ["prod/x"]}, "not a DNS-1123 label"),
        ({"login": "x", "role": "root"}, "role"),
        ({"login": "x", "expiresIn": "soon"}, "expiresIn"),
    ],
)
def test_bad_user_requests_are_refused(client: FlaskClient, body: Any, message: str) -> None:
    response = client.post("/api/user", json=body, headers=ADMIN)
    assert response.status_code in (400, 422)
    assert message in json.dumps(response.json)
    logins = [user["login"] for user in client.get("/api/users", headers=ADMIN).json]
    assert logins == ["admin"]


def test_the_last_admin_cannot_be_deleted(client: FlaskClient) -> None:
    response = client.delete("/api/user/admin", headers=ADMIN)
    assert response.status_code == 409
    assert "last admin" in response.json["message"]


def test_writes_are_audited_with_who_when_where_and_what(
    client: FlaskClient, callers: dict[str, dict[str, str]], seed: dict[str, Any]
) -> None:
    started = time.time()
    pushed = client.post("/api/artifact", json=seed, headers=callers["ci"])
    assert pushed.status_code == 201
    staging = callers["user-staging"]
    assert client.post("/api/locks", json={"env": "staging", "reason": "freeze"},
                       headers=staging).status_code == 201  # fmt: skip
    assert client.delete("/api/locks?env=staging", headers=staging).status_code == 200
    client.post("/api/user", json={"login": "erin", "role": "ci"}, headers=ADMIN)
    trail = client.get("/api/audit?limit=10", headers=ADMIN).json
    actions = [(e["action"], e["login"], e["target"]) for e in trail]
    assert actions[:4] == [
        ("user.create", "admin", "erin"),
        ("unlock", "alice", "staging"),
        ("lock", "alice", "staging"),
        ("artifact.push", "pipeline", pushed.json["id"]),
    ]
    push = trail[3]
    assert push["address"] == "127.0.0.1" and push["at"] >= started
    assert push["eventId"] == pushed.json["eventId"]
    assert push["detail"]["repository"] == "mycompany/frontend"
    assert [e["action"] for e in client.get("/api/audit?login=alice", headers=ADMIN).json] == [
        "unlock", "lock",
    ]  # fmt: skip
    assert client.get("/api/audit", headers=staging).status_code == 403


def test_behind_a_trusted_proxy_the_audit_names_the_caller(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"trusted_proxies": 1}))
    client = app.test_client()
    forwarded = {**ADMIN, "X-Forwarded-For": "203.0.113.9"}
    assert client.post("/api/locks", json={"env": "qa", "reason": "x"},
                       headers=forwarded).status_code == 201  # fmt: skip
    entry, started = client.get("/api/audit", headers=ADMIN).json
    assert (entry["action"], entry["address"]) == ("lock", "203.0.113.9")
    assert (started["action"], started["login"], started["target"]) == (
        "user.create", "gimletd", "admin",
    )  # fmt: skip
    app.extensions["gimletd"].close()


def test_only_an_admin_may_ask_for_force_even_while_the_env_is_unlocked(
    client: FlaskClient, callers: dict[str, dict[str, str]], seed: dict[str, Any]
) -> None:
    """The event keeps `force`: a lock placed before it is applied must still hold it back."""
    artifact_id = client.post("/api/artifact", json=seed, headers=ADMIN).json["id"]
    body = {"env": "staging", "artifactId": artifact_id, "force": True}
    refused = client.post("/api/releases", json=body, headers=callers["user-staging"])
    assert refused.status_code == 403 and "only an admin" in refused.json["message"]
    assert client.post("/api/releases", json=body, headers=ADMIN).status_code == 201


def test_the_user_command_checks_logins_and_envs(settings: Settings) -> None:
    runner = CliRunner(env=settings.environment())
    for arguments, problem in [
        (["user", "create", "a b"], "LOGIN"),
        (["user", "create", "../x"], "LOGIN"),
        (["user", "create", "carol", "--env", "prod/x"], "--env"),
    ]:
        result = runner.invoke(cli.main, arguments)
        assert result.exit_code == 2 and problem in result.output, result.output
    made = runner.invoke(cli.main, ["user", "create", "carol", "--role", "ci"])
    assert made.exit_code == 0 and "created carol (ci)" in made.output
