"""Branch deletions reported by webhook, poll and API are acted on once, on both databases."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gimletd.models import Artifact, CleanupEvent, EventType
from gimletd.store import CleanupRecord, Store

REPO = "mycompany/frontend"


def make_artifact(fixtures_dir: Path, branch: str, event: str = "push") -> Artifact:
    data = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    data["version"].update(branch=branch, sourceBranch=branch, event=event)
    return Artifact.model_validate(data)


def report(store: Store, branch: str, *, dedupe_key: str | None = None) -> CleanupRecord:
    """A webhook's report that `branch` was deleted."""
    return store.create_cleanup_event(
        CleanupEvent.BRANCH_DELETED,
        repository=REPO,
        branch=branch,
        triggered_by="github:octocat",
        detail={"repository": REPO, "branch": branch},
        dedupe_key=dedupe_key,
    )


def poll(store: Store, *branches: str, at: float | None = None) -> list[str]:
    """A poll listing `branches`; returns the branches it reports deleted."""
    events = store.record_branch_listing(
        REPO, listed_at=time.time() if at is None else at, branches=branches, triggered_by="poll"
    )
    assert all(event.type is EventType.BRANCH_DELETED for event in events)
    return [event.branch for event in events]


def test_a_pushed_branch_missing_from_a_poll_is_reported_once(
    any_store: Store, fixtures_dir: Path
) -> None:
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    any_store.create_artifact(make_artifact(fixtures_dir, "main"), triggered_by="ci")
    assert poll(any_store, "main", "feature-x") == []
    assert poll(any_store, "main") == ["feature-x"]
    assert poll(any_store, "main") == []
    duplicate = report(any_store, "feature-x")
    assert not duplicate.created
    assert duplicate.event.triggered_by == "poll"


def test_a_pushed_branch_deleted_before_the_first_poll_is_reported(
    any_store: Store, fixtures_dir: Path
) -> None:
    """A push artifact proves the branch was in the repository: no poll had to see it."""
    any_store.create_artifact(make_artifact(fixtures_dir, "short-lived"), triggered_by="ci")
    assert poll(any_store, "main") == ["short-lived"]


def test_a_webhook_first_makes_the_poll_report_nothing(
    any_store: Store, fixtures_dir: Path
) -> None:
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    listed_before_the_deletion = time.time()
    first = report(any_store, "feature-x")
    assert first.created
    assert first.event.status.value == "new"
    assert first.event.triggered_by == "github:octocat"
    # A poll that asked before the webhook arrived still lists the branch: it stays deleted.
    assert poll(any_store, "main", "feature-x", at=listed_before_the_deletion) == []
    assert poll(any_store, "main") == []
    again = report(any_store, "feature-x")
    assert (again.created, again.event.id) == (False, first.event.id)


def test_a_branch_created_again_is_reported_again(any_store: Store, fixtures_dir: Path) -> None:
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    first = report(any_store, "feature-x")
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    second = report(any_store, "feature-x")
    assert second.created and second.event.id != first.event.id
    # Recreated without an artifact: a poll that lists it sees it again.
    assert poll(any_store, "main", "feature-x") == []
    assert poll(any_store, "main") == ["feature-x"]


def test_a_pull_request_branch_is_not_reported_before_a_poll_saw_it(
    any_store: Store, fixtures_dir: Path
) -> None:
    """Its branch may live in a fork: absent from this repository is not deleted."""
    any_store.create_artifact(make_artifact(fixtures_dir, "from-a-fork", "pr"), triggered_by="ci")
    any_store.create_artifact(make_artifact(fixtures_dir, "same-repo", "pr"), triggered_by="ci")
    assert poll(any_store, "main", "same-repo") == []
    assert poll(any_store, "main") == ["same-repo"]


def test_a_listing_older_than_an_artifact_does_not_report_its_branch(
    any_store: Store, fixtures_dir: Path
) -> None:
    asked = time.time() - 5
    any_store.create_artifact(make_artifact(fixtures_dir, "brand-new"), triggered_by="ci")
    assert poll(any_store, "main", at=asked) == []


def test_a_redelivered_report_returns_the_first_event(any_store: Store) -> None:
    first = any_store.create_cleanup_event(
        CleanupEvent.PR_CLOSED, repository=REPO, branch="fix", triggered_by="github:octocat",
        detail={"repository": REPO, "branch": "fix"}, dedupe_key="github:delivery-1",
    )  # fmt: skip
    again = any_store.create_cleanup_event(
        CleanupEvent.PR_CLOSED, repository=REPO, branch="fix", triggered_by="github:octocat",
        detail={"repository": REPO, "branch": "fix"}, dedupe_key="github:delivery-1",
    )  # fmt: skip
    assert first.created and not again.created
    assert again.event.id == first.event.id
    assert again.event.type is EventType.PR_CLOSED


def test_branch_artifacts_are_the_branchs_and_its_pull_requests_newest_first(
    any_store: Store, fixtures_dir: Path
) -> None:
    pushed, _ = any_store.create_artifact(make_artifact(fixtures_dir, "fix"), triggered_by="ci")
    pr, _ = any_store.create_artifact(make_artifact(fixtures_dir, "fix", "pr"), triggered_by="ci")
    any_store.create_artifact(make_artifact(fixtures_dir, "main"), triggered_by="ci")
    found = [artifact.id for artifact in any_store.branch_artifacts(REPO, "fix")]
    assert found == [pr.id, pushed.id]


def test_an_artifact_with_a_cleanup_policy_registers_its_repository(
    any_store: Store, fixtures_dir: Path
) -> None:
    artifact = make_artifact(fixtures_dir, "fix")
    any_store.create_artifact(artifact, triggered_by="ci", poll_url="https://example.com/a.git")
    any_store.create_artifact(artifact, triggered_by="ci", poll_url="https://example.com/b.git")
    any_store.record_poll_error(REPO, polled_at=1.0, error="unreachable")
    [repo] = any_store.app_repos()
    assert (repo.repository, repo.url, repo.polled_at, repo.poll_error) == (
        REPO, "https://example.com/b.git", 1.0, "unreachable",
    )  # fmt: skip
