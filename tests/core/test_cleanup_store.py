"""Preview cleanup against the store, on both databases: reports acted on once, polls, expiry."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import gimletd.store as store_module
from gimletd.app_repos import BranchLister
from gimletd.cleanup import expire_apps, poll_app_repo
from gimletd.errors import AppRepoError
from gimletd.models import (
    Artifact,
    CleanupEvent,
    CleanupPolicy,
    EventType,
    Release,
    WriteKind,
)
from gimletd.store import (
    ArtifactPush,
    CleanupRecord,
    IndexEntry,
    IndexHead,
    PlannedWrite,
    Store,
)

REPO = "mycompany/frontend"
HOUR = 3600


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


def test_a_branch_built_again_is_reported_again(any_store: Store, fixtures_dir: Path) -> None:
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    first = report(any_store, "feature-x")
    # A poll listing it (its clock may be ahead of the API's) does not undo the deletion.
    assert poll(any_store, "main", "feature-x", at=time.time() + 60) == []
    assert poll(any_store, "main") == []
    assert not report(any_store, "feature-x").created
    # An artifact does: CI built the branch again, so its next deletion is a new one.
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    second = report(any_store, "feature-x")
    assert second.created and second.event.id != first.event.id


def test_a_deletion_whose_cleanup_failed_can_be_reported_again(
    any_store: Store, fixtures_dir: Path
) -> None:
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    first = report(any_store, "feature-x")
    any_store.fail_event(first.event.id, "the GitOps repository was unreachable")
    second = report(any_store, "feature-x")
    assert second.created and second.event.id != first.event.id
    assert not report(any_store, "feature-x").created
    assert poll(any_store, "main") == [], "a poll does not retry what a report owns"


def test_concurrent_reports_of_one_deletion_create_one_event(
    any_store: Store, fixtures_dir: Path
) -> None:
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    with ThreadPoolExecutor(max_workers=8) as pool:
        webhooks = [pool.submit(report, any_store, "feature-x") for _ in range(6)]
        polls = [pool.submit(poll, any_store, "main") for _ in range(6)]
        records = [future.result() for future in webhooks]
        found = [branch for future in polls for branch in future.result()]
    created = sum(record.created for record in records) + len(found)
    assert created == 1, (records, found)
    assert len({record.event.id for record in records}) == 1


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


def test_a_push_landing_while_a_poll_records_its_listing_keeps_the_branch(
    any_store: Store, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll read the branch as seen before its listing; then a push of it landed.

    The conditional update that marks the branch deleted then finds it seen
    after the listing and changes nothing: no deletion may be reported for it.
    """
    any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
    listed_at = time.time() + 1  # the listing no longer has the branch
    make_row = store_module._cleanup_event_row

    def push_lands_first(*args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as later:  # the push lands after the listing began
            later.setattr(store_module.time, "time", lambda: listed_at + 1)
            any_store.create_artifact(make_artifact(fixtures_dir, "feature-x"), triggered_by="ci")
        return make_row(*args, **kwargs)

    monkeypatch.setattr(store_module, "_cleanup_event_row", push_lands_first)
    assert poll(any_store, "main", at=listed_at) == []
    monkeypatch.undo()
    assert poll(any_store, "main", "feature-x") == [], "the branch is still there"


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
    """The first URL stays: a later artifact cannot point the poll (and its token) elsewhere."""
    artifact = make_artifact(fixtures_dir, "fix")
    any_store.create_artifact(artifact, triggered_by="ci", poll_url="")
    any_store.create_artifact(artifact, triggered_by="ci", poll_url="https://example.com/a.git")
    any_store.create_artifact(artifact, triggered_by="ci", poll_url="https://evil.example/a.git")
    any_store.record_poll_error(REPO, polled_at=1.0, error="unreachable")
    [repo] = any_store.app_repos()
    assert (repo.repository, repo.url, repo.polled_at, repo.poll_error) == (
        REPO, "https://example.com/a.git", 1.0, "unreachable",
    )  # fmt: skip
    assert any_store.app_repo(REPO) == repo
    assert any_store.app_repo("someone/else") is None


def test_pushes_stored_together_register_and_note_as_they_would_one_by_one(
    any_store: Store, fixtures_dir: Path
) -> None:
    """In one batch as one by one, the first URL found wins (an empty one is no URL)."""
    artifact = make_artifact(fixtures_dir, "fix")
    pr = make_artifact(fixtures_dir, "fix", "pr")
    any_store.create_artifacts(
        [
            ArtifactPush(artifact, "ci", poll_url=""),
            ArtifactPush(pr, "ci", poll_url="https://example.com/a.git"),
            ArtifactPush(artifact, "ci", poll_url="https://evil.example/a.git"),
        ]
    )
    [repo] = any_store.app_repos()
    assert repo.url == "https://example.com/a.git"
    assert len(list(any_store.branch_artifacts(REPO, "fix"))) == 3


def ttl_artifact(any_store: Store, fixtures_dir: Path, ttl: str = "72h") -> str:
    """Stores an artifact of branch `fix` whose preview config expires after `ttl`."""
    artifact = make_artifact(fixtures_dir, "fix", "pr")
    artifact.context["BRANCH"] = "fix"
    preview = artifact.environments[1]
    preview.cleanup = CleanupPolicy(ttl=ttl)
    stored, event = any_store.create_artifact(artifact, triggered_by="ci")
    any_store.finish_event(event.id, "preview/frontend-fix: success")  # it was released
    return stored.id


def released(any_store: Store, artifact_id: str, commit: str, at: int) -> None:
    """Index a release of preview/frontend-fix at commit `commit`, made at time `at`."""
    head = any_store.index_head("repo")
    position = head.position + 1 if head else 1
    release = Release(
        app="frontend-fix", env="preview", artifactId=artifact_id, triggeredBy="policy"
    )
    entry = IndexEntry("preview", "frontend-fix", commit, position, WriteKind.RELEASE, release, at)
    assert any_store.record_index(
        "repo", base=head, head=IndexHead(commit, position), entries=[entry]
    )


def test_an_app_idle_for_its_ttl_expires_once_per_release(
    any_store: Store, fixtures_dir: Path
) -> None:
    artifact_id = ttl_artifact(any_store, fixtures_dir)
    released(any_store, artifact_id, "1" * 40, at=1000)
    assert expire_apps(any_store, "repo", now=1000 + 71 * HOUR) == []
    [event] = expire_apps(any_store, "repo", now=1000 + 73 * HOUR)
    assert (event.type, event.triggered_by) == (EventType.DELETE, "policy")
    claim = any_store.claim_event(event.id)
    assert claim is not None
    assert json.loads(claim.blob) == {
        "env": "preview",
        "app": "frontend-fix",
        "reason": "expired: not released for 3d1h, its ttl is 3d",
    }
    assert expire_apps(any_store, "repo", now=1000 + 80 * HOUR) == [], "expired already"
    released(any_store, artifact_id, "2" * 40, at=5000)
    assert len(expire_apps(any_store, "repo", now=5000 + 73 * HOUR)) == 1


def test_an_app_with_a_queued_write_is_not_idle(any_store: Store, fixtures_dir: Path) -> None:
    artifact_id = ttl_artifact(any_store, fixtures_dir)
    released(any_store, artifact_id, "1" * 40, at=1000)
    _, queued = any_store.create_artifact(make_artifact(fixtures_dir, "fix"), triggered_by="ci")
    release = Release(app="frontend-fix", env="preview", artifactId="x", triggeredBy="policy")
    write = PlannedWrite("repo", "preview", "frontend-fix", {}, release)
    any_store.plan_event(queued.id, writes=[write], failures=[])
    assert expire_apps(any_store, "repo", now=1000 + 73 * HOUR) == []


def test_an_app_whose_branch_has_an_artifact_not_yet_planned_is_not_idle(
    any_store: Store, fixtures_dir: Path
) -> None:
    """A pull request of its branch was pushed as the ttl ran out: it may release the app."""
    artifact_id = ttl_artifact(any_store, fixtures_dir)
    released(any_store, artifact_id, "1" * 40, at=1000)
    pull_request = make_artifact(fixtures_dir, "fix", "pr")
    pull_request.version.branch = ""  # as some CI systems send it: the branch is the source
    _, pushed = any_store.create_artifact(pull_request, triggered_by="ci")
    assert expire_apps(any_store, "repo", now=1000 + 73 * HOUR) == []
    # Planned, it waits no more here: its writes say whether the app is busy.
    any_store.plan_event(pushed.id, writes=[], failures=[])
    # Unplanned artifacts of other branches, and with no branch, keep no app alive.
    any_store.create_artifact(make_artifact(fixtures_dir, "main"), triggered_by="ci")
    tagged = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    tagged["version"].update(branch="", sourceBranch="", event="tag", tag="v1.0.0")
    any_store.create_artifact(Artifact.model_validate(tagged), triggered_by="ci")
    assert len(expire_apps(any_store, "repo", now=1000 + 73 * HOUR)) == 1


def test_an_artifact_planned_while_the_expiry_looks_keeps_the_app(
    any_store: Store, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned between the expiry's two looks, it is in neither unless they come in order."""
    artifact_id = ttl_artifact(any_store, fixtures_dir)
    released(any_store, artifact_id, "1" * 40, at=1000)
    pull_request = make_artifact(fixtures_dir, "fix", "pr")
    _, pushed = any_store.create_artifact(pull_request, triggered_by="ci")
    release = Release(app="frontend-fix", env="preview", artifactId="x", triggeredBy="policy")
    planned: list[bool] = []

    def planning_right_after(look: Callable[..., bool]) -> Callable[..., bool]:
        def looked(*args: Any, **kwargs: Any) -> bool:
            seen = look(*args, **kwargs)
            if not planned:  # the worker plans the push just after the first look
                write = PlannedWrite("repo", "preview", "frontend-fix", {}, release)
                any_store.plan_event(pushed.id, writes=[write], failures=[])
                planned.append(True)
            return seen

        return looked

    monkeypatch.setattr(any_store, "has_unfinished_writes",
                        planning_right_after(any_store.has_unfinished_writes))  # fmt: skip
    monkeypatch.setattr(any_store, "has_unplanned_releases",
                        planning_right_after(any_store.has_unplanned_releases))  # fmt: skip
    assert expire_apps(any_store, "repo", now=1000 + 73 * HOUR) == []
    assert planned


def test_a_poll_lists_the_repository_and_reports_what_vanished(
    any_store: Store, fixtures_dir: Path, tmp_path: Path
) -> None:
    app_repo = tmp_path / "frontend"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["git", "init", "-q", "-b", "main", str(app_repo)])
    run(["git", "-C", str(app_repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
         "-q", "--allow-empty", "-m", "first"])  # fmt: skip
    run(["git", "-C", str(app_repo), "branch", "feature-x"])
    any_store.create_artifact(
        make_artifact(fixtures_dir, "feature-x"), triggered_by="ci", poll_url=""
    )
    [repo] = any_store.app_repos()
    lister = BranchLister(tmp_path / "cache")
    with pytest.raises(AppRepoError, match="APP_REPOS=mycompany/frontend="):
        poll_app_repo(any_store, repo, url="", lister=lister, clock=time.time)
    assert "no URL to poll" in any_store.app_repos()[0].poll_error
    assert poll_app_repo(any_store, repo, url=str(app_repo), lister=lister, clock=time.time) == []
    run(["git", "-C", str(app_repo), "branch", "-D", "feature-x"])
    [event] = poll_app_repo(any_store, repo, url=str(app_repo), lister=lister, clock=time.time)
    assert (event.branch, event.triggered_by) == ("feature-x", "branch-poll")
    assert any_store.app_repos()[0].poll_error == ""
