"""The Flux engine: describe the release for Flux's helm-controller instead of rendering it.

The output is a `HelmRelease` named after the app, with the environment
config's values inline, and the source it installs from, also named after the
app so that two apps never share (and fight over) one source object:

- a Helm repository or OCI registry -> `HelmRepository` (`type: oci` for OCI);
- a git chart URL -> `GitRepository` with the branch, tag or commit, and the
  chart's folder as the HelmRelease's chart path; as Flux defaults a missing ref
  to `master` rather than the remote's default branch, the URL must name one;
- a local chart directory cannot be reached from a cluster and is refused.

Credentials never go into the GitOps repository: a URL with a password is
refused; give Flux a `secretRef` by a strategic merge patch instead.
"""

from __future__ import annotations

import copy
from typing import Any, Final
from urllib.parse import urlsplit

from gimletd.charts import (
    ChartSource,
    GitRefKind,
    GitSource,
    HelmRepositorySource,
    LocalSource,
    OCISource,
    parse_chart_source,
    redact_url,
)
from gimletd.errors import RenderError
from gimletd.models import Manifest
from gimletd.rendering.helm import DEFAULT_NAMESPACE

__all__ = [
    "HELM_RELEASE_API_VERSION",
    "INTERVAL",
    "SOURCE_API_VERSION",
    "flux_resources",
]

HELM_RELEASE_API_VERSION: Final = "helm.toolkit.fluxcd.io/v2"
SOURCE_API_VERSION: Final = "source.toolkit.fluxcd.io/v1"
#: How often Flux reconciles the release and checks its source.
INTERVAL: Final = "5m"


def flux_resources(manifest: Manifest, *, where: str) -> list[dict[str, Any]]:
    """The `HelmRelease` for `manifest` and its source object.

    :raise RenderError: the chart is local, its URL holds a password, or a git URL names no ref.
    """
    assert manifest.chart is not None
    try:
        source = parse_chart_source(manifest.chart)
    except RenderError as exc:
        raise RenderError(f"{where}: {exc}") from exc
    namespace = manifest.namespace or DEFAULT_NAMESPACE
    metadata = {"name": manifest.app, "namespace": namespace}
    source_object = _source(source, metadata, where)
    chart_spec: dict[str, Any] = {"chart": _chart_name(source)}
    if isinstance(source, HelmRepositorySource | OCISource) and source.version:
        chart_spec["version"] = source.version
    chart_spec["sourceRef"] = {"kind": source_object["kind"], "name": manifest.app}
    if isinstance(source, GitSource):
        chart_spec["reconcileStrategy"] = "Revision"
    spec: dict[str, Any] = {
        "interval": INTERVAL,
        "releaseName": manifest.app,
        "chart": {"spec": chart_spec},
    }
    if manifest.values:
        spec["values"] = copy.deepcopy(manifest.values)
    release = {
        "apiVersion": HELM_RELEASE_API_VERSION,
        "kind": "HelmRelease",
        "metadata": dict(metadata),
        "spec": spec,
    }
    return [release, source_object]


def _chart_name(source: ChartSource) -> str:
    if isinstance(source, GitSource):
        return f"./{source.path}" if source.path else "./"
    assert isinstance(source, HelmRepositorySource | OCISource)
    return source.name


def _source(source: ChartSource, metadata: dict[str, str], where: str) -> dict[str, Any]:
    if isinstance(source, LocalSource):
        raise RenderError(
            f"{where}: a local chart path cannot be rendered by Flux ({source.path} is not "
            "reachable from the cluster); publish the chart to a Helm repository, OCI "
            "registry or git repository"
        )
    if isinstance(source, GitSource):
        return _git_repository(source, metadata, where)
    url = source.url if isinstance(source, HelmRepositorySource) else source.repository
    _refuse_password(url, where)
    spec: dict[str, Any] = {"interval": INTERVAL, "url": url}
    if isinstance(source, OCISource):
        spec["type"] = "oci"
    return {
        "apiVersion": SOURCE_API_VERSION,
        "kind": "HelmRepository",
        "metadata": dict(metadata),
        "spec": spec,
    }


def _git_repository(source: GitSource, metadata: dict[str, str], where: str) -> dict[str, Any]:
    if source.ref_kind is GitRefKind.DEFAULT:
        raise RenderError(
            f"{where}: the git chart URL {redact_url(source.url)} names no branch, tag or sha; "
            "Flux would use branch master, not the remote's default branch, so add "
            "?branch=<name> (or tag=, sha=) to the chart URL"
        )
    _refuse_password(source.url, where)
    field = {GitRefKind.BRANCH: "branch", GitRefKind.TAG: "tag", GitRefKind.SHA: "commit"}
    return {
        "apiVersion": SOURCE_API_VERSION,
        "kind": "GitRepository",
        "metadata": dict(metadata),
        "spec": {
            "interval": INTERVAL,
            "url": _flux_git_url(source.url),
            "ref": {field[source.ref_kind]: source.ref},
        },
    }


def _flux_git_url(url: str) -> str:
    """Flux wants `ssh://user@host/path` where git also takes `user@host:path`."""
    if "://" in url:
        return url
    user_host, _, path = url.partition(":")
    return f"ssh://{user_host}/{path.lstrip('/')}"


def _refuse_password(url: str, where: str) -> None:
    if "://" in url and urlsplit(url).password is not None:
        raise RenderError(
            f"{where}: the chart URL {redact_url(url)} holds a password, which would be "
            "written to the GitOps repository; remove it and give Flux a secretRef instead"
        )
