"""End to end: preview apps removed on branch deletion, PR close, a poll and ttl expiry.

Real Celery workers (and beat for the poll), real Redis on its own port, SQLite,
Helm rendering, a bare GitOps remote and a real application repository on disk;
GitHub deliveries are the fixture payloads, signed as GitHub signs them.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from flask.testing import FlaskClient
from pydantic import SecretStr

from gimletd.settings import Settings
from tests.conftest import ADMIN
from tests.support import gitops
from tests.support.processes import Process
from tests.workers.conftest import on_branch, post_artifact, wait_for_event, wait_until
from workers.celery import RELEASE_QUEUE

StartWorkers = Callable[..., list[Process]]
SECRET = "preview-cleanup-secret"
REPOSITORY = "mycompany/frontend"
HOUR = 3600.0
PREVIEW_APP = "frontend-{{ .BRANCH | sanitizeDNSName }}"


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    """The application repository CI builds from, with its main branch."""
    path = tmp_path / "frontend"
    git(path.parent, "init", "-q", "-b", "main", str(path))
    git(path, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q",
        "--allow-empty", "-m", "first")  # fmt: skip
    return path


@pytest.fixture
def settings(settings: Settings, app_repo: Path) -> Settings:
    """The suite's settings with a webhook secret, the app repository and a 1 s poll."""
    return settings.model_copy(
        update={
            "github_webhook_secret": SecretStr(SECRET),
            "app_repos": f"{REPOSITORY}={app_repo}",
            "cleanup_poll_interval": 1.0,
        }
    )


@pytest.fixture
def worker(settings: Settings, start_workers: StartWorkers) -> Process:
    [started] = start_workers(settings)
    return started


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def with_cleanup(
    artifact: dict[str, Any], cleanup: dict[str, Any], deploy: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The seed artifact with the preview environment's cleanup (and deploy) policy replaced."""
    changed = copy.deepcopy(artifact)
    preview = changed["environments"][1]
    preview["cleanup"] = cleanup
    if deploy is not None:
        preview["deploy"] = deploy
    return changed


def built(artifact: dict[str, Any], branch: str, event: str = "pr") -> dict[str, Any]:
    return on_branch(artifact, branch, event, sha=hashlib.sha1(branch.encode()).hexdigest())


def deploy(client: FlaskClient, artifact: dict[str, Any]) -> None:
    event = wait_for_event(client, post_artifact(client, artifact)["eventId"])
    assert event["status"] == "processed", event
    assert all(result["status"] == "success" for result in event["results"]), event


def deliver(
    client: FlaskClient, fixtures_dir: Path, event: str, name: str, delivery: str, **changes: Any
) -> Any:
    """Deliver a GitHub fixture payload, signed, with `changes` applied to it."""
    payload = json.loads((fixtures_dir / "payloads" / "github" / name).read_text())
    payload["repository"]["full_name"] = REPOSITORY
    if "ref" in changes:
        payload["ref"] = changes["ref"]
    if "head_ref" in changes:
        payload["pull_request"]["head"]["ref"] = changes["head_ref"]
        payload["pull_request"]["head"]["repo"]["full_name"] = REPOSITORY
    body = json.dumps(payload).encode()
    response = client.post(
        "/api/webhooks/github",
        data=body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256="
            + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        },
    )
    assert response.status_code in (200, 202), response.json
    return response.json


def app_dirs(remote: Path, env: str) -> set[str]:
    listing = gitops.git(remote, "ls-tree", "--name-only", f"main:{env}")
    return {name for name in listing.split() if name != "release.json"}


def tree(remote: Path, path: str) -> str:
    return gitops.git(remote, "rev-parse", f"main:{path}").strip()


def event_of_last_commit(client: FlaskClient, remote: Path) -> Any:
    """The event the GitOps repository's last commit names, once it is processed."""
    head = gitops.commits(remote)[0]
    event = wait_for_event(client, head.trailers["Gimlet-Event"])
    assert event["status"] == "processed", event
    return event


def test_a_deleted_branch_removes_its_preview_app_and_nothing_else(
    client: FlaskClient,
    artifact: dict[str, Any],
    fixtures_dir: Path,
    gitops_remote: Path,
    worker: Process,
) -> None:
    previews = with_cleanup(
        artifact,
        {"app": PREVIEW_APP, "event": "branchDeleted", "branch": "!main"},
        deploy={"branch": "**", "event": "pr"},
    )
    deploy(client, built(previews, "main", "push"))
    deploy(client, built(previews, "main"))
    deploy(client, built(previews, "feature/x"))
    assert app_dirs(gitops_remote, "preview") == {"frontend-main", "frontend-feature-x"}
    staging = tree(gitops_remote, "staging")
    main_preview = tree(gitops_remote, "preview/frontend-main")

    accepted = deliver(client, fixtures_dir, "delete", "delete-branch.json", "d-1", ref="feature/x")
    event = wait_for_event(client, accepted["id"])
    assert event["status"] == "processed", event
    [result] = event["results"]
    assert (result["env"], result["app"], result["status"]) == (
        "preview", "frontend-feature-x", "success",
    )  # fmt: skip
    assert app_dirs(gitops_remote, "preview") == {"frontend-main"}
    assert tree(gitops_remote, "staging") == staging
    assert tree(gitops_remote, "preview/frontend-main") == main_preview
    head = gitops.commits(gitops_remote)[0]
    assert head.message.startswith("[GimletD delete] preview/frontend-feature-x deleted by policy")
    assert head.trailers["Gimlet-Event"] == event["id"]
    assert head.sha == result["hash"]
    history = client.get("/api/releases?env=preview&app=frontend-feature-x&all=true", headers=ADMIN)
    assert [entry["kind"] for entry in history.json] == ["delete", "release"]

    commits = len(gitops.commits(gitops_remote))
    redelivered = deliver(
        client, fixtures_dir, "delete", "delete-branch.json", "d-1", ref="feature/x"
    )
    assert (redelivered["duplicate"], redelivered["id"]) == (True, event["id"])
    # The negated glob keeps main's preview app when main is deleted.
    kept = deliver(client, fixtures_dir, "delete", "delete-branch.json", "d-2", ref="main")
    kept_event = wait_for_event(client, kept["id"])
    assert kept_event["status"] == "processed"
    assert kept_event["results"] == []
    assert "nothing to clean up" in kept_event["statusDesc"]
    assert len(gitops.commits(gitops_remote)) == commits
    assert app_dirs(gitops_remote, "preview") == {"frontend-main"}


