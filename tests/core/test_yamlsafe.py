"""YAML with limits: aliases, size, depth and document count are refused; output is stable."""

from __future__ import annotations

import pytest

from gimletd import yamlsafe
from gimletd.errors import RenderError, UnsafeYAML

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_load_all_returns_every_mapping_and_skips_empty_documents() -> None:
    text = "---\nkind: A\n---\n\n---\nkind: B\n...\n"
    assert yamlsafe.load_all(text, what="test") == [{"kind": "A"}, {"kind": "B"}]


def test_billion_laughs_is_refused_before_expansion() -> None:
    with pytest.raises(UnsafeYAML, match=r"manifests of staging/frontend: YAML alias \*a"):
        yamlsafe.load_all(BILLION_LAUGHS, what="manifests of staging/frontend")


def test_a_single_alias_is_refused_too() -> None:
    with pytest.raises(UnsafeYAML, match="alias"):
        yamlsafe.load("base: &x {a: 1}\nother: *x\n", what="test")


def test_merge_keys_are_aliases_and_refused() -> None:
    with pytest.raises(UnsafeYAML, match="alias"):
        yamlsafe.load("base: &x {a: 1}\nother:\n  <<: *x\n", what="test")


def test_an_anchor_without_alias_is_harmless() -> None:
    assert yamlsafe.load("a: &x 1\n", what="test") == {"a": 1}


def test_text_over_one_mebibyte_is_refused() -> None:
    text = "a: " + "x" * yamlsafe.MAX_BYTES
    with pytest.raises(UnsafeYAML, match="larger than the limit"):
        yamlsafe.load_all(text, what="test")


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep = "[" * (yamlsafe.MAX_DEPTH + 1) + "]" * (yamlsafe.MAX_DEPTH + 1)
    with pytest.raises(UnsafeYAML, match="nested deeper"):
        yamlsafe.load_all(f"a: {deep}", what="test")


def test_nesting_at_the_limit_is_accepted() -> None:
    depth = yamlsafe.MAX_DEPTH - 1  # the document's mapping is one level
    nested = "[" * depth + "]" * depth
    assert yamlsafe.load_all(f"a: {nested}", what="test")


def test_too_many_documents_are_refused() -> None:
    text = "---\na: 1\n" * (yamlsafe.MAX_DOCUMENTS + 1)
    with pytest.raises(UnsafeYAML, match="more than 1000 YAML documents"):
        yamlsafe.load_all(text, what="test")


def test_a_non_mapping_document_is_a_render_error_naming_the_input() -> None:
    with pytest.raises(RenderError, match=r"manifests of prod/api: YAML document 2 is a list"):
        yamlsafe.load_all("a: 1\n---\n- b\n", what="manifests of prod/api")


def test_syntax_errors_are_render_errors_naming_the_input() -> None:
    with pytest.raises(RenderError, match="manifests of prod/api: not valid YAML"):
        yamlsafe.load_all("a: [1, 2\n", what="manifests of prod/api")


def test_python_tags_are_refused() -> None:
    with pytest.raises(RenderError, match="not valid YAML"):
        yamlsafe.load_all("a: !!python/object/apply:os.system ['true']\n", what="test")


def test_timestamps_stay_strings_as_in_kubernetes() -> None:
    assert yamlsafe.load("created: 2024-01-02\n", what="test") == {"created": "2024-01-02"}


def test_load_wants_exactly_one_document() -> None:
    with pytest.raises(RenderError, match="expected one YAML document, found 2"):
        yamlsafe.load("a: 1\n---\nb: 2\n", what="test")


def test_load_value_accepts_lists_and_json() -> None:
    assert yamlsafe.load_value('[{"op": "remove", "path": "/a"}]', what="test") == [
        {"op": "remove", "path": "/a"}
    ]


def test_dump_keeps_key_order_and_block_style() -> None:
    resource = {"kind": "ConfigMap", "apiVersion": "v1", "data": {"b": "2", "a": "1"}}
    assert (
        yamlsafe.dump(resource) == b"kind: ConfigMap\napiVersion: v1\ndata:\n  b: '2'\n  a: '1'\n"
    )


def test_dump_writes_multi_line_strings_as_literal_blocks_and_unicode_as_is() -> None:
    dumped = yamlsafe.dump({"script": "echo 1\necho 2\n", "greeting": "héllo"})
    assert dumped == "script: |\n  echo 1\n  echo 2\ngreeting: héllo\n".encode()


def test_dump_does_not_wrap_long_strings() -> None:
    value = " ".join(["word"] * 100)
    assert yamlsafe.dump({"a": value}) == f"a: {value}\n".encode()


def test_dump_round_trips() -> None:
    resource = {"a": [1, {"b": None, "c": True}], "d": "multi\nline", "e": "2024-01-02"}
    assert yamlsafe.load(yamlsafe.dump(resource).decode(), what="test") == resource


@pytest.mark.parametrize(
    "resource",
    [
        {"a": 1, "b": "1", "c": True, "d": "true", "e": None, "f": "null", "g": 1.5},
        {"b": 1, "a": 2},
        {"a": 2, "b": 1},
        {"text": "line one\nline two\n", "list": [1, "1", [], {}]},
        {"unicode": "äé漢", "float": 1.0, "int": 1},
    ],
)
def test_cached_dumps_equal_fresh_ones(resource: dict[str, object]) -> None:
    """The dump cache never changes a byte: same output as the emitter called directly."""
    first = yamlsafe.dump(resource)
    assert yamlsafe.dump(resource) == first == yamlsafe._emit(resource)


def test_the_cache_tells_apart_what_yaml_tells_apart() -> None:
    assert yamlsafe.dump({"a": 1}) != yamlsafe.dump({"a": "1"})
    assert yamlsafe.dump({"a": 1}) != yamlsafe.dump({"a": 1.0})
    assert yamlsafe.dump({"a": 1}) != yamlsafe.dump({"a": True})
    assert yamlsafe.dump({"a": 1, "b": 2}) != yamlsafe.dump({"b": 2, "a": 1})


@pytest.mark.parametrize(
    "resource",
    [
        {80: "http", "80": "also"},
        {True: "on", "true": "string"},
        {"nested": {1: "a", "1": "b"}},
        {"big": "x" * 20_000},
        {"nan": float("nan")},
    ],
)
def test_what_json_cannot_hold_bypasses_the_cache(resource: dict[object, object]) -> None:
    """Non-string keys and other non-JSON shapes are emitted directly, never through JSON."""
    assert yamlsafe.dump(resource) == yamlsafe._emit(resource)
