"""What CI a command runs in, and the version and variables it tells about the commit. Pure.

Supported: GitHub Actions, GitLab CI, CircleCI, Jenkins and Drone. Each gives
the artifact's `version` fields and the CI's own variables for its `context`,
less anything that looks like a credential.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Variables never copied into an artifact, whatever CI set them.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|NETRC|_KEY$|^KEY")
_GIT_URL = re.compile(r"[:/](?P<name>[^/:]+/[^/]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class CiCommit:
    """The commit a CI run builds, as the artifact's `version` and `context`."""

    ci: str
    version: dict[str, Any]
    context: dict[str, str] = field(default_factory=dict)


def detect(env: Mapping[str, str]) -> CiCommit | None:
    """The CI `env` comes from (an environment such as `os.environ`); None outside CI."""
    for marker, read in _READERS:
        if env.get(marker):
            return read(env)
    return None


def _context(env: Mapping[str, str], *prefixes: str) -> dict[str, str]:
    return {
        name: value
        for name, value in sorted(env.items())
        if name.startswith(prefixes) and not SECRET_NAME.search(name)
    }


def _compact(version: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in version.items() if value not in (None, "")}


def _name_of(url: str) -> str:
    """`owner/repo` of a clone URL, "" when it has no such path."""
    match = _GIT_URL.search(url or "")
    return match.group("name") if match else ""


def _github(env: Mapping[str, str]) -> CiCommit:
    repository, sha = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_SHA", "")
    ref = env.get("GITHUB_REF", "")
    event_name = env.get("GITHUB_EVENT_NAME", "")
    payload = _json_file(env.get("GITHUB_EVENT_PATH", ""))
    version: dict[str, Any] = {"repositoryName": repository, "sha": sha}
    if event_name.startswith("pull_request"):
        head = payload.get("pull_request", {}).get("head", {})
        version |= {
            "event": "pr",
            "sha": head.get("sha") or sha,
            "branch": env.get("GITHUB_HEAD_REF", ""),
            "sourceBranch": env.get("GITHUB_HEAD_REF", ""),
            "targetBranch": env.get("GITHUB_BASE_REF", ""),
        }
    elif ref.startswith("refs/tags/"):
        version |= {"event": "tag", "tag": ref.removeprefix("refs/tags/")}
    else:
        version |= {"event": "push", "branch": ref.removeprefix("refs/heads/")}
    commit = payload.get("head_commit") or {}
    author = commit.get("author") or {}
    version |= {
        "message": commit.get("message", ""),
        "authorName": author.get("name") or env.get("GITHUB_ACTOR", ""),
        "authorEmail": author.get("email", ""),
        "url": f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{repository}/commit/"
        f"{version['sha']}",
    }
    return CiCommit("GitHub Actions", _compact(version), _context(env, "GITHUB_", "RUNNER_"))


def _gitlab(env: Mapping[str, str]) -> CiCommit:
    sha = env.get("CI_COMMIT_SHA", "")
    author = re.match(r"^(?P<name>.*?)\s*<(?P<email>[^>]*)>$", env.get("CI_COMMIT_AUTHOR", ""))
    version: dict[str, Any] = {
        "repositoryName": env.get("CI_PROJECT_PATH", ""),
        "sha": sha,
        "message": env.get("CI_COMMIT_MESSAGE", ""),
        "authorName": author.group("name") if author else "",
        "authorEmail": author.group("email") if author else "",
        "url": f"{env['CI_PROJECT_URL']}/-/commit/{sha}" if env.get("CI_PROJECT_URL") else "",
    }
    source = env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "")
    if source:
        version |= {
            "event": "pr",
            "branch": source,
            "sourceBranch": source,
            "targetBranch": env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", ""),
        }
    elif env.get("CI_COMMIT_TAG"):
        version |= {"event": "tag", "tag": env["CI_COMMIT_TAG"]}
    else:
        version |= {"event": "push", "branch": env.get("CI_COMMIT_BRANCH", "")}
    return CiCommit("GitLab CI", _compact(version), _context(env, "CI_", "GITLAB_"))


