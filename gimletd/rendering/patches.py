"""Strategic merge patches and JSON 6902 patches, applied to rendered resources.

A strategic merge patch is what `kubectl patch` and kustomize apply: maps merge
recursively, `null` deletes a key, and lists of objects merge element by element
on Kubernetes' patch merge key (containers by `name`, volumeMounts by
`mountPath`, container ports by `containerPort`, Service ports by `port`, …);
other lists are replaced. The directives `$patch: delete|replace|merge`,
`$retainKeys` and `$deleteFromPrimitiveList/<field>` are honoured;
`$setElementOrder/<field>` is accepted and ignored. The merge keys are looked up
by field name, so they also apply to pod templates inside custom resources; a
list whose elements are not all objects is always replaced.

Every function here is pure: resources go in, new resources come out.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Final

import jsonpatch

from gimletd import yamlsafe
from gimletd.errors import RenderError
from gimletd.models import Json6902Patch
from gimletd.rendering.resources import ResourceId, identify

__all__ = [
    "apply_json6902_patches",
    "apply_strategic_merge_patches",
    "merge_key",
    "strategic_merge",
]

#: Kubernetes' patchMergeKey of list fields, by field name.
MERGE_KEYS: Final[dict[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "ownerReferences": "uid",
}
_CONTAINER_LISTS: Final = frozenset({"containers", "initContainers", "ephemeralContainers"})
#: Lists of scalars that Kubernetes merges as sets rather than replacing.
_SET_LISTS: Final = frozenset({"finalizers"})
_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_ELEMENT_ORDER = "$setElementOrder/"


class _Deleted:
    """Marks a value that a `$patch: delete` removed."""


_DELETED: Final = _Deleted()


def merge_key(path: Sequence[str], kind: str) -> str | None:
    """The merge key of the list at `path` (map keys only, no indexes) in a `kind`, if any."""
    if not path:
        return None
    field = path[-1]
    if field == "ports":
        if len(path) >= 2 and path[-2] in _CONTAINER_LISTS:
            return "containerPort"
        if kind == "Service" and tuple(path) == ("spec", "ports"):
            return "port"
        return None
    return MERGE_KEYS.get(field)


def strategic_merge(original: dict[str, Any], patch: dict[str, Any], *, what: str) -> Any:
    """`original` with `patch` merged in; `None` when the patch says `$patch: delete`.

    :raise RenderError: a directive is unknown or a list element lacks its merge key.
    """
    kind = str(original.get("kind", ""))
    merged = _merge(copy.deepcopy(original), patch, (), kind, what)
    return None if merged is _DELETED else merged


def _merge(original: Any, patch: Any, path: tuple[str, ...], kind: str, what: str) -> Any:
    if isinstance(patch, dict):
        base = original if isinstance(original, dict) else {}
        return _merge_map(base, patch, path, kind, what)
    if isinstance(patch, list):
        base_list = original if isinstance(original, list) else []
        return _merge_list(base_list, patch, path, kind, what)
    return patch


def _fresh(patch: Any, path: tuple[str, ...], kind: str, what: str) -> Any:
    """A patch value with nothing to merge into: directives applied, nulls dropped."""
    return _merge(None, patch, path, kind, what)


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...], kind: str, what: str
) -> Any:
    directive = patch.get(_DIRECTIVE, "merge")
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        body = {key: value for key, value in patch.items() if key != _DIRECTIVE}
        return _merge_map({}, body, path, kind, what)
    if directive != "merge":
        raise RenderError(
            f"{what}: unknown directive $patch: {directive!r} at {_show(path)}; "
            "use delete, replace or merge"
        )
    result = dict(original)
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith(_ELEMENT_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            field = key.removeprefix(_DELETE_FROM)
            current = result.get(field)
            if isinstance(current, list) and isinstance(value, list):
                result[field] = [item for item in current if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = _merge(result.get(key), value, (*path, key), kind, what)
        if merged is _DELETED:
            result.pop(key, None)
        else:
            result[key] = merged
    retain = patch.get(_RETAIN_KEYS)
    if isinstance(retain, list):
        result = {key: value for key, value in result.items() if key in retain}
    return result


def _is_replace_directive(element: Any) -> bool:
    return isinstance(element, dict) and element.get(_DIRECTIVE) == "replace" and len(element) == 1


def _merge_list(
    original: list[Any], patch: list[Any], path: tuple[str, ...], kind: str, what: str
) -> list[Any]:
    if any(_is_replace_directive(element) for element in patch):
        kept = [element for element in patch if not _is_replace_directive(element)]
        return _replace_list(kept, path, kind, what)
    field = path[-1] if path else ""
    if field in _SET_LISTS and not any(isinstance(item, dict | list) for item in original + patch):
        return original + [item for item in patch if item not in original]
    key = merge_key(path, kind)
    if key is None or not all(isinstance(element, dict) for element in original + patch):
        return _replace_list(patch, path, kind, what)

    result = list(original)
    for element in patch:
        if key not in element:
            raise RenderError(
                f"{what}: an element of {_show(path)} has no {key!r}; Kubernetes merges "
                f"{path[-1]} by {key}, so every patch element must name one"
            )
        position = next(
            (index for index, current in enumerate(result) if current.get(key) == element[key]),
            None,
        )
        if position is None:
            added = _merge_map({}, element, path, kind, what)
            if added is not _DELETED:
                result.append(added)
            continue
        merged = _merge_map(result[position], element, path, kind, what)
        if merged is _DELETED:
            del result[position]
        else:
            result[position] = merged
    return result


def _replace_list(patch: list[Any], path: tuple[str, ...], kind: str, what: str) -> list[Any]:
    values = [_fresh(element, path, kind, what) for element in patch]
    return [value for value in values if value is not _DELETED]


def _show(path: tuple[str, ...]) -> str:
    return ".".join(path) or "the top level"


def _patch_target(patch: dict[str, Any], *, what: str) -> tuple[str, str, str, str]:
    metadata = patch.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    api_version, kind = patch.get("apiVersion"), patch.get("kind")
    if not all(isinstance(value, str) and value for value in (api_version, kind, name)):
        raise RenderError(
            f"{what}: a strategic merge patch needs apiVersion, kind and metadata.name to "
            "say which resource it patches"
        )
    return str(api_version), str(kind), str(name), str(namespace or "")


def _describe_all(ids: list[ResourceId]) -> str:
    ordered = sorted(ids, key=lambda ident: (ident.kind, ident.namespace, ident.name))
    shown = ", ".join(f"{ident.kind}/{ident.name}" for ident in ordered[:20])
    return shown + (", …" if len(ids) > 20 else "") if ids else "none"


def apply_strategic_merge_patches(
    resources: list[dict[str, Any]], text: str, *, where: str
) -> list[dict[str, Any]]:
    """`resources` with every patch document of `text` applied, in order.

    Each document targets the resource with its apiVersion, kind and
    metadata.name (and metadata.namespace, when both give one). A top-level
    `$patch: delete` removes the resource.

    :raise RenderError: a patch targets no resource or several, or cannot be merged.
    :raise UnsafeYAML: `text` breaks the YAML limits.
    """
    if not text.strip():
        return resources
    what = f"strategic merge patches of {where}"
    patched = list(resources)
    for number, patch in enumerate(yamlsafe.load_all(text, what=what), start=1):
        api_version, kind, name, namespace = _patch_target(patch, what=f"{what}, patch {number}")
        ids = [identify(resource, what=where) for resource in patched]
        matches = [
            index
            for index, ident in enumerate(ids)
            if ident.api_version == api_version
            and ident.kind == kind
            and ident.name == name
            and (not namespace or not ident.namespace or ident.namespace == namespace)
        ]
        target = f"{kind} {api_version} {namespace + '/' if namespace else ''}{name}"
        if not matches:
            raise RenderError(
                f"{what}: patch {number} targets {target}, which is not among the rendered "
                f"resources ({_describe_all(ids)}); check its apiVersion, kind and metadata.name"
            )
        if len(matches) > 1:
            raise RenderError(
                f"{what}: patch {number} targets {target}, which matches {len(matches)} "
                "resources; add metadata.namespace to the patch"
            )
        index = matches[0]
        merged = strategic_merge(patched[index], patch, what=f"{what}, patch {number} ({target})")
        if merged is None:
            del patched[index]
        else:
            patched[index] = merged
    return patched


def apply_json6902_patches(
    resources: list[dict[str, Any]], patches: Sequence[Json6902Patch], *, where: str
) -> list[dict[str, Any]]:
    """`resources` with each JSON 6902 patch applied to its target, in order.

    A target is matched on group (empty means the core API), version (any when
    empty), kind and name; its `patch` is a YAML or JSON list of operations.

    :raise RenderError: a target matches no resource or several, or an operation fails.
    :raise UnsafeYAML: a patch text breaks the YAML limits.
    """
    patched = list(resources)
    for number, item in enumerate(patches, start=1):
        target = item.target
        shown = (
            f"{target.kind} {target.group + '/' if target.group else ''}"
            f"{target.version or '*'} {target.name}"
        )
        what = f"json6902 patch {number} of {where} (target {shown})"
        if not target.kind or not target.name:
            raise RenderError(f"{what}: the target needs at least kind and name")
        ids = [identify(resource, what=where) for resource in patched]
        matches = [
            index
            for index, ident in enumerate(ids)
            if ident.group == target.group
            and (not target.version or ident.version == target.version)
            and ident.kind == target.kind
            and ident.name == target.name
        ]
        if not matches:
            raise RenderError(
                f"{what}: no rendered resource matches the target ({_describe_all(ids)}); "
                "check group (empty for the core API), version, kind and name"
            )
        if len(matches) > 1:
            raise RenderError(f"{what}: the target matches {len(matches)} resources")
        operations = yamlsafe.load_value(item.patch, what=what)
        if not isinstance(operations, list):
            raise RenderError(
                f"{what}: the patch must be a list of operations such as "
                "[{op: replace, path: /spec/replicas, value: 2}]"
            )
        index = matches[0]
        try:
            result = jsonpatch.JsonPatch(operations).apply(patched[index])
        except (
            jsonpatch.JsonPatchException,
            jsonpatch.JsonPointerException,
            KeyError,
            TypeError,
            ValueError,
            IndexError,
        ) as exc:
            raise RenderError(f"{what}: {exc}") from exc
        if not isinstance(result, dict):
            raise RenderError(f"{what}: the patch replaced the whole resource with a non-object")
        patched[index] = result
    return patched
