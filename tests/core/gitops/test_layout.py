"""The GitOps repository's conventions: paths, release records, messages, trailers."""

from __future__ import annotations

import json

import pytest

from gimletd.gitops import layout
from gimletd.gitops.layout import public_repo_url
from gimletd.models import Release


def release(**overrides: str) -> Release:
    fields = {"app": "frontend", "env": "staging", "artifactId": "a-1", "triggeredBy": "policy"}
    return Release.model_validate({**fields, **overrides})


@pytest.mark.parametrize(
    ("env", "app"),
    [("../etc", "x"), ("prod/x", "y"), ("staging", ""), ("Staging", "web"), ("staging", "a..b")],
)
def test_app_dir_refuses_names_that_are_not_labels(env: str, app: str) -> None:
    with pytest.raises(ValueError, match=r"DNS-1123|must not be empty"):
        layout.app_dir(env, app)


def test_app_dir_joins_env_and_app() -> None:
    assert layout.app_dir("staging", "frontend") == "staging/frontend"


def test_release_json_is_stable_and_readable_by_old_clients() -> None:
    content = layout.release_json(release())
    assert content == layout.release_json(release())
    data = json.loads(content)
    assert data["artifactId"] == "a-1"
    assert data["triggeredBy"] == "policy"
    assert content.endswith(b"\n")


@pytest.mark.parametrize("name", ["release.json", "a/b.yaml", "", ".."])
def test_app_files_refuse_reserved_or_nested_names(name: str) -> None:
    with pytest.raises(ValueError):
        layout.app_files({name: b"x"}, release())


def test_app_files_add_the_release_record() -> None:
    files = layout.app_files({"deployment-frontend.yaml": b"kind: Deployment\n"}, release())
    assert set(files) == {"deployment-frontend.yaml", "release.json"}


def trailers(triggered_by: str = "policy") -> layout.CommitTrailers:
    return layout.CommitTrailers("ev-1", "art-1", triggered_by, "staging", "frontend")


def test_policy_deploys_and_manual_releases_have_the_original_subjects() -> None:
    policy = layout.deploy_message("staging", "frontend", "policy", trailers())
    manual = layout.deploy_message("staging", "frontend", "laszlo", trailers("laszlo"))
    assert policy.splitlines()[0] == "[Gimlet] staging/frontend automated deploy"
    assert manual.splitlines()[0] == "[Gimlet] staging/frontend release by laszlo"


def test_trailers_round_trip_and_identify_the_write() -> None:
    message = layout.deploy_message("staging", "frontend", "policy", trailers())
    parsed = layout.parse_trailers(message)
    assert parsed["Gimlet-Event"] == "ev-1"
    assert parsed["Gimlet-Artifact"] == "art-1"
    assert parsed["Gimlet-Triggered-By"] == "policy"
    assert layout.is_commit_of(message, "ev-1", "staging", "frontend")
    assert not layout.is_commit_of(message, "ev-2", "staging", "frontend")
    assert not layout.is_commit_of(message, "ev-1", "prod", "frontend")


def test_a_trailer_value_cannot_add_lines() -> None:
    """A login with a newline must not forge a second trailer."""
    message = layout.deploy_message(
        "staging", "frontend", "evil\nGimlet-Event: forged", trailers("evil\nGimlet-Event: forged")
    )
    assert layout.parse_trailers(message)["Gimlet-Event"] == "ev-1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:token@git.example.com/org/gitops.git", "https://git.example.com/org/gitops.git"),
        ("https://git.example.com/org/gitops.git", "https://git.example.com/org/gitops.git"),
        ("ssh://git@git.example.com/org/gitops.git", "ssh://git@git.example.com/org/gitops.git"),
        ("ssh://deploy:pass@git.example.com:2222/gitops.git", "ssh://deploy@git.example.com:2222/gitops.git"),
        ("git@github.com:org/gitops.git", "git@github.com:org/gitops.git"),
        ("/srv/git/gitops.git", "/srv/git/gitops.git"),
    ],
)  # fmt: skip
def test_a_repository_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert public_repo_url(url) == shown
