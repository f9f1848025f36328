"""Kubernetes resources as files: who a resource is, and what its file is called.

Each rendered resource becomes one file in `<env>/<app>/`, named from its kind and
name so a reviewer finds `deployment-frontend.yaml` in a diff:

1. `<kind>-<name>.yaml`, lower case;
2. when two resources would share that name, they (only they) become
   `<kind>-<namespace>-<name>.yaml`;
3. when that still clashes, `<kind>.<group>-<namespace>-<name>.yaml` (group `core`
   for the core API);
4. when characters lost to sanitising still make two names equal, a short hash of
   the resource's identity is added before `.yaml`.

Characters other than `a-z`, `0-9`, `.` and `-` become `-`, names never start
with `.` or `-`, and overlong names are cut and given the hash, so every name is a
plain, safe file name that can never be `release.json`.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gimletd import yamlsafe
from gimletd.errors import RenderError

__all__ = [
    "ResourceId",
    "flatten_lists",
    "identify",
    "resource_filename",
    "serialise",
]

_UNSAFE = re.compile(r"[^a-z0-9.-]+")
_MAX_STEM = 200
_HASH_LENGTH = 8


@dataclass(frozen=True, order=True)
class ResourceId:
    """What makes a Kubernetes object unique: group, kind, namespace and name."""

    group: str
    kind: str
    namespace: str
    name: str
    version: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def describe(self) -> str:
        """`Deployment apps/v1 staging/frontend`, for messages."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {self.api_version} {where}"


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`): the core group is empty."""
    group, _, version = api_version.rpartition("/")
    return group, version


def identify(resource: Mapping[str, Any], *, what: str) -> ResourceId:
    """The identity of `resource`.

    :raise RenderError: apiVersion, kind or metadata.name is missing or not a string.
    """
    api_version, kind = resource.get("apiVersion"), resource.get("kind")
    metadata = resource.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    missing = [
        field
        for field, value in (("apiVersion", api_version), ("kind", kind), ("metadata.name", name))
        if not isinstance(value, str) or not value
    ]
    if missing:
        shown = kind if isinstance(kind, str) and kind else "a resource"
        if isinstance(name, str) and name:
            shown = f"{shown} {name}"
        raise RenderError(
            f"{what}: {shown} has no {', '.join(missing)}; every Kubernetes resource needs "
            "apiVersion, kind and metadata.name"
        )
    assert isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str)
    group, version = split_api_version(api_version)
    return ResourceId(
        group=group,
        kind=kind,
        namespace=str(namespace) if namespace else "",
        name=name,
        version=version,
    )


def flatten_lists(resources: Iterable[dict[str, Any]], *, what: str) -> list[dict[str, Any]]:
    """Resources with every `kind: List` (or `*List`) replaced by its items."""
    flat: list[dict[str, Any]] = []
    for resource in resources:
        kind = resource.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in resource:
            items = resource["items"] or []
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise RenderError(f"{what}: the items of a {kind} must be resources")
            flat.extend(flatten_lists(items, what=what))
        else:
            flat.append(resource)
    return flat


def _clean(part: str) -> str:
    return _UNSAFE.sub("-", part.lower()).lstrip(".-") or "unnamed"


def _short_hash(identity: ResourceId) -> str:
    text = "\0".join((identity.group, identity.kind, identity.namespace, identity.name))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def resource_filename(
    resource: Mapping[str, Any] | ResourceId, *, level: int = 0, what: str = "resource"
) -> str:
    """The file name of `resource`: `<kind>-<name>.yaml` at level 0 (see the module docstring).

    Level 1 adds the namespace (when there is one), level 2 also the API group,
    level 3 also a hash of the identity.
    """
    identity = resource if isinstance(resource, ResourceId) else identify(resource, what=what)
    kind = _clean(identity.kind)
    if level >= 2:
        kind = f"{kind}.{_clean(identity.group or 'core')}"
    parts = [kind]
    if level >= 1 and identity.namespace:
        parts.append(_clean(identity.namespace))
    parts.append(_clean(identity.name))
    stem = "-".join(parts)
    if level >= 3 or len(stem) > _MAX_STEM:
        stem = f"{stem[: _MAX_STEM - _HASH_LENGTH - 1]}-{_short_hash(identity)}"
    return f"{stem}.yaml"


def _same_object(identity: ResourceId) -> tuple[str, str, str, str]:
    return identity.group, identity.kind, identity.namespace, identity.name


def filenames(identities: list[ResourceId]) -> list[str]:
    """A distinct file name for each identity, in the same order (see the module docstring)."""
    levels = [0] * len(identities)
    while True:
        names = [
            resource_filename(ident, level=lvl)
            for ident, lvl in zip(identities, levels, strict=True)
        ]
        holders: defaultdict[str, list[int]] = defaultdict(list)
        for index, name in enumerate(names):
            holders[name].append(index)
        clashing = [index for indexes in holders.values() if len(indexes) > 1 for index in indexes]
        if not clashing or all(levels[index] == 3 for index in clashing):
            break
        for index in clashing:
            levels[index] = min(levels[index] + 1, 3)
    # Only equal identities get here (`serialise` refuses them first): number them.
    counts: defaultdict[str, int] = defaultdict(int)
    unique = []
    for name in names:
        counts[name] += 1
        unique.append(name if counts[name] == 1 else f"{name[:-5]}-{counts[name]}.yaml")
    return unique


def serialise(resources: Iterable[Mapping[str, Any]], *, what: str) -> dict[str, bytes]:
    """`{file name: YAML bytes}`, one resource per file, sorted by file name.

    :raise RenderError: a resource lacks apiVersion, kind or metadata.name, or the same
        object (group, kind, namespace, name) is defined twice.
    """
    listed = list(resources)
    identities = [identify(resource, what=what) for resource in listed]
    seen: dict[tuple[str, str, str, str], ResourceId] = {}
    for identity in identities:
        key = _same_object(identity)
        if key in seen:
            raise RenderError(
                f"{what}: {identity.describe()} is defined twice; remove one of them from the "
                "chart output, manifests or patches"
            )
        seen[key] = identity
    names = filenames(identities)
    files = {
        name: yamlsafe.dump(dict(resource)) for name, resource in zip(names, listed, strict=True)
    }
    return dict(sorted(files.items()))
