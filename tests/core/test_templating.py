"""The Go template subset: syntax, functions, missing variables, limits and environment configs."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gimletd.errors import TemplateError
from gimletd.models import DNS_LABEL, Artifact, Manifest
from gimletd.templating import (
    MAX_ACTIONS,
    MAX_NESTING,
    MAX_OUTPUT_BYTES,
    MAX_TEMPLATE_BYTES,
    has_template,
    render_template,
    resolve_manifest,
    sanitize_dns_name,
    template_variables,
)
from gimletd.variables import artifact_variables
from tests.conftest import SHARED

SEED_ARTIFACT = SHARED / "fixtures" / "seed-artifact-restored.json"

VARIABLES = {
    "BRANCH": "feature/Login-Page",
    "TAG": "v1.2.3",
    "SHA": "deae5dbaf237766240181fa397e923d3c5253112",
    "EMPTY": "",
    "SPACED": "  padded\t",
}


def seed_artifact(branch: str | None = None) -> Artifact:
    data = json.loads(SEED_ARTIFACT.read_text())
    if branch is not None:
        data["context"]["BRANCH"] = branch
        data["version"]["branch"] = branch
    return Artifact.model_validate(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("{{ .TAG }}", "v1.2.3"),
        ("{{.TAG}}", "v1.2.3"),
        ("image:{{ .SHA }}", "image:deae5dbaf237766240181fa397e923d3c5253112"),
        ("frontend-{{ .BRANCH | sanitizeDNSName }}", "frontend-feature-login-page"),
        ("{{ .BRANCH | sanitizeDNSName | trunc 7 }}", "feature"),
        ('{{ .BRANCH | lower | replace "/" "-" }}', "feature-login-page"),
        ('{{ replace "/" "_" .BRANCH }}', "feature_Login-Page"),
        ('{{ upper (trimPrefix "v" .TAG) }}', "1.2.3"),
        ('{{ trimSuffix ".3" .TAG }}', "v1.2"),
        ('{{ upper(trimPrefix "v" .TAG) }}', "1.2.3"),
        ("{{ .SPACED | trim }}", "padded"),
        ("{{ .TAG | upper }}", "V1.2.3"),
        ("{{ lower .BRANCH }}", "feature/login-page"),
        ("{{ .TAG | quote }}", '"v1.2.3"'),
        ('{{ quote "a\\"b\\\\c\\nd\\te" }}', '"a\\"b\\\\c\\nd\\te"'),
        ("{{ quote .TAG 5 }}", '"v1.2.3" "5"'),
        ("{{ trunc 3 .TAG }}", "v1."),
        ("{{ trunc -3 .TAG }}", "2.3"),
        ("{{ trunc -30 .TAG }}", "v1.2.3"),
        ("{{ trunc 0 .TAG }}", ""),
        ("{{ .TAG | trunc 100 }}", "v1.2.3"),
        ('{{ default "latest" .MISSING }}', "latest"),
        ('{{ .MISSING | default "latest" }}', "latest"),
        ('{{ .EMPTY | default "latest" }}', "latest"),
        ('{{ .TAG | default "latest" }}', "v1.2.3"),
        ("{{ default 5 0 }}", "5"),
        ('{{ (.MISSING) | default "y" }}', "y"),
        ('{{ "a\\tb" }}', "a\tb"),
        ('{{ "\\u00e9\\U0001F600\\x41\\101" }}', "é\U0001f600AA"),
        ("{{ `raw \\n {{ .TAG }}` }}", "raw \\n {{ .TAG }}"),
        ("{{ `two\r\nlines` }}", "two\nlines"),
        ("{{ 42 }}", "42"),
        ("{{-3}}", "-3"),
        ("a  {{- .TAG -}}  b", "av1.2.3b"),
        ("a \n {{- .TAG }} \n b", "av1.2.3 \n b"),
        ("a {{ .TAG -}} \n\t b", "a v1.2.3b"),
        ("}} is text", "}} is text"),
        ("{{ .TAG }}{{ .TAG }}", "v1.2.3v1.2.3"),
        ("{{ .TAG\n| upper }}", "V1.2.3"),
    ],
)
def test_render_template(text: str, expected: str) -> None:
    """Templates render like Go templates with sprig's argument order; pipes pass the last arg."""
    assert render_template(text, VARIABLES) == expected


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("{{ .NOPE }}", ["variable NOPE is not set", "column 4", "{{ .NOPE }}", "default"]),
        ("frontend-{{ .NOPE | sanitizeDNSName }}", ["NOPE", "frontend-{{ .NOPE"]),
        ("{{ default .NOPE | upper }}", ["default takes 2 arguments"]),
        ('{{ .NOPE | upper | default "x" }}', ["variable NOPE is not set"]),
        ('{{ exec "rm" }}', ["unknown function 'exec'", "column 4"]),
        ('{{ printf "%s" .TAG }}', ["unknown function 'printf'"]),
        ("{{ .TAG", ["unclosed action", "column 1"]),
        ("{{ .TAG | % }}", ["unexpected '%'", "column 11"]),
        ("x\n  {{ .TAG | % }}", ["line 2, column 13"]),
        ("{{ }}", ["empty action"]),
        ("{{ .TAG | }}", ["missing value after '|'"]),
        ("{{ ( ) }}", ["missing value"]),
        ("{{ (upper .TAG }}", ["unclosed '('"]),
        ("{{ .TAG ) }}", ["unmatched ')'"]),
        ("{{ .A.B }}", ["nested fields"]),
        ("{{ . }}", ["'.' must be followed by a variable name"]),
        ("{{ .TAG .SHA }}", ["not a function"]),
        ("{{ .TAG | .SHA }}", ["piped into something that is not a function"]),
        ("{{ upper }}", ["upper takes 1 argument", "got 0"]),
        ("{{ .TAG | upper .SHA }}", ["upper takes 1 argument", "got 2"]),
        ("{{ upper lower }}", ["function lower used as an argument", "(lower ...)"]),
        ('{{ trunc "3" .TAG }}', ["trunc needs a number as argument 1", "the string '3'"]),
        ("{{ upper 5 }}", ["upper needs a string as argument 1", "the number 5"]),
        ('{{ "open }}', ["unterminated string"]),
        ("{{ `open }}", ["unterminated raw string"]),
        ('{{ "\\q" }}', ["unknown escape \\q"]),
        ('{{ "\\xff" }}', ["above \\x7f"]),
        ('{{ "\\ud800" }}', ["not a valid character"]),
        ('{{ "\\u12" }}', ["needs 4 digits"]),
        ("{{ 99999999999999999999 }}", ["out of range"]),
        ("{{ 5 }}{{ $x }}", ["($name) are not supported", "column 11"]),
        ("{{/* note */}}", ["comments are not supported"]),
        ("{{ .TAG-}}", ["unexpected '-'"]),
        ('{{ "a""b" }}', ["unexpected '\"'", "spaces"]),
    ],
)
def test_template_errors_say_what_and_where(text: str, fragments: list[str]) -> None:
    """Every failure is a TemplateError naming the problem, its column and the template."""
    with pytest.raises(TemplateError) as info:
        render_template(text, VARIABLES)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_variable_names_the_variable_and_a_short_template() -> None:
    """A missing variable is named, and a long template is shortened in the message."""
    text = "{{ .CIRCLE_SHA1 }}" + "x" * 500
    with pytest.raises(TemplateError) as info:
        render_template(text, {})
    message = str(info.value)
    assert "CIRCLE_SHA1 is not set" in message
    assert "x" * 100 not in message
    assert "…" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ .EVIL }}", "{{ .SECRET }}"),
        ("{{ .EVIL | upper | trim }}", "{{ .SECRET }}"),
        ('{{ .EVIL | default "x" }}', "{{ .SECRET }}"),
        ("{{ .EVIL | quote }}", '"{{ .SECRET }}"'),
        ("{{ .EVIL | sanitizeDNSName }}", "secret"),
    ],
)
def test_variable_values_are_never_evaluated(text: str, expected: str) -> None:
    """Template injection: a value holding `{{ }}` is copied as text, in one pass."""
    variables = {"EVIL": "{{ .SECRET }}", "SECRET": "hunter2"}
    assert render_template(text, variables) == expected