def test_a_pull_request_closed_without_merge_removes_its_preview_app(
    client: FlaskClient,
    artifact: dict[str, Any],
    fixtures_dir: Path,
    gitops_remote: Path,
    worker: Process,
) -> None:
    previews = with_cleanup(artifact, {"app": PREVIEW_APP, "event": "prClosed", "branch": "*"})
    deploy(client, built(previews, "fix-login"))
    closed = deliver(
        client, fixtures_dir, "pull_request", "pull_request-closed.json", "d-1",
        head_ref="fix-login",
    )  # fmt: skip
    event = wait_for_event(client, closed["id"])
    assert event["type"] == "prClosed"
    assert [(r["app"], r["status"]) for r in event["results"]] == [
        ("frontend-fix-login", "success")
    ]
    assert "frontend-fix-login" not in app_dirs(gitops_remote, "preview")
    # Reopened and merged later: the app is gone already, which is not an error.
    merged = deliver(
        client, fixtures_dir, "pull_request", "pull_request-closed-merged.json", "d-2",
        head_ref="fix-login",
    )  # fmt: skip
    again = wait_for_event(client, merged["id"])
    assert again["status"] == "processed"
    [result] = again["results"]
    assert result["status"] == "unchanged"
    assert "nothing to delete" in result["statusDesc"]


def test_a_branch_deleted_with_git_is_found_by_the_scheduled_poll_once(
    client: FlaskClient,
    artifact: dict[str, Any],
    app_repo: Path,
    fixtures_dir: Path,
    gitops_remote: Path,
    settings: Settings,
    start_workers: StartWorkers,
) -> None:
    git(app_repo, "branch", "feature-y")
    start_workers(settings, beat=True)
    deployed_at = time.time()
    deploy(client, built(artifact, "feature-y"))
    assert "frontend-feature-y" in app_dirs(gitops_remote, "preview")

    def polled_since(moment: float) -> bool:
        [repo] = client.get("/api/appRepos", headers=ADMIN).json
        assert repo["pollError"] == ""
        return repo["polledAt"] is not None and repo["polledAt"] > moment

    wait_until(lambda: polled_since(deployed_at), "a poll has seen feature-y")
    git(app_repo, "branch", "-D", "feature-y")
    wait_until(
        lambda: "frontend-feature-y" not in app_dirs(gitops_remote, "preview"),
        "the poll found the deletion and the preview app is deleted",
    )
    event = event_of_last_commit(client, gitops_remote)
    assert (event["type"], event["triggeredBy"]) == ("branchDeleted", "branch-poll")
    # The webhook arrives late: the same deletion, reported once.
    late = deliver(client, fixtures_dir, "delete", "delete-branch.json", "d-late", ref="feature-y")
    assert (late["duplicate"], late["id"]) == (True, event["id"])
    deletes = [c for c in gitops.commits(gitops_remote) if c.message.startswith("[GimletD delete]")]
    assert len(deletes) == 1


def test_a_preview_app_not_released_for_its_ttl_expires(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Settings,
    worker: Process,
) -> None:
    deploy(client, built(with_cleanup(artifact, {"ttl": "72h"}), "slow-review"))
    assert "frontend-slow-review" in app_dirs(gitops_remote, "preview")
    scheduler = Celery(broker=settings.resolved_redis_url, set_as_current=False)
    scheduler.conf.task_default_queue = RELEASE_QUEUE  # where beat would send it
    sent: list[str] = []

    def expire_at(moment: float) -> None:
        sent.append(scheduler.send_task("gimletd.cleanup.expire", kwargs={"now": moment}).id)

    def checks() -> list[list[str] | None]:
        return [expiry_check(worker, task_id) for task_id in sent]

    expire_at(time.time() + 71 * HOUR)
    wait_until(lambda: checks()[0] is not None, "the first expiry check ran")
    assert checks() == [[]]
    assert "frontend-slow-review" in app_dirs(gitops_remote, "preview")
    expire_at(time.time() + 73 * HOUR)
    expire_at(time.time() + 74 * HOUR)
    wait_until(
        lambda: "frontend-slow-review" not in app_dirs(gitops_remote, "preview"),
        "the preview app expired",
    )
    event = event_of_last_commit(client, gitops_remote)
    assert (event["type"], event["triggeredBy"]) == ("delete", "policy")
    wait_until(lambda: None not in checks(), "every expiry check ran")
    assert sorted(checks(), key=len) == [[], [], [event["id"]]], "a release expires once"


def expiry_check(worker: Process, task_id: str) -> list[str] | None:
    """The events the expiry task `task_id` created, from the worker's log; None until it ran."""
    for line in worker.log().splitlines():
        message = json.loads(line).get("message", "") if line.startswith("{") else ""
        if message.startswith(f"Task gimletd.cleanup.expire[{task_id}] succeeded in "):
            created: list[str] = ast.literal_eval(message.rsplit(": ", 1)[1])
            return created
    return None
