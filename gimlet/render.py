"""`gimlet manifest template`: an environment config rendered locally by GimletD's own core.

The variables are an artifact's (its context, items and version built-ins),
then a vars file's; the config's templates are resolved and its chart rendered
with the same functions a worker uses, so the output is what a release commits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from gimlet import artifacts
from gimletd.charts import CachingChartLoader
from gimletd.errors import GimletdError
from gimletd.models import Artifact, Manifest
from gimletd.rendering import RenderEngine, helm_available, render
from gimletd.templating import resolve_manifest
from gimletd.variables import artifact_variables


def render_locally(path: Path, *, vars_path: Path | None, artifact_path: Path | None) -> str:
    """The rendered files of the environment config at `path`, as YAML documents.

    :raise ValueError: the config, the variables or the rendering failed; the
        message says which and why.
    """
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    variables: dict[str, str] = {}
    if artifact_path is not None:
        variables |= artifact_variables(Artifact.model_validate(artifacts.read(artifact_path)))
    if vars_path is not None:
        variables |= artifacts.vars_file(vars_path)
    engine = RenderEngine.HELM if helm_available() else RenderEngine.FLUX
    try:
        manifest = resolve_manifest(Manifest.model_validate(config), variables)
        with tempfile.TemporaryDirectory(prefix="gimlet-charts-") as cache:
            charts = CachingChartLoader(Path(cache), refresh_seconds=0, allow_local=True)
            files = render(manifest, engine=engine, charts=charts)
    except (GimletdError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    return "".join(f"---\n# {name}\n{content.decode()}" for name, content in sorted(files.items()))
