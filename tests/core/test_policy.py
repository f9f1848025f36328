"""Deploy and cleanup policies: globs with `!`, events, and the checks made on arrival."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gimletd.errors import PolicyError
from gimletd.models import Artifact, CleanupEvent, CleanupPolicy, DeployPolicy, Version
from gimletd.policy import (
    check_cleanup_policy,
    check_deploy_policy,
    cleanup_matches,
    deploy_matches,
    glob_matches,
)
from tests.conftest import SHARED

SEED_ARTIFACT = SHARED / "fixtures" / "seed-artifact-restored.json"


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("main", "main", True),
        ("main", "main2", False),
        ("main", "", False),
        ("", "", True),
        ("*", "main", True),
        ("*", "", True),
        ("*", "feature/x", False),
        ("**", "feature/x", True),
        ("feature/*", "feature/x", True),
        ("feature/*", "feature/x/y", False),
        ("feature/**", "feature/x/y", True),
        ("feature/**", "feature/", True),
        ("**/x", "a/b/x", True),
        ("*/x", "a/b/x", False),
        ("release-*", "release-1.2", True),
        ("release-*", "hotfix-1.2", False),
        ("v?.?", "v1.2", True),
        ("v?.?", "v1.23", False),
        ("a?b", "a/b", False),
        ("v[0-9]*", "v1.0.0", True),
        ("v[0-9]*", "vx", False),
        ("[!m]*", "dev", True),
        ("[!m]*", "main", False),
        ("[^m]*", "main", False),
        ("a[!x]b", "a/b", False),
        ("[]]", "]", True),
        ("[!]]", "a", True),
        ("[a-]", "-", True),
        ("a.b", "aXb", False),
        ("a+b(c)", "a+b(c)", True),
        ("^main$", "^main$", True),
        ("\\*", "*", True),
        ("\\*", "x", False),
        ("!main", "main", False),
        ("!main", "feature", True),
        ("!main", "", True),
        ("!feature/*", "feature/x", False),
        ("!feature/*", "feature/x/y", True),
        ("!!main", "!main", False),
        ("!!main", "main", True),
        ("a!b", "a!b", True),
    ],
)
def test_glob_matches(pattern: str, value: str, expected: bool) -> None:
    """`*` stops at '/', `**` does not, classes and a leading '!' work, the rest is literal."""
    assert glob_matches(pattern, value) is expected


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("*a*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 4000),
        ("**a**a**a**a**a**a**a**a**b", "a/" * 2000),
        ("!" + "?*" * 500 + "b", "a" * 4000),
    ],
)
def test_glob_matching_does_not_backtrack(pattern: str, value: str) -> None:
    """Patterns that make a backtracking regex run for hours answer at once."""
    assert glob_matches(pattern, value) is pattern.startswith("!")


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("[a", "no closing ']'"),
        ("v[0-9", "no closing ']'"),
        ("[!", "no closing ']'"),
        ("[]", "no closing ']'"),
        ("!release-[", "no closing ']'"),
        ("[z-a]", "range z-a is reversed; write a-z"),
        ("abc\\", "ends with '\\'"),
    ],
)
def test_malformed_globs(pattern: str, fragment: str) -> None:
    """A malformed glob is a PolicyError that says how to fix it."""
    with pytest.raises(PolicyError) as info:
        glob_matches(pattern, "x")
    assert fragment in str(info.value)


def version(**fields: Any) -> Version:
    return Version.model_validate(fields)


PUSH_MAIN = version(event="push", branch="main")
PUSH_FEATURE = version(event="push", branch="feature/x")
PR_FEATURE = version(event="pr", branch="feature/x", sourceBranch="feature/x", targetBranch="main")
PR_SOURCE_ONLY = version(event="pr", sourceBranch="feature/x", targetBranch="main")
PR_MAIN = version(event="pr", branch="main")
TAG_RELEASE = version(event="tag", tag="v1.2.0")
TAG_RC = version(event="tag", tag="v1.3.0-rc1")
NO_EVENT = version(branch="main")
PUSH_NO_BRANCH = version(event="push")


@pytest.mark.parametrize(
    ("policy", "subject", "expected"),
    [
        pytest.param(None, PUSH_MAIN, False, id="no policy: on request only"),
        pytest.param({}, PUSH_MAIN, False, id="empty policy"),
        pytest.param({"branch": "main"}, NO_EVENT, False, id="version without event"),
        pytest.param({"branch": "main"}, PUSH_MAIN, True, id="branch on push"),
        pytest.param({"branch": "main"}, PR_MAIN, True, id="branch on pr"),
        pytest.param({"branch": "main"}, PUSH_FEATURE, False, id="other branch"),
        pytest.param({"branch": "main"}, TAG_RELEASE, False, id="branch policy ignores tags"),
        pytest.param({"branch": "main", "event": "push"}, PR_MAIN, False, id="event must match"),
        pytest.param({"branch": "main", "event": "push"}, PUSH_MAIN, True, id="branch and event"),
        pytest.param(
            {"branch": "feature/*"}, PR_SOURCE_ONLY, True, id="pr falls back to source branch"
        ),
        pytest.param({"branch": "feature/*"}, PUSH_FEATURE, True, id="star within a segment"),
        pytest.param({"branch": "*"}, PUSH_FEATURE, False, id="star stops at slash"),
        pytest.param({"branch": "**"}, PUSH_FEATURE, True, id="globstar crosses slash"),
        pytest.param(
            {"branch": "!main", "event": "pr"}, PR_FEATURE, True, id="!main pr from feature"
        ),
        pytest.param(
            {"branch": "!main", "event": "pr"}, PR_SOURCE_ONLY, True, id="!main pr source branch"
        ),
        pytest.param({"branch": "!main", "event": "pr"}, PR_MAIN, False, id="!main pr from main"),
        pytest.param(
            {"branch": "!main", "event": "pr"}, PUSH_FEATURE, False, id="!main pr, push event"
        ),
        pytest.param({"branch": "!main"}, PUSH_NO_BRANCH, False, id="negation needs a branch"),
        pytest.param({"event": "push"}, PUSH_FEATURE, True, id="event only: every push"),
        pytest.param({"event": "push"}, PR_FEATURE, False, id="event only: other events"),
        pytest.param({"event": "tag"}, TAG_RC, True, id="event only: every tag"),
        pytest.param({"tag": "v*"}, TAG_RELEASE, True, id="tag glob"),
        pytest.param({"tag": "v*"}, PUSH_MAIN, False, id="tag policy ignores pushes"),
        pytest.param({"tag": "!*-rc*"}, TAG_RELEASE, True, id="negated tag: release"),
        pytest.param({"tag": "!*-rc*"}, TAG_RC, False, id="negated tag: release candidate"),
        pytest.param({"tag": "!*-rc*", "event": "tag"}, TAG_RC, False, id="negated tag with event"),
        pytest.param({"tag": "!v*"}, version(event="tag"), False, id="negated tag needs a tag"),
        pytest.param({"branch": "main", "tag": "v*"}, PUSH_MAIN, True, id="branch or tag: branch"),
        pytest.param({"branch": "main", "tag": "v*"}, TAG_RELEASE, True, id="branch or tag: tag"),
        pytest.param(
            {"branch": "main", "tag": "v*"}, PUSH_FEATURE, False, id="branch or tag: neither"
        ),
    ],
)
def test_deploy_matches(policy: dict[str, Any] | None, subject: Version, expected: bool) -> None:
    """Branch globs apply to push and pr, tag globs to tags, and a given event must match."""
    deploy = None if policy is None else DeployPolicy.model_validate(policy)
    assert deploy_matches(deploy, subject) is expected


def test_seed_artifact_policies() -> None:
    """The seed pr artifact goes to preview (`!main`, pr) and not to staging (main, push)."""
    artifact = Artifact.model_validate(json.loads(SEED_ARTIFACT.read_text()))
    staging, preview = artifact.environments
    assert not deploy_matches(staging.deploy, artifact.version)
    assert deploy_matches(preview.deploy, artifact.version)
    for manifest in artifact.environments:
        check_deploy_policy(manifest.deploy)
        check_cleanup_policy(manifest.cleanup)


@pytest.mark.parametrize(
    "policy",
    [
        None,
        {},
        {"branch": "main"},
        {"branch": "!main", "event": "pr"},
        {"tag": "!*-rc*", "event": "tag"},
        {"branch": "main", "tag": "v*"},
        {"event": "push"},
    ],
)
def test_check_deploy_policy_accepts(policy: dict[str, Any] | None) -> None:
    """Well-formed deploy policies pass the check."""
    check_deploy_policy(None if policy is None else DeployPolicy.model_validate(policy))


@pytest.mark.parametrize(
    ("policy", "fragments"),
    [
        ({"branch": "feature/[x"}, ["deploy.branch", "no closing ']'"]),
        ({"tag": "!v[2-1]"}, ["deploy.tag", "reversed"]),
        ({"branch": "main", "event": "tag"}, ["never applies with event 'tag'", "deploy.tag"]),
        ({"tag": "v*", "event": "push"}, ["never applies with event 'push'", "deploy.branch"]),
        ({"tag": "v*", "event": "pr"}, ["never applies with event 'pr'"]),
    ],
)
def test_check_deploy_policy_refuses(policy: dict[str, Any], fragments: list[str]) -> None:
    """Malformed globs and contradictions are refused with a message saying how to fix them."""
    with pytest.raises(PolicyError) as info:
        check_deploy_policy(DeployPolicy.model_validate(policy))
    for fragment in fragments:
        assert fragment in str(info.value)


PREVIEW_APP = "frontend-{{ .BRANCH | sanitizeDNSName }}"


@pytest.mark.parametrize(
    ("policy", "event", "branch", "expected"),
    [
        pytest.param(None, "branchDeleted", "x", False, id="no policy"),
        pytest.param(
            {"event": "branchDeleted", "branch": "*"}, "branchDeleted", "x", True, id="any"
        ),
        pytest.param(
            {"event": "branchDeleted", "branch": "*"}, "prClosed", "x", False, id="other event"
        ),
        pytest.param({"event": "prClosed", "branch": "*"}, "prClosed", "x", True, id="pr closed"),
        pytest.param({"branch": "*"}, "branchDeleted", "x", False, id="no event"),
        pytest.param({"event": "branchDeleted"}, "branchDeleted", "x", False, id="no branch glob"),
        pytest.param(
            {"event": "branchDeleted", "branch": "*"}, "branchDeleted", "", False, id="no branch"
        ),
        pytest.param(
            {"event": "branchDeleted", "branch": "*"}, "branchDeleted", "a/b", False, id="* no /"
        ),
        pytest.param(
            {"event": "branchDeleted", "branch": "**"}, "branchDeleted", "a/b", True, id="** /"
        ),
        pytest.param(
            {"event": "branchDeleted", "branch": "!main"}, "branchDeleted", "main", False, id="!m"
        ),
        pytest.param(
            {"event": "branchDeleted", "branch": "!main"}, "branchDeleted", "fix", True, id="!m x"
        ),
        pytest.param(
            {"event": "prClosed", "branch": "!release-*"}, "prClosed", "release-1", False, id="!r"
        ),
        pytest.param(
            {"event": "prClosed", "branch": "!release-*"}, "prClosed", "feature", True, id="!r x"
        ),
        pytest.param(
            {"event": "branchDeleted", "branch": "!main"}, "branchDeleted", "", False, id="!m ''"
        ),
    ],
)
def test_cleanup_matches(
    policy: dict[str, Any] | None, event: str, branch: str, expected: bool
) -> None:
    """The event must equal the policy's and the branch match its glob, negated ones too."""
    cleanup = None if policy is None else CleanupPolicy.model_validate(policy)
    assert cleanup_matches(cleanup, CleanupEvent(event), branch) is expected


