"""An artifact's template variables: CI's context and items first, built-ins from its version."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gimletd.models import Artifact, Version
from gimletd.variables import BUILTIN_VARIABLES, artifact_variables
from tests.conftest import SHARED

SEED_ARTIFACT = SHARED / "fixtures" / "seed-artifact-restored.json"

VERSION = {
    "repositoryName": "mycompany/frontend",
    "sha": "abc123",
    "branch": "feature/x",
    "event": "pr",
    "sourceBranch": "feature/x",
    "targetBranch": "main",
    "tag": "v1.0.0",
    "authorName": "Ann Author",
    "authorEmail": "ann@example.com",
    "committerName": "Cid Committer",
    "committerEmail": "cid@example.com",
    "message": "Add login page",
    "url": "https://example.com/commit/abc123",
}


def artifact(
    version: dict[str, Any] | None = None,
    context: dict[str, str] | None = None,
    items: list[dict[str, Any]] | None = None,
) -> Artifact:
    return Artifact.model_validate(
        {"version": version or {}, "context": context or {}, "items": items or []}
    )


def test_builtins_from_version() -> None:
    """Each documented built-in comes from its version field."""
    assert artifact_variables(artifact(VERSION)) == {
        "BRANCH": "feature/x",
        "SHA": "abc123",
        "TAG": "v1.0.0",
        "REPO": "mycompany/frontend",
        "EVENT": "pr",
        "SOURCE_BRANCH": "feature/x",
        "TARGET_BRANCH": "main",
        "AUTHOR": "Ann Author",
        "AUTHOR_EMAIL": "ann@example.com",
        "COMMITTER": "Cid Committer",
        "COMMIT_MESSAGE": "Add login page",
        "COMMIT_URL": "https://example.com/commit/abc123",
    }


def test_builtins_name_version_fields() -> None:
    """Every built-in names a real Version field, so none silently stays unset."""
    for name, attribute in BUILTIN_VARIABLES.items():
        assert attribute in Version.model_fields, name


def test_empty_version_fields_set_no_builtin() -> None:
    """A built-in is set only when its version field is non-empty."""
    variables = artifact_variables(artifact({"sha": "abc", "branch": ""}))
    assert variables == {"SHA": "abc"}


@pytest.mark.parametrize(
    ("context", "items", "expected"),
    [
        ({"BRANCH": "from-ci"}, [], {"BRANCH": "from-ci"}),
        ({"BRANCH": ""}, [], {"BRANCH": ""}),
        ({}, [{"BRANCH": "from-item"}], {"BRANCH": "from-item"}),
        ({"BRANCH": "ctx"}, [{"BRANCH": "item"}], {"BRANCH": "item"}),
        ({}, [{"X": "first"}, {"X": "second"}], {"X": "second"}),
        ({"X": "ctx"}, [{"X": 5, "Y": ["a"], "Z": {"a": "b"}, "N": None}], {"X": "ctx"}),
    ],
)
def test_ci_values_win(
    context: dict[str, str], items: list[dict[str, Any]], expected: dict[str, str]
) -> None:
    """Items override the context (later items win), only strings count, built-ins never win."""
    variables = artifact_variables(artifact({"branch": "from-version"}, context, items))
    for name, value in expected.items():
        assert variables[name] == value
    assert set(variables) == set(expected) | {"BRANCH"}


def test_seed_artifact_variables() -> None:
    """The seed artifact's context, items and version all become variables."""
    data = json.loads(SEED_ARTIFACT.read_text())
    data["version"]["branch"] = "from-version"
    variables = artifact_variables(Artifact.model_validate(data))
    assert variables["CIRCLE_SHA1"] == "deae5dbaf237766240181fa397e923d3c5253112"
    assert variables["BRANCH"] == "new-feature", "CI's context wins over the version"
    assert variables["name"] == "docker-image", "the last item wins"
    assert variables["url"] == "mycompany/frontend:deae5dbaf237766240181fa397e923d3c5253112"
    assert variables["EVENT"] == "pr"
    assert variables["REPO"] == "mycompany/frontend"
    assert "TAG" not in variables


def test_variables_do_not_alias_the_artifact() -> None:
    """The returned dict is new: changing it leaves the artifact's context alone."""
    source = artifact(context={"A": "1"})
    artifact_variables(source)["A"] = "2"
    assert source.context == {"A": "1"}