def _circleci(env: Mapping[str, str]) -> CiCommit:
    owner, name = env.get("CIRCLE_PROJECT_USERNAME", ""), env.get("CIRCLE_PROJECT_REPONAME", "")
    sha = env.get("CIRCLE_SHA1", "")
    version: dict[str, Any] = {
        "repositoryName": f"{owner}/{name}" if owner and name else "",
        "sha": sha,
        "authorName": env.get("CIRCLE_USERNAME", ""),
    }
    if env.get("CIRCLE_TAG"):
        version |= {"event": "tag", "tag": env["CIRCLE_TAG"]}
    elif env.get("CIRCLE_PULL_REQUEST"):
        branch = env.get("CIRCLE_BRANCH", "")
        version |= {"event": "pr", "branch": branch, "sourceBranch": branch}
    else:
        version |= {"event": "push", "branch": env.get("CIRCLE_BRANCH", "")}
    if owner and name and "github" in env.get("CIRCLE_REPOSITORY_URL", ""):
        version["url"] = f"https://github.com/{owner}/{name}/commit/{sha}"
    return CiCommit("CircleCI", _compact(version), _context(env, "CIRCLE_"))


def _jenkins(env: Mapping[str, str]) -> CiCommit:
    version: dict[str, Any] = {
        "repositoryName": _name_of(env.get("GIT_URL", "")),
        "sha": env.get("GIT_COMMIT", ""),
        "authorName": env.get("GIT_AUTHOR_NAME", ""),
        "authorEmail": env.get("GIT_AUTHOR_EMAIL", ""),
    }
    if env.get("CHANGE_ID"):
        branch = env.get("CHANGE_BRANCH", "")
        version |= {
            "event": "pr",
            "branch": branch,
            "sourceBranch": branch,
            "targetBranch": env.get("CHANGE_TARGET", ""),
        }
    elif env.get("TAG_NAME"):
        version |= {"event": "tag", "tag": env["TAG_NAME"]}
    else:
        branch = env.get("BRANCH_NAME") or env.get("GIT_BRANCH", "").removeprefix("origin/")
        version |= {"event": "push", "branch": branch}
    context = _context(env, "BUILD_", "JOB_", "GIT_", "BRANCH_", "CHANGE_", "TAG_")
    return CiCommit("Jenkins", _compact(version), context)


def _drone(env: Mapping[str, str]) -> CiCommit:
    event = env.get("DRONE_BUILD_EVENT", "push")
    version: dict[str, Any] = {
        "repositoryName": env.get("DRONE_REPO", ""),
        "sha": env.get("DRONE_COMMIT_SHA", ""),
        "message": env.get("DRONE_COMMIT_MESSAGE", ""),
        "authorName": env.get("DRONE_COMMIT_AUTHOR_NAME", ""),
        "authorEmail": env.get("DRONE_COMMIT_AUTHOR_EMAIL", ""),
        "url": env.get("DRONE_COMMIT_LINK", ""),
    }
    if event == "pull_request":
        branch = env.get("DRONE_SOURCE_BRANCH", "")
        version |= {
            "event": "pr",
            "branch": branch,
            "sourceBranch": branch,
            "targetBranch": env.get("DRONE_TARGET_BRANCH", ""),
        }
    elif event == "tag":
        version |= {"event": "tag", "tag": env.get("DRONE_TAG", "")}
    else:
        version |= {"event": "push", "branch": env.get("DRONE_COMMIT_BRANCH", "")}
    return CiCommit("Drone", _compact(version), _context(env, "DRONE_", "CI_"))


def _json_file(path: str) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_READERS: tuple[tuple[str, Callable[[Mapping[str, str]], CiCommit]], ...] = (
    ("GITHUB_ACTIONS", _github),
    ("GITLAB_CI", _gitlab),
    ("CIRCLECI", _circleci),
    ("DRONE", _drone),
    ("JENKINS_URL", _jenkins),
)