@pytest.mark.parametrize(
    "policy",
    [
        None,
        {"app": PREVIEW_APP, "event": "branchDeleted", "branch": "*"},
        {"app": PREVIEW_APP, "event": "prClosed", "branch": "!main"},
        {"app": "static-preview", "event": "prClosed", "branch": "feature/**"},
        {"ttl": "72h"},
        {"app": PREVIEW_APP, "event": "branchDeleted", "branch": "*", "ttl": "7d"},
    ],
)
def test_check_cleanup_policy_accepts(policy: dict[str, Any] | None) -> None:
    """Well-formed cleanup policies pass the check."""
    check_cleanup_policy(None if policy is None else CleanupPolicy.model_validate(policy))


@pytest.mark.parametrize(
    ("policy", "fragments"),
    [
        ({"app": PREVIEW_APP, "event": "branchDeleted", "branch": "[a"}, ["cleanup.branch"]),
        ({"app": PREVIEW_APP, "branch": "*"}, ["cleanup.event", "branchDeleted or prClosed"]),
        ({"app": PREVIEW_APP, "event": "prClosed"}, ["cleanup.branch", "'*'"]),
        ({"event": "prClosed", "branch": "*"}, ["cleanup.app is missing"]),
        ({"app": "x-{{ .SHA }}", "event": "prClosed", "branch": "*"}, ["uses SHA", "BRANCH"]),
        ({"app": "x-{{ .BRANCH", "event": "prClosed", "branch": "*"}, ["not a valid template"]),
        ({"ttl": "three days"}, ["cleanup.ttl", "72h"]),
        ({"ttl": "0h"}, ["cleanup.ttl", "longer than zero"]),
        ({"app": PREVIEW_APP, "event": "prClosed", "branch": "*", "ttl": "-1h"}, ["cleanup.ttl"]),
    ],
)
def test_check_cleanup_policy_refuses(policy: dict[str, Any], fragments: list[str]) -> None:
    """Cleanup policies that cannot compile or never apply are refused, saying how to fix them."""
    with pytest.raises(PolicyError) as info:
        check_cleanup_policy(CleanupPolicy.model_validate(policy))
    for fragment in fragments:
        assert fragment in str(info.value)
