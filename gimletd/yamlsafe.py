"""YAML in and out, with limits, because users and charts send us YAML we did not write.

Reading uses PyYAML's safe loader (the C one when libyaml is present) after a
streaming pass over the parser events that refuses what could make a small text
expensive or surprising:

- aliases (`*name`), so a "billion laughs" document cannot expand in memory;
  anchors without aliases are harmless and accepted;
- more than `MAX_BYTES` of text, nesting deeper than `MAX_DEPTH`, more than
  `MAX_DOCUMENTS` documents.

Timestamps stay strings, as Kubernetes reads them (`2024-01-01` is not turned
into a date and back). Writing is deterministic: the pure-Python dumper (so
libyaml's presence cannot change bytes), keys in the order given, block style,
multi-line strings as `|` blocks.
"""

from __future__ import annotations

import functools
import json
from typing import Any, ClassVar

import yaml

from gimletd.errors import RenderError, UnsafeYAML

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_DOCUMENTS", "dump", "load", "load_all", "load_value"]

#: The largest YAML text accepted, in bytes of UTF-8.
MAX_BYTES = 1024 * 1024
#: The deepest nesting of mappings and sequences accepted.
MAX_DEPTH = 64
#: The most documents one text may hold.
MAX_DOCUMENTS = 1000

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader, minus the timestamp resolver (Kubernetes keeps timestamps as strings)."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


class _Dumper(yaml.SafeDumper):
    """The pure-Python safe dumper, so output does not depend on libyaml being installed."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Multi-line strings as literal blocks, so ConfigMap files stay readable in diffs."""
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _check_limits(text: str, what: str) -> None:
    """Raise UnsafeYAML when `text` breaks a limit, before any object is built."""
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise UnsafeYAML(
            f"{what}: YAML of {size} bytes is larger than the limit of {MAX_BYTES} bytes; "
            "split it into smaller parts"
        )
    depth = documents = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                raise UnsafeYAML(
                    f"{what}: YAML alias *{event.anchor} is not allowed{_where(event)}; "
                    "write the value out instead of using anchors and aliases"
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise UnsafeYAML(
                        f"{what}: YAML is nested deeper than {MAX_DEPTH} levels{_where(event)}"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > MAX_DOCUMENTS:
                    raise UnsafeYAML(
                        f"{what}: more than {MAX_DOCUMENTS} YAML documents; "
                        "split the resources over several environment configs or charts"
                    )
    except yaml.YAMLError as exc:
        raise RenderError(f"{what}: not valid YAML: {exc}") from exc


def check_template_source(text: str, *, what: str) -> None:
    """Refuse YAML that will be unsafe however its templates resolve: too big, or with aliases.

    Run on the text as CI sent it, before templating, so it reads tokens only:
    what the tokens do not settle (say, a template that makes the YAML invalid)
    is reported when the environment is released.

    :raise UnsafeYAML: the text is larger than MAX_BYTES or uses an alias.
    """
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise UnsafeYAML(f"{what}: YAML of {size} bytes is larger than the limit of {MAX_BYTES}")
    try:
        for token in yaml.scan(text, Loader=_Loader):
            if isinstance(token, yaml.AliasToken):
                mark = token.start_mark
                raise UnsafeYAML(
                    f"{what}: YAML alias *{token.value} is not allowed (line {mark.line + 1}); "
                    "write the value out instead of using anchors and aliases"
                )
    except yaml.YAMLError:
        return  # judged once templates are resolved


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _documents(text: str, what: str) -> list[Any]:
    _check_limits(text, what)
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise RenderError(f"{what}: not valid YAML: {exc}") from exc


def load_all(text: str, *, what: str) -> list[dict[str, Any]]:
    """Every non-empty document of `text`, each of which must be a mapping.

    `what` names the input in error messages, e.g. "manifests of staging/frontend".

    :raise UnsafeYAML: the text is too large, too deep, has too many documents or an alias.
    :raise RenderError: the text is not YAML, or a document is not a mapping.
    """
    resources: list[dict[str, Any]] = []
    for index, document in enumerate(_documents(text, what), start=1):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise RenderError(
                f"{what}: YAML document {index} is a {type(document).__name__}, "
                "but a Kubernetes resource (a mapping with apiVersion, kind and metadata) "
                "was expected"
            )
        resources.append(document)
    return resources


def load(text: str, *, what: str) -> dict[str, Any]:
    """The single mapping document of `text`.

    :raise UnsafeYAML: see `load_all`.
    :raise RenderError: there is not exactly one non-empty document, or it is not a mapping.
    """
    documents = load_all(text, what=what)
    if len(documents) != 1:
        raise RenderError(f"{what}: expected one YAML document, found {len(documents)}")
    return documents[0]


def load_value(text: str, *, what: str) -> Any:
    """The single document of `text`, of any type (a JSON patch is a list, for example).

    :raise UnsafeYAML: see `load_all`.
    :raise RenderError: the text is not YAML or holds more than one document.
    """
    documents = _documents(text, what)
    if len(documents) != 1:
        raise RenderError(f"{what}: expected one YAML document, found {len(documents)}")
    return documents[0]


def dump(resource: Any) -> bytes:
    """`resource` as UTF-8 YAML bytes; equal inputs give equal bytes.

    The pure-Python emitter is slow and most resources of a release are the same
    as in the last one (only the Deployment's image moves), so output is cached
    by the resource's JSON form. That form tells apart everything YAML shows
    (key order; strings from numbers, booleans and null) only for JSON-shaped
    data, so anything else (a non-string key such as `80:`, another type) and
    large resources bypass the cache.
    """
    if not _json_shaped(resource, depth=0):
        return _emit(resource)
    key = json.dumps(resource, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(key) > MAX_CACHED_JSON:
        return _emit(resource)
    return _dump_cached(key)


#: Resources whose JSON form is longer than this are not cached (bounds the cache's memory).
MAX_CACHED_JSON = 16 * 1024
_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_shaped(value: Any, *, depth: int) -> bool:
    """Whether `value` survives a JSON round trip unchanged: str keys, exact JSON types."""
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is dict:
        return all(
            type(key) is str and _json_shaped(item, depth=depth + 1) for key, item in value.items()
        )
    if kind is list:
        return all(_json_shaped(item, depth=depth + 1) for item in value)
    if kind is float:
        return value == value and value not in (float("inf"), float("-inf"))
    return kind in _JSON_SCALARS


@functools.lru_cache(maxsize=1024)
def _dump_cached(resource_json: str) -> bytes:
    return _emit(json.loads(resource_json))


def _emit(resource: Any) -> bytes:
    text = yaml.dump(
        resource,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,
    )
    return text.encode("utf-8")
