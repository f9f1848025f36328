"""The Helm engine: render a chart directory offline with helm-python-sdk.

`helm_python` loads a native library at import, so it is imported only when a
chart is rendered; `gimletd.rendering` stays importable (for the Flux engine and
raw manifests) where the wheel is missing. `helm_available()` says whether it works.

What `helm template` would print is kept, except what does not belong in a
GitOps repository: NOTES.txt, empty documents and Helm test hooks. CRDs from the
chart's `crds/` folder come first, as `helm template --include-crds` puts them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from gimletd import yamlsafe
from gimletd.errors import RenderError
from gimletd.models import Manifest

__all__ = ["DEFAULT_NAMESPACE", "TEST_HOOKS", "helm_available", "render_chart"]

#: The namespace a release renders into when the environment config names none.
DEFAULT_NAMESPACE = "default"
#: `helm.sh/hook` values that mark `helm test` pods, which are not part of a release.
TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})


@functools.cache
def helm_available() -> bool:
    """Whether helm-python-sdk and its native library can be loaded here."""
    try:
        import helm_python  # noqa: F401
    except Exception:  # ImportError, or HelmLibraryError when the native library is absent
        return False
    return True


def _is_test_hook(resource: dict[str, Any]) -> bool:
    metadata = resource.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    hooks = annotations.get("helm.sh/hook") if isinstance(annotations, dict) else None
    if not isinstance(hooks, str):
        return False
    return any(hook.strip() in TEST_HOOKS for hook in hooks.split(","))


def render_chart(manifest: Manifest, chart_dir: Path, *, where: str) -> list[dict[str, Any]]:
    """The resources the chart in `chart_dir` renders for `manifest`'s values.

    The release is named after the app, in the environment config's namespace.

    :raise RenderError: helm is not available, the chart cannot be loaded, or a template fails.
    :raise UnsafeYAML: a template renders YAML that breaks the limits.
    """
    if not helm_available():
        raise RenderError(
            f"{where}: helm-python-sdk is not installed on this worker, so charts cannot be "
            "rendered with the Helm engine; install it or use the Flux engine"
        )
    import helm_python as helm

    namespace = manifest.namespace or DEFAULT_NAMESPACE
    try:
        with helm.Chart.load(chart_dir) as chart:
            label = f"chart {chart.name} {chart.version}"
            rendered = chart.render(dict(manifest.values), name=manifest.app, namespace=namespace)
            crds = chart.crds
    except helm.HelmError as exc:
        raise RenderError(
            f"{where}: Helm could not render the chart in {chart_dir}: {exc}. Check the "
            "environment config's values against the chart"
        ) from exc

    resources: list[dict[str, Any]] = []
    for crd in sorted(crds, key=lambda item: item.get("filename") or item.get("name", "")):
        source = crd.get("filename") or crd.get("name", "")
        resources.extend(
            yamlsafe.load_all(crd.get("data", ""), what=f"{where}: CRD {source} of {label}")
        )
    for template in sorted(rendered):
        if Path(template).name == "NOTES.txt" or not rendered[template].strip():
            continue
        documents = yamlsafe.load_all(
            rendered[template], what=f"{where}: template {template} of {label}"
        )
        resources.extend(document for document in documents if not _is_test_hook(document))
    return resources