def test_limits_on_template_size() -> None:
    """A template over MAX_TEMPLATE_BYTES (in UTF-8) is refused; plain text of any size is not."""
    padding = "é" * (MAX_TEMPLATE_BYTES // 2)
    with pytest.raises(TemplateError, match="larger than the limit"):
        render_template("{{ .TAG }}" + padding, VARIABLES)
    plain = "x" * (MAX_OUTPUT_BYTES + 1)
    assert render_template(plain, {}) is plain


def test_limits_on_actions() -> None:
    """MAX_ACTIONS actions render; one more is refused."""
    assert render_template("{{ 1 }}" * MAX_ACTIONS, {}) == "1" * MAX_ACTIONS
    with pytest.raises(TemplateError, match=f"more than {MAX_ACTIONS} actions"):
        render_template("{{ 1 }}" * (MAX_ACTIONS + 1), {})


def test_limits_on_nesting() -> None:
    """MAX_NESTING levels of parentheses work; one more is refused."""
    nested = "(" * MAX_NESTING + ".TAG" + ")" * MAX_NESTING
    assert render_template("{{ " + nested + " }}", VARIABLES) == "v1.2.3"
    deeper = "(" * (MAX_NESTING + 1) + ".TAG" + ")" * (MAX_NESTING + 1)
    with pytest.raises(TemplateError, match=f"nested deeper than the limit of {MAX_NESTING}"):
        render_template("{{ " + deeper + " }}", VARIABLES)


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("{{ .BIG }}{{ .BIG }}", {"BIG": "x" * (MAX_OUTPUT_BYTES // 2 + 1)}),
        ("{{ .BIG }}", {"BIG": "é" * (MAX_OUTPUT_BYTES // 2 + 1)}),
        ('{{ replace "" .BIG .BIG }}', {"BIG": "x" * 2000}),
        ("{{ .BIG | quote }}", {"BIG": "\x00" * (MAX_OUTPUT_BYTES // 2)}),
    ],
)
def test_limits_on_output(text: str, variables: dict[str, str]) -> None:
    """Output, and any function result, larger than MAX_OUTPUT_BYTES is refused early."""
    with pytest.raises(TemplateError, match=str(MAX_OUTPUT_BYTES)):
        render_template(text, variables)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("feature/Login-Page", "feature-login-page"),
        ("main", "main"),
        ("", ""),
        ("---", ""),
        ("__Fix__Bug__", "fix-bug"),
        ("dependabot/npm_and_yarn/lodash-4.17.21", "dependabot-npm-and-yarn-lodash-4-17-21"),
        ("Ünïcode", "n-code"),
        ("a" * 70, "a" * 63),
        # cut to 63 first, then strip: the leading '-' costs a character
        ("-" + "a" * 62 + "b", "a" * 62),
        ("a" * 62 + "/b", "a" * 62),
    ],
)
def test_sanitize_dns_name(value: str, expected: str) -> None:
    """Lower case, runs outside [0-9a-z] become '-', cut to 63, then '-' stripped at both ends."""
    assert sanitize_dns_name(value) == expected


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("no template", set()),
        ("{{ .A }}-{{ .B | default .C }}", {"A", "B", "C"}),
        ('{{ upper (trimPrefix "v" .TAG) }}', {"TAG"}),
        ("{{ `{{ .NOT_A_VARIABLE }}` }}", set()),
    ],
)
def test_template_variables(text: str, names: set[str]) -> None:
    """template_variables lists the variables a template reads, without evaluating it."""
    assert template_variables(text) == names
    assert has_template(text) == (text != "no template")


def test_template_variables_refuses_invalid_templates() -> None:
    """A template that does not parse cannot list its variables."""
    with pytest.raises(TemplateError):
        template_variables("{{ .A ")


def test_seed_artifact_preview_app_from_branch() -> None:
    """The seed artifact's preview environment resolves to frontend-feature-login-page."""
    artifact = seed_artifact(branch="feature/Login-Page")
    preview = artifact.environments[1]
    resolved = resolve_manifest(preview, artifact_variables(artifact))
    assert resolved.app == "frontend-feature-login-page"
    assert resolved.env == "preview"
    assert resolved.values["ingress"]["host"] == "frontend-feature-login-page.preview.mycompany.com"
    assert resolved.values["image"]["tag"] == artifact.version.sha
    assert resolved.values["containerPort"] == 5000
    assert resolved.deploy == preview.deploy
    assert resolved.cleanup is not None
    assert resolved.cleanup.app == "frontend-{{ .BRANCH | sanitizeDNSName }}"
    assert preview.app == "frontend-{{ .BRANCH | sanitizeDNSName }}", "the input is unchanged"
    assert preview.values["image"]["tag"] == "{{ .CIRCLE_SHA1 }}"


def test_seed_artifact_as_sent() -> None:
    """Without changes, the seed artifact's environments resolve with its own context."""
    artifact = seed_artifact()
    variables = artifact_variables(artifact)
    staging, preview = (resolve_manifest(m, variables) for m in artifact.environments)
    assert (staging.env, staging.app) == ("staging", "frontend")
    assert (preview.env, preview.app) == ("preview", "frontend-new-feature")
    assert staging.to_json()["chart"] == artifact.environments[0].to_json()["chart"]


def test_resolve_manifest_templates_every_string() -> None:
    """Keys, list items, chart, patches, manifests and extra fields are templated too."""
    manifest = Manifest.model_validate(
        {
            "app": "{{ .APP }}",
            "env": "{{ .ENV }}",
            "namespace": "ns-{{ .ENV }}",
            "deploy": {"branch": "{{ .NOT_TEMPLATED }}"},
            "cleanup": {"app": "x-{{ .BRANCH }}", "event": "branchDeleted", "branch": "*"},
            "chart": {"repository": "{{ .REPO_URL }}", "name": "onechart", "version": "0.{{ .V }}"},
            "values": {
                "{{ .KEY }}": {"list": ["{{ .V }}", 3, None, True, {"k": "{{ .V }}"}]},
                "annotations": {"a.b/c": "{{ .V }}"},
            },
            "strategicMergePatches": "metadata:\n  name: {{ .APP }}\n",
            "json6902Patches": [
                {"patch": "- op: add\n  value: {{ .V }}\n", "target": {"name": "{{ .APP }}"}}
            ],
            "manifests": "kind: ConfigMap\nname: {{ .APP }}\n",
            "futureField": ["{{ .V }}"],
        }
    )
    variables = {"APP": "web", "ENV": "prod", "REPO_URL": "oci://x", "V": "7", "KEY": "dyn"}
    result = resolve_manifest(manifest, variables)
    assert result.deploy == manifest.deploy
    assert result.cleanup == manifest.cleanup
    resolved = result.to_json()
    assert resolved["app"] == "web"
    assert resolved["namespace"] == "ns-prod"
    assert resolved["deploy"]["branch"] == "{{ .NOT_TEMPLATED }}"
    assert resolved["cleanup"]["app"] == "x-{{ .BRANCH }}"
    assert resolved["chart"] == {"repository": "oci://x", "name": "onechart", "version": "0.7"}
    assert resolved["values"] == {
        "dyn": {"list": ["7", 3, None, True, {"k": "7"}]},
        "annotations": {"a.b/c": "7"},
    }
    assert resolved["strategicMergePatches"] == "metadata:\n  name: web\n"
    assert resolved["json6902Patches"][0]["patch"] == "- op: add\n  value: 7\n"
    assert resolved["json6902Patches"][0]["target"]["name"] == "web"
    assert resolved["manifests"] == "kind: ConfigMap\nname: web\n"
    assert resolved["futureField"] == ["7"]


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"image": {"tag": "{{ .NOPE }}"}}, ["field values.image.tag", "NOPE"]),
        ({"list": ["ok", "{{ .NOPE }}"]}, ["field values.list[1]"]),
        ({"ann": {"a.b/c": "{{ .NOPE }}"}}, ["field values.ann['a.b/c']"]),
        ({"{{ .NOPE }}": 1}, ["(key)", "NOPE"]),
        ({"a": 1, "{{ .A }}": 2}, ["keys 'a' and '{{ .A }}' both resolve to 'a'"]),
    ],
)
def test_resolve_manifest_errors_name_env_app_and_field(
    values: dict[str, object], fragments: list[str]
) -> None:
    """A field that fails to render is named with its environment and app."""
    manifest = Manifest(app="web", env="prod", values=values)
    with pytest.raises(TemplateError) as info:
        resolve_manifest(manifest, {"A": "a"})
    message = str(info.value)
    assert "environment 'prod', app 'web'" in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("field", "template", "variables", "fragment"),
    [
        ("app", "frontend-{{ .BRANCH | sanitizeDNSName }}", {"BRANCH": "///"}, "'frontend-'"),
        ("app", "{{ .APP }}", {"APP": "Upper"}, "'Upper' is not a DNS-1123 label"),
        ("app", "{{ .APP }}", {"APP": "{{ .X }}"}, "'{{ .X }}' is not a DNS-1123 label"),
        ("env", "{{ .ENV }}", {"ENV": "../etc"}, "env '../etc'"),
        ("namespace", "{{ .NS }}", {"NS": "a" * 64}, "longer than 63"),
        ("app", "{{ .APP }}", {"APP": ""}, "app must not be empty"),
    ],
)
def test_resolved_names_must_be_labels(
    field: str, template: str, variables: dict[str, str], fragment: str
) -> None:
    """app, env and namespace must be DNS-1123 labels once resolved; the error names them."""
    data = {"app": "web", "env": "prod", field: template}
    manifest = Manifest.model_validate(data)
    with pytest.raises(TemplateError) as info:
        resolve_manifest(manifest, variables)
    message = str(info.value)
    assert f"environment {data['env']!r}, app {data['app']!r}" in message
    assert fragment in message


