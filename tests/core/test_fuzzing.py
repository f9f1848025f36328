"""Property-based fuzzing: hostile artifacts, policies, templates and manifests.

Whatever hypothesis invents, the artifact model, the policies, the templates
and the renderer either do their job or raise their documented error
(pydantic's ValidationError, or a GimletdError with a message); never anything
else, and never a hang.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gimletd.errors import GimletdError
from gimletd.models import Artifact, DeployPolicy, Manifest, Version
from gimletd.policy import check_deploy_policy, deploy_matches, glob_matches
from gimletd.rendering import RenderEngine, render
from gimletd.templating import render_template, resolve_manifest
from gimletd.variables import artifact_variables

FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=40,
)
#: Keys of an artifact, so hypothesis reaches past the top level often.
artifact_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "version": st.dictionaries(
            st.sampled_from(["repositoryName", "sha", "branch", "event", "tag", "url", "message"]),
            json_values,
        ),
        "context": st.dictionaries(st.text(max_size=12), json_values, max_size=5),
        "environments": st.lists(
            st.dictionaries(
                st.sampled_from(
                    [
                        "app",
                        "env",
                        "namespace",
                        "deploy",
                        "cleanup",
                        "values",
                        "manifests",
                        "chart",
                        "strategicMergePatches",
                    ]
                ),
                json_values,
            ),
            max_size=3,
        ),
        "items": st.lists(json_values, max_size=3),
    },
)
TEMPLATE_PIECES = [*'{}. |()"abcXYZ_-0123456789', "{{", "}}", "call ", "range ", " .X", "end"]
templates = st.lists(st.sampled_from(TEMPLATE_PIECES), max_size=40).map("".join)


@FUZZ
@given(artifact_like)
def test_the_artifact_model_takes_anything_or_says_what_is_wrong(data: dict[str, Any]) -> None:
    try:
        artifact = Artifact.model_validate(data)
    except ValidationError as exc:
        assert exc.errors()
        return
    assert Artifact.model_validate_json(json.dumps(artifact.to_json())) == artifact


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30), st.sampled_from([None, "push", "tag", "pr"]),
       st.text(max_size=30), st.text(max_size=30))  # fmt: skip
def test_policies_match_or_name_the_bad_glob(
    branch: str, tag: str, event: str | None, version_branch: str, version_tag: str
) -> None:
    try:
        policy = DeployPolicy.model_validate({"branch": branch, "tag": tag, "event": event})
        version = Version(branch=version_branch, tag=version_tag, event="push")
    except ValidationError:
        return
    try:
        check_deploy_policy(policy)
        assert isinstance(deploy_matches(policy, version), bool)
        assert isinstance(glob_matches(branch, version_branch), bool)
    except GimletdError as exc:
        assert str(exc)


@FUZZ
@given(templates, st.dictionaries(st.sampled_from(["X", "BRANCH", "a"]), st.text(max_size=20)))
def test_templates_resolve_or_fail_with_a_message(template: str, variables: dict[str, str]) -> None:
    try:
        result = render_template(template, variables)
    except GimletdError as exc:
        assert str(exc)
        return
    assert isinstance(result, str)


@pytest.mark.parametrize(
    "template",
    ["{{ .X | someUnknownFunc }}", "{{ call .X }}", '{{ template "x" }}', "{{ .X.__class__ }}",
     '{{ printf "%s" .X }}', "{{ range .X }}{{ end }}", "{{ define \"a\" }}{{ end }}"],
)  # fmt: skip
def test_template_injection_is_refused_with_a_message(template: str) -> None:
    with pytest.raises(GimletdError):
        render_template(template, {"X": "value"})


YAML_PIECES = [*"abc:-[]{}&*!|>'\"#%@ \n\t0123", "&a ", "*a", "<<: *a", "kind: ", "\n---\n"]
yaml_text = st.lists(st.sampled_from(YAML_PIECES), max_size=80).map("".join)


@FUZZ
@given(yaml_text, st.text(max_size=120))
def test_raw_manifests_and_patches_render_or_fail_with_a_message(
    manifests: str, patch: str
) -> None:
    try:
        manifest = Manifest(
            app="web", env="staging", manifests=manifests, strategic_merge_patches=patch
        )
    except ValidationError:
        return
    try:
        files = render(manifest, engine=RenderEngine.FLUX, charts=None)
    except GimletdError as exc:
        assert str(exc)
        return
    assert all(isinstance(content, bytes) for content in files.values())


@FUZZ
@given(artifact_like)
def test_environment_configs_resolve_or_fail_with_a_message(data: dict[str, Any]) -> None:
    try:
        artifact = Artifact.model_validate(data)
    except ValidationError:
        return
    variables = artifact_variables(artifact)
    for manifest in artifact.environments:
        try:
            resolve_manifest(manifest, variables)
        except GimletdError as exc:
            assert str(exc)
