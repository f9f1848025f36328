"""Application repositories: the URL derived from artifacts, and their branches, listed for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gimletd.app_repos import BranchLister, app_repo_url, needs_branch_polling
from gimletd.errors import AppRepoError
from gimletd.models import Artifact
from tests.support.gitdaemon import Remote


def artifact(
    repository: str = "", url: str = "", cleanup: dict[str, str] | None = None
) -> Artifact:
    environment = {"app": "a", "env": "preview"} | ({"cleanup": cleanup} if cleanup else {})
    return Artifact.model_validate(
        {"version": {"repositoryName": repository, "url": url}, "environments": [environment]}
    )


@pytest.mark.parametrize(
    ("repository", "url", "expected"),
    [
        ("mycompany/frontend", "https://github.com/mycompany/frontend/commit/deae5dbaf237",
         "https://github.com/mycompany/frontend.git"),
        ("frontend", "https://gitlab.example.com/group/sub/frontend/-/commit/deae5dbaf237",
         "https://gitlab.example.com/group/sub/frontend.git"),
        ("frontend", "https://bitbucket.org/team/frontend/commits/deae5dbaf237",
         "https://bitbucket.org/team/frontend.git"),
        ("mycompany/frontend", "", "https://github.com/mycompany/frontend.git"),
        ("mycompany/frontend", "http://insecure.example.com/a/b/commit/deae5dbaf237",
         "https://github.com/mycompany/frontend.git"),
        ("frontend", "", ""),
        ("../../etc", "", ""),
    ],
)  # fmt: skip
def test_the_url_is_derived_from_the_commit_url_or_a_github_name(
    repository: str, url: str, expected: str
) -> None:
    assert app_repo_url(artifact(repository, url)) == expected


def test_only_artifacts_with_an_event_cleanup_policy_need_polling() -> None:
    assert needs_branch_polling(artifact(cleanup={"app": "a", "event": "prClosed", "branch": "*"}))
    assert not needs_branch_polling(artifact(cleanup={"ttl": "72h"}))
    assert not needs_branch_polling(artifact())


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    path = tmp_path / "frontend"
    git("init", "-q", "-b", "main", str(path))
    git("-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
        "--allow-empty", "-m", "first")  # fmt: skip
    git("-C", str(path), "branch", "feature/login")
    git("-C", str(path), "tag", "v1")
    return path


def test_branches_are_listed_from_a_path_and_a_file_url(app_repo: Path, tmp_path: Path) -> None:
    lister = BranchLister(tmp_path / "cache")
    assert lister.branches(str(app_repo)) == {"main", "feature/login"}
    git("-C", str(app_repo), "branch", "-D", "feature/login")
    assert lister.branches(f"file://{app_repo}") == {"main"}


def test_a_repository_that_cannot_be_listed_is_an_error(tmp_path: Path) -> None:
    lister = BranchLister(tmp_path / "cache")
    with pytest.raises(AppRepoError, match="cannot list the branches"):
        lister.branches(str(tmp_path / "missing"))


def test_an_empty_listing_is_not_trusted(tmp_path: Path) -> None:
    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(empty))
    with pytest.raises(AppRepoError, match="lists no branches"):
        BranchLister(tmp_path / "cache").branches(str(empty))


def test_the_token_goes_only_to_the_hosts_it_is_for(git_http: Remote, tmp_path: Path) -> None:
    """An artifact names the URL polled: the token must not follow it to any host."""
    empty_tree = subprocess.run(
        ["git", "--git-dir", str(git_http.bare), "mktree"], input=b"", capture_output=True,
        check=True,
    ).stdout.decode().strip()  # fmt: skip
    commit = subprocess.run(
        ["git", "--git-dir", str(git_http.bare), "-c", "user.name=t", "-c", "user.email=t@t",
         "commit-tree", empty_tree, "-m", "first"], capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip
    git("--git-dir", str(git_http.bare), "update-ref", "refs/heads/main", commit)
    token = git_http.token
    assert token is not None
    withheld = BranchLister(tmp_path / "cache", token=token)
    with pytest.raises(AppRepoError, match="asks for credentials"):
        withheld.branches(git_http.url)
    allowed = BranchLister(tmp_path / "cache", token=token, token_hosts=frozenset({"127.0.0.1"}))
    assert allowed.branches(git_http.url) == {"main"}
    in_url = git_http.url.replace("http://", f"http://x-access-token:{token}@")
    assert BranchLister(tmp_path / "cache").branches(in_url) == {"main"}
