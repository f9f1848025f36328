"""End to end: an artifact posted to the API becomes a pushed GitOps commit.

Real Redis (pytest-redis, own port), real Celery worker processes, SQLite,
Helm rendering of the project's own chart from a local chart repository, and
bare git remotes on disk.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from flask.testing import FlaskClient

from api.enqueue import Enqueuer
from gimletd.models import Artifact
from gimletd.store import ArtifactPush, Store
from tests.support import gitops
from tests.support.processes import Process
from tests.workers.conftest import on_branch, post_artifact, wait_for_event

SHA = "deae5dbaf237766240181fa397e923d3c5253112"

StartWorkers = Callable[..., list[Process]]


def test_a_push_to_main_releases_staging(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    start_workers(settings)
    posted = post_artifact(client, on_branch(artifact, "main", "push"))
    event = wait_for_event(client, posted["eventId"])

    assert event["status"] == "processed", event
    history = gitops.commits(gitops_remote)
    assert len(history) == 1
    commit = history[0]
    assert [h["hash"] for h in event["gitopsHashes"]] == [commit.sha]
    assert commit.message.startswith("[Gimlet] staging/frontend automated deploy")
    assert commit.trailers["Gimlet-Event"] == posted["eventId"]
    assert commit.trailers["Gimlet-Artifact"] == posted["id"]
    assert all(
        path.startswith("staging/frontend/") or path == "staging/release.json"
        for path in commit.files
    ), commit.files
    deployment = yaml.safe_load(
        gitops.read(gitops_remote, "staging/frontend/deployment-frontend.yaml")
    )
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"mycompany/frontend:{SHA}"
    release = gitops.read_json(gitops_remote, "staging/frontend/release.json")
    assert release["artifactId"] == posted["id"]
    assert release["triggeredBy"] == "policy"
    assert gitops.fsck(gitops_remote).returncode == 0


def test_a_pull_request_releases_its_preview_app(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    start_workers(settings)
    posted = post_artifact(client, on_branch(artifact, "feature/Login-Page", "pr"))
    event = wait_for_event(client, posted["eventId"])

    assert event["status"] == "processed", event
    [commit] = gitops.commits(gitops_remote)
    assert commit.message.startswith("[Gimlet] preview/frontend-feature-login-page")
    assert all(path.startswith("preview/") for path in commit.files), commit.files
    assert any(p.startswith("preview/frontend-feature-login-page/") for p in commit.files)


def test_no_matching_policy_is_processed_without_a_commit(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    start_workers(settings)
    posted = post_artifact(client, on_branch(artifact, "release-1", "push"))
    event = wait_for_event(client, posted["eventId"])
    assert event["status"] == "processed"
    assert event["gitopsHashes"] == []
    assert "no environment" in event["statusDesc"]
    assert gitops.commits(gitops_remote) == []


def test_events_dispatched_as_one_batch_are_each_processed(
    client: FlaskClient, artifact: dict[str, Any], gitops_remote: Path, store: Store,
    settings: Any, start_workers: StartWorkers,
) -> None:  # fmt: skip
    """The intake's one message for a batch of pushes becomes a processed event per push."""
    versions = [on_branch(artifact, "main", "push", sha=sha) for sha in ("a" * 40, "b" * 40)]
    pushes = [ArtifactPush(Artifact.model_validate(v), triggered_by="admin") for v in versions]
    events = [event.id for _, event in store.create_artifacts(pushes)]
    start_workers(settings)
    assert Enqueuer(settings.resolved_redis_url).process_events(events)
    finished = [wait_for_event(client, event_id) for event_id in events]
    assert [event["status"] for event in finished] == ["processed"] * 2, finished
    # Processed side by side, the first may be superseded by the second (I3); never the newest.
    first, newest = ([result["status"] for result in event["results"]] for event in finished)
    assert first in (["success"], ["superseded"]) and newest == ["success"], finished
    head, *_ = gitops.commits(gitops_remote)
    assert finished[-1]["gitopsHashes"][0]["hash"] == head.sha


def test_a_missing_variable_fails_only_its_environment(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    """The broken environment is named in statusDesc; the other one is still released."""
    start_workers(settings)
    pushed = on_branch(artifact, "main", "push")
    broken = copy.deepcopy(pushed["environments"][0])
    broken["env"] = "production"
    broken["values"]["image"]["tag"] = "{{ .RELEASE_TAG }}"
    pushed["environments"].append(broken)
    posted = post_artifact(client, pushed)
    event = wait_for_event(client, posted["eventId"])

    assert event["status"] == "error"
    assert "production/frontend" in event["statusDesc"]
    assert "RELEASE_TAG" in event["statusDesc"]
    results = {r["env"]: r for r in event["results"]}
    assert results["staging"]["status"] == "success"
    assert results["production"]["status"] == "failure"
    [commit] = gitops.commits(gitops_remote)
    assert commit.sha == results["staging"]["hash"]


def test_a_foreign_commit_between_two_releases_is_preserved(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
    tmp_path: Path,
) -> None:
    """I4: someone else's commit survives the next release."""
    start_workers(settings)
    first = post_artifact(client, on_branch(artifact, "main", "push"))
    assert wait_for_event(client, first["eventId"])["status"] == "processed"

    worktree = tmp_path / "someone-else"
    gitops.run_git("clone", str(gitops_remote), str(worktree))
    (worktree / "infra").mkdir()
    (worktree / "infra" / "namespace.yaml").write_text("kind: Namespace\n")
    gitops.run_git("-C", str(worktree), "add", ".")
    gitops.run_git("-C", str(worktree), "-c", "user.name=ops", "-c", "user.email=ops@example.com",
                   "commit", "-m", "ops: add a namespace")  # fmt: skip
    gitops.run_git("-C", str(worktree), "push", "origin", "HEAD:main")

    second_artifact = on_branch(artifact, "main", "push")
    second_artifact["context"]["CIRCLE_SHA1"] = "f" * 40
    second = post_artifact(client, second_artifact)
    assert wait_for_event(client, second["eventId"])["status"] == "processed"

    messages = [c.message.splitlines()[0] for c in gitops.commits(gitops_remote)]
    assert messages[1] == "ops: add a namespace"
    assert messages[0].startswith("[Gimlet] staging/frontend")
    assert gitops.read(gitops_remote, "infra/namespace.yaml") == "kind: Namespace\n"
    deployment = gitops.read(gitops_remote, "staging/frontend/deployment-frontend.yaml")
    assert "f" * 40 in deployment


def test_an_unreachable_chart_source_ends_the_event_in_an_error_naming_it(
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    start_workers: StartWorkers,
) -> None:
    """As the seed artifact's public chart repository does on a machine without internet."""
    start_workers(settings)
    unreachable = "http://127.0.0.1:9/charts"
    pushed = on_branch(artifact, "main", "push")
    pushed["environments"][0]["chart"]["repository"] = unreachable
    posted = post_artifact(client, pushed)
    event = wait_for_event(client, posted["eventId"])

    assert event["status"] == "error"
    assert unreachable in event["statusDesc"]
    assert "staging/frontend" in event["statusDesc"]
    assert gitops.commits(gitops_remote) == []