def test_resolve_manifest_missing_variable_in_app_names_the_raw_app() -> None:
    """When the app name itself fails, the message shows its template."""
    manifest = Manifest(app="frontend-{{ .BRANCH }}", env="preview")
    with pytest.raises(TemplateError, match=r"app 'frontend-\{\{ \.BRANCH \}\}', field app"):
        resolve_manifest(manifest, {})


FRAGMENTS = [
    "{{",
    "}}",
    "{{-",
    " -}}",
    " ",
    "\n",
    ".A",
    ".B",
    ".",
    "|",
    "(",
    ")",
    '"',
    "`",
    "\\",
    "\\u",
    "$",
    "-",
    "7",
    "-2",
    "999999999999999999999",
    "default",
    "trunc",
    "replace",
    "quote",
    "sanitizeDNSName",
    "upper",
    "exec",
    "\ud800",
    "é",
]


@settings(max_examples=400, database=None, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=30).map("".join)
)
def test_render_template_only_raises_template_error(text: str) -> None:
    """Whatever the text, rendering returns a string or raises TemplateError."""
    with contextlib.suppress(TemplateError):
        assert isinstance(render_template(text, {"A": "a", "B": "{{ .A }}"}), str)


@settings(max_examples=400, database=None)
@given(st.text())
def test_sanitize_dns_name_gives_a_label_or_nothing(value: str) -> None:
    """sanitize_dns_name's output is always a DNS-1123 label, or empty."""
    result = sanitize_dns_name(value)
    assert result == "" or DNS_LABEL.fullmatch(result)
    assert len(result) <= 63
    assert re.fullmatch(r"[0-9a-z-]*", result)
