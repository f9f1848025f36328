"""CI detection from the environments each supported CI sets (values as their docs show)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gimlet.ci import detect
from gimlet.main import main

SHA = "deae5dbaf237766240181fa397e923d3c5253112"

ENVIRONMENTS = {
    "GitHub Actions": {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "mycompany/frontend",
        "GITHUB_SHA": SHA,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_ACTOR": "laszlo",
        "GITHUB_RUN_ID": "42",
        "GITHUB_TOKEN": "ghs_secret",
        "RUNNER_OS": "Linux",
    },
    "GitLab CI": {
        "GITLAB_CI": "true",
        "CI_PROJECT_PATH": "mycompany/frontend",
        "CI_COMMIT_SHA": SHA,
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_MESSAGE": "Add checkout\n",
        "CI_COMMIT_AUTHOR": "Laszlo Fogas <laszlo@example.com>",
        "CI_PROJECT_URL": "https://gitlab.com/mycompany/frontend",
        "CI_JOB_TOKEN": "secret",
        "CI_PIPELINE_ID": "7",
    },
    "CircleCI": {
        "CIRCLECI": "true",
        "CIRCLE_PROJECT_USERNAME": "mycompany",
        "CIRCLE_PROJECT_REPONAME": "frontend",
        "CIRCLE_SHA1": SHA,
        "CIRCLE_BRANCH": "main",
        "CIRCLE_USERNAME": "laszlo",
        "CIRCLE_REPOSITORY_URL": "git@github.com:mycompany/frontend.git",
        "CIRCLE_BUILD_NUM": "12",
    },
    "Jenkins": {
        "JENKINS_URL": "https://ci.example.com/",
        "GIT_URL": "https://github.com/mycompany/frontend.git",
        "GIT_COMMIT": SHA,
        "GIT_BRANCH": "origin/main",
        "BUILD_NUMBER": "3",
        "GIT_AUTHOR_NAME": "Laszlo Fogas",
        "JENKINS_API_TOKEN": "secret",
    },
    "Drone": {
        "DRONE": "true",
        "DRONE_REPO": "mycompany/frontend",
        "DRONE_COMMIT_SHA": SHA,
        "DRONE_COMMIT_BRANCH": "main",
        "DRONE_BUILD_EVENT": "push",
        "DRONE_COMMIT_MESSAGE": "Add checkout",
        "DRONE_COMMIT_AUTHOR_NAME": "Laszlo Fogas",
        "DRONE_COMMIT_LINK": f"https://github.com/mycompany/frontend/commit/{SHA}",
        "DRONE_NETRC_PASSWORD": "secret",
        "DRONE_BUILD_NUMBER": "9",
    },
}


@pytest.mark.parametrize("ci", sorted(ENVIRONMENTS))
def test_each_ci_tells_the_commit_and_its_variables_but_no_secret(ci: str) -> None:
    found = detect(ENVIRONMENTS[ci])
    assert found is not None and found.ci == ci
    version = found.version
    assert (version["repositoryName"], version["sha"]) == ("mycompany/frontend", SHA)
    assert (version["event"], version["branch"]) == ("push", "main")
    assert found.context, "the CI's own variables go into context"
    assert "secret" not in json.dumps(found.context)
    assert "ghs_secret" not in json.dumps(found.context)


def test_outside_ci_nothing_is_detected() -> None:
    assert detect({"HOME": "/root", "CI": "true"}) is None


def test_a_github_pull_request_uses_the_head_commit_and_branches(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": "b" * 40}}}))
    found = detect(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_SHA": "a" * 40,
            "GITHUB_REF": "refs/pull/7/merge",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_HEAD_REF": "feature",
            "GITHUB_BASE_REF": "main",
            "GITHUB_EVENT_PATH": str(event),
        }
    )
    assert found is not None
    assert {
        k: found.version[k] for k in ("event", "sha", "branch", "sourceBranch", "targetBranch")
    } == {
        "event": "pr",
        "sha": "b" * 40,
        "branch": "feature",
        "sourceBranch": "feature",
        "targetBranch": "main",
    }


@pytest.mark.parametrize(
    ("env", "tag"),
    [
        ({"GITLAB_CI": "true", "CI_COMMIT_TAG": "v1.2.0"}, "v1.2.0"),
        ({"DRONE": "true", "DRONE_BUILD_EVENT": "tag", "DRONE_TAG": "v2"}, "v2"),
        ({"CIRCLECI": "true", "CIRCLE_TAG": "v3"}, "v3"),
        ({"JENKINS_URL": "x", "TAG_NAME": "v4"}, "v4"),
        ({"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/tags/v5"}, "v5"),
    ],
)
def test_tags_are_tag_events(env: dict[str, str], tag: str) -> None:
    found = detect(env)
    assert found is not None and (found.version["event"], found.version["tag"]) == ("tag", tag)


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_ci_examples_use_commands_and_flags_that_exist(example: str) -> None:
    """Every `gimlet ...` line of the examples names a real command with real flags."""
    text = (Path(__file__).resolve().parents[2] / "docs" / example).read_text()
    yaml.safe_load(text)
    lines = [line for line in text.splitlines() if "gimlet artifact" in line]
    assert lines
    runner = CliRunner()
    for line in lines:
        words = line[line.index("gimlet artifact") :].split()
        help_text = runner.invoke(main, [*words[1:3], "--help"]).output
        for flag in (w for w in words[3:] if w.startswith("-")):
            assert flag in help_text, f"{example}: {words[1:3]} has no {flag}"


def test_wait_ends_when_written_and_with_applied_when_flux_reported() -> None:
    from gimlet.main import _done, succeeded

    written = {
        "status": "processed",
        "results": [
            {"env": "staging", "app": "web", "status": "success", "gitopsCommitStatus": ""}
        ],
    }
    assert _done(written, applied=False) and succeeded(written, applied=False)
    assert not _done(written, applied=True)
    applied = {
        **written,
        "results": [{**written["results"][0], "gitopsCommitStatus": "ReconciliationSucceeded"}],
    }
    assert _done(applied, applied=True) and succeeded(applied, applied=True)
    failed = {
        **written,
        "results": [{**written["results"][0], "gitopsCommitStatus": "HealthCheckFailed"}],
    }
    assert _done(failed, applied=True) and not succeeded(failed, applied=True)
    assert not _done({"status": "new", "results": []}, applied=False)
    assert not succeeded({"status": "error", "results": []}, applied=False)
