"""Which preview apps a deleted branch, a closed pull request or an expired ttl removes. Pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gimletd.cleanup import plan_cleanup, release_ttl
from gimletd.models import Artifact, CleanupEvent, WriteKind


def preview_artifact(
    fixtures_dir: Path, branch: str, cleanup: dict[str, Any], artifact_id: str = "a-1"
) -> Artifact:
    """The restored seed artifact built from `branch`, its preview env cleaned up by `cleanup`."""
    data = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    data["id"] = artifact_id
    data["version"].update(branch=branch, sourceBranch=branch)
    data["context"].update(BRANCH=branch, CIRCLE_BRANCH=branch)
    data["environments"][1]["cleanup"] = cleanup
    return Artifact.model_validate(data)


def deletes(
    artifacts: list[Artifact], event: CleanupEvent, branch: str
) -> list[tuple[str, str, str]]:
    plan = plan_cleanup(
        artifacts, event=event, branch=branch, event_id="e1",
        gitops_repo_for=lambda env: f"repo-of-{env}", now=0,
    )  # fmt: skip
    assert all(write.kind is WriteKind.DELETE for write in plan.writes)
    assert all(write.release.triggered_by == "policy" for write in plan.writes)
    assert not plan.failures, plan.failures
    return [(w.gitops_repo, w.env, w.app) for w in plan.writes]


BRANCH_DELETED = {"app": "frontend-{{ .BRANCH | sanitizeDNSName }}", "event": "branchDeleted"}


def test_a_deleted_branch_deletes_its_preview_app_and_nothing_else(fixtures_dir: Path) -> None:
    artifact = preview_artifact(fixtures_dir, "feature/Login", {**BRANCH_DELETED, "branch": "**"})
    assert deletes([artifact], CleanupEvent.BRANCH_DELETED, "feature/Login") == [
        ("repo-of-preview", "preview", "frontend-feature-login")
    ]


def test_a_negated_glob_keeps_the_app_of_the_branch_it_names(fixtures_dir: Path) -> None:
    policy = {**BRANCH_DELETED, "branch": "!main"}
    main = preview_artifact(fixtures_dir, "main", policy)
    feature = preview_artifact(fixtures_dir, "feature-x", policy)
    assert deletes([main], CleanupEvent.BRANCH_DELETED, "main") == []
    assert deletes([feature], CleanupEvent.BRANCH_DELETED, "feature-x") == [
        ("repo-of-preview", "preview", "frontend-feature-x")
    ]


def test_the_event_must_be_the_policys(fixtures_dir: Path) -> None:
    on_close = {"app": "frontend-{{ .BRANCH }}", "event": "prClosed", "branch": "*"}
    artifact = preview_artifact(fixtures_dir, "fix", on_close)
    assert deletes([artifact], CleanupEvent.BRANCH_DELETED, "fix") == []
    assert deletes([artifact], CleanupEvent.PR_CLOSED, "fix") == [
        ("repo-of-preview", "preview", "frontend-fix")
    ]


def test_an_app_named_by_several_artifacts_is_deleted_once_for_the_newest(
    fixtures_dir: Path,
) -> None:
    policy = {**BRANCH_DELETED, "branch": "*"}
    newest = preview_artifact(fixtures_dir, "fix", policy, artifact_id="new")
    older = preview_artifact(fixtures_dir, "fix", policy, artifact_id="old")
    renamed = preview_artifact(
        fixtures_dir, "fix", {**policy, "app": "old-{{ .BRANCH }}"}, "oldest"
    )
    plan = plan_cleanup(
        [newest, older, renamed], event=CleanupEvent.BRANCH_DELETED, branch="fix",
        event_id="e1", gitops_repo_for=lambda env: "repo", now=0,
    )  # fmt: skip
    assert [(w.app, w.release.artifact_id) for w in plan.writes] == [
        ("frontend-fix", "new"),
        ("old-fix", "oldest"),
    ]


def test_a_policy_whose_app_does_not_resolve_fails_that_environment_only(
    fixtures_dir: Path,
) -> None:
    artifact = preview_artifact(
        fixtures_dir,
        "fix",
        {"app": "Frontend_{{ .BRANCH }}", "event": "branchDeleted", "branch": "*"},
    )
    data = artifact.to_json()
    data["environments"].append(
        {**data["environments"][1], "app": "api-{{ .BRANCH }}",
         "cleanup": {"app": "api-{{ .BRANCH }}", "event": "branchDeleted", "branch": "*"}}
    )  # fmt: skip
    plan = plan_cleanup(
        [Artifact.model_validate(data)] * 2, event=CleanupEvent.BRANCH_DELETED, branch="fix",
        event_id="e1", gitops_repo_for=lambda env: "repo", now=0,
    )  # fmt: skip
    assert [(w.env, w.app) for w in plan.writes] == [("preview", "api-fix")]
    assert len(plan.failures) == 1, "the same broken policy is reported once"
    assert "DNS-1123" in plan.failures[0].reason


@pytest.mark.parametrize(
    ("ttl", "app", "expected"),
    [
        ("72h", "frontend-fix", 72 * 3600.0),
        ("72h", "frontend-other", None),
        (None, "frontend-fix", None),
    ],
)
def test_release_ttl_is_the_ttl_of_the_config_that_released_the_app(
    fixtures_dir: Path, ttl: str | None, app: str, expected: float | None
) -> None:
    cleanup = {**BRANCH_DELETED, "branch": "*"} | ({"ttl": ttl} if ttl else {})
    artifact = preview_artifact(fixtures_dir, "fix", cleanup)
    assert release_ttl(artifact, "preview", app) == expected
    assert release_ttl(artifact, "staging", "frontend") is None
