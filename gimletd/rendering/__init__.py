"""Turn one environment config into the files of `<env>/<app>/` in the GitOps repository.

`render` is pure given its chart loader: the same environment config and chart
give the same bytes, and the only I/O is what the loader does (see
`gimletd.charts`). Its steps, in order:

1. the chart, by the chosen `RenderEngine`: HELM renders it here, FLUX writes a
   `HelmRelease` and its source for Flux to render in the cluster;
2. the raw `manifests` are appended;
3. `strategicMergePatches`, then `json6902Patches`, are applied (`patches.py`);
4. every resource becomes one file named `<kind>-<name>.yaml` (`resources.py`).

`release.json` is never produced here: the GitOps writer adds it.
"""

from __future__ import annotations

import enum
from typing import Any

from gimletd import yamlsafe
from gimletd.charts import ChartLoader
from gimletd.errors import ChartSourceError, RenderError
from gimletd.models import Manifest
from gimletd.rendering import flux, helm, patches, resources
from gimletd.rendering.helm import helm_available
from gimletd.rendering.resources import resource_filename

__all__ = ["RenderEngine", "helm_available", "render", "resource_filename"]


class RenderEngine(enum.StrEnum):
    """Who turns the chart into Kubernetes resources."""

    #: GimletD renders the chart and commits the resulting resources.
    HELM = "helm"
    #: GimletD commits a Flux `HelmRelease` and its source; Flux renders in the cluster.
    FLUX = "flux"


def render(
    manifest: Manifest, *, engine: RenderEngine, charts: ChartLoader | None
) -> dict[str, bytes]:
    """The files of `<env>/<app>/`: `{file name: YAML bytes}`, one resource per file.

    `manifest` must already have its templates resolved. `charts` may be None
    when no chart has to be fetched (no chart, or the FLUX engine).

    :raise RenderError: the environment config cannot be turned into resources.
    :raise ChartSourceError: the chart could not be fetched (retrying may help).
    :raise UnsafeYAML: some YAML input breaks the size, depth or alias limits.
    """
    engine = RenderEngine(engine)  # by value, so an equal enum from settings works too
    where = f"{manifest.env}/{manifest.app}"
    rendered: list[dict[str, Any]] = []
    if _has_chart(manifest):
        if engine is RenderEngine.HELM:
            rendered.extend(_helm(manifest, charts, where))
        else:
            rendered.extend(flux.flux_resources(manifest, where=where))
    if manifest.manifests.strip():
        rendered.extend(yamlsafe.load_all(manifest.manifests, what=f"manifests of {where}"))
    rendered = resources.flatten_lists(rendered, what=where)
    for resource in rendered:
        resources.identify(resource, what=where)
    rendered = patches.apply_strategic_merge_patches(
        rendered, manifest.strategic_merge_patches, where=where
    )
    rendered = patches.apply_json6902_patches(rendered, manifest.json6902_patches, where=where)
    return resources.serialise(rendered, what=where)


def _has_chart(manifest: Manifest) -> bool:
    """A `chart` with neither name nor repository (`chart: {}`) means no chart."""
    chart = manifest.chart
    return chart is not None and bool(chart.name.strip() or chart.repository.strip())


def _helm(manifest: Manifest, charts: ChartLoader | None, where: str) -> list[dict[str, Any]]:
    assert manifest.chart is not None
    if charts is None:
        raise RenderError(
            f"{where}: the environment config has a chart but no chart loader was given "
            "to render it with the Helm engine"
        )
    try:
        chart_dir = charts.fetch(manifest.chart)
    except ChartSourceError as exc:
        raise ChartSourceError(f"{where}: {exc}") from exc
    except RenderError as exc:
        raise RenderError(f"{where}: {exc}") from exc
    return helm.render_chart(manifest, chart_dir, where=where)
