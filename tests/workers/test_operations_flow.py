"""End to end: ad-hoc releases, a rollback and its hold, a delete and an environment lock.

Real Celery workers, real Redis (own port), SQLite, Helm rendering and a bare
git remote on disk; everything goes through the API as a user would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import ADMIN
from tests.support import gitops
from tests.support.processes import Process
from tests.workers.conftest import on_branch, post_artifact, wait_for_event, wait_until

StartWorkers = Callable[..., list[Process]]
DEPLOYMENT = "staging/frontend/deployment-frontend.yaml"


def build(artifact: dict[str, Any], sha: str, branch: str = "main") -> dict[str, Any]:
    """The artifact CI pushes for commit `sha` on `branch`."""
    return on_branch(artifact, branch, "push", sha=sha)


def get(client: FlaskClient, path: str) -> Any:
    response = client.get(path, headers=ADMIN)
    assert response.status_code == 200, (path, response.json)
    return response.json


def post(client: FlaskClient, path: str, body: Any = None) -> Any:
    response = client.post(path, json=body, headers=ADMIN)
    assert response.status_code == 201, (path, response.json)
    return response.json


def test_release_rollback_hold_lift_and_delete(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    start_workers(settings)
    # Two builds of a branch no policy deploys; releasing them is up to people.
    older = post_artifact(client, build(artifact, "1" * 40, branch="release-1"))
    newer = post_artifact(client, build(artifact, "2" * 40, branch="release-1"))
    for built in (older, newer):
        assert wait_for_event(client, built["eventId"])["results"] == []
    for built in (older, newer):
        event = post(client, "/api/releases", {"env": "staging", "artifactId": built["id"]})
        assert wait_for_event(client, event["id"])["status"] == "processed"
    assert "1" * 40 not in gitops.read(gitops_remote, DEPLOYMENT)
    history = get(client, "/api/releases?env=staging&app=frontend")
    assert [r["artifactId"] for r in history] == [newer["id"], older["id"]]
    assert [r["triggeredBy"] for r in history] == ["admin", "admin"]
    first_commit = history[1]["gitopsRef"]

    rollback = post(client, f"/api/rollback?env=staging&app=frontend&sha={first_commit}")
    assert wait_for_event(client, rollback["id"])["status"] == "processed"
    assert gitops.read(gitops_remote, DEPLOYMENT) == gitops.read(
        gitops_remote, DEPLOYMENT, first_commit
    )
    head = gitops.commits(gitops_remote)[0]
    assert f"This reverts commit {history[0]['gitopsRef']}." in head.message
    history = get(client, "/api/releases?env=staging&app=frontend")
    assert [(r["artifactId"], r["rolledBack"]) for r in history] == [
        (newer["id"], True),
        (older["id"], False),
    ]
    assert history[1]["hold"]["placedBy"] == "admin"
    status = get(client, "/api/status?env=staging")["frontend"]
    assert (status["artifactId"], status["kind"]) == (older["id"], "rollback")
    assert "rolled back" in status["hold"]["reason"]

    # A policy deploy of a new build waits behind the hold instead of undoing the rollback.
    policy = post_artifact(client, build(artifact, "3" * 40))
    queue = wait_until(
        lambda: get(client, "/api/queue?env=staging")["writes"], "the deploy is queued"
    )
    assert queue[0]["reason"].startswith("held: rolled back")
    time.sleep(1)
    assert get(client, f"/api/event?id={policy['eventId']}")["status"] == "new"
    assert "3" * 40 not in gitops.read(gitops_remote, DEPLOYMENT)
    lifted = client.delete("/api/holds?env=staging&app=frontend", headers=ADMIN)
    assert lifted.status_code == 200
    assert wait_for_event(client, policy["eventId"])["status"] == "processed"
    assert "3" * 40 in gitops.read(gitops_remote, DEPLOYMENT)
    assert "hold" not in get(client, "/api/status?env=staging")["frontend"]

    deleted = post(client, "/api/delete?env=staging&app=frontend")
    assert wait_for_event(client, deleted["id"])["status"] == "processed"
    assert gitops.commits(gitops_remote)[0].message.startswith(
        "[GimletD delete] staging/frontend deleted by admin"
    )
    wait_until(lambda: get(client, "/api/status?env=staging") == {}, "the app is gone")
    assert gitops.fsck(gitops_remote).returncode == 0


def test_a_lock_holds_policy_deploys_and_the_newest_is_applied_when_lifted(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    """Decided: of the deploys that waited, the newest is committed, the others superseded."""
    start_workers(settings)
    post(client, "/api/locks", {"env": "staging", "reason": "black friday"})
    posted = [post_artifact(client, build(artifact, str(n) * 40)) for n in (4, 5, 6)]
    queue = wait_until(
        lambda: len(w := get(client, "/api/queue?env=staging")["writes"]) == 3 and w,
        "three deploys are queued",
    )
    assert all("black friday" in w["reason"] for w in queue)
    assert not gitops.has_branch(gitops_remote)

    assert client.delete("/api/locks?env=staging", headers=ADMIN).status_code == 200
    events = [wait_for_event(client, p["eventId"]) for p in posted]
    assert [e["results"][0]["status"] for e in events] == ["superseded", "superseded", "success"]
    assert all(e["status"] == "processed" for e in events)
    assert "6" * 40 in gitops.read(gitops_remote, DEPLOYMENT)
    assert len(gitops.commits(gitops_remote)) == 1


def test_an_environment_mapped_to_its_own_repository_is_written_there(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
    tmp_path: Path,
) -> None:
    from api import create_app
    from gimletd.gitops.repository import init_bare

    staging_remote = tmp_path / "staging-gitops.git"
    init_bare(staging_remote)
    mapped = settings.model_copy(update={"gitops_repos": f"staging={staging_remote}"})
    start_workers(mapped)
    app = create_app(mapped)
    mapped_client = app.test_client()
    posted = post_artifact(mapped_client, build(artifact, "7" * 40))
    assert wait_for_event(mapped_client, posted["eventId"])["status"] == "processed"
    assert "7" * 40 in gitops.read(staging_remote, DEPLOYMENT)
    assert not gitops.has_branch(gitops_remote), "the default repository is untouched"
    history = wait_until(
        lambda: (
            (r := mapped_client.get("/api/releases?env=staging", headers=ADMIN)).status_code == 200
            and r.json
        ),
        "the release is indexed",
    )
    assert history[0]["gitopsRepo"] == str(staging_remote)
    assert mapped_client.get("/api/gitopsRepo", headers=ADMIN).json["gitopsRepos"] == {
        "staging": str(staging_remote)
    }
    app.extensions["gimletd"].close()
