"""Charts from an OCI registry, pulled by the Helm engine from a real registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gimletd.charts import CachingChartLoader
from gimletd.errors import ChartSourceError
from gimletd.models import Chart
from tests.support.ociregistry import OciRegistry


def loader(tmp_path: Path, registry: OciRegistry) -> CachingChartLoader:
    return CachingChartLoader(tmp_path / "cache", plain_http_registries=frozenset({registry.host}))


@pytest.mark.parametrize("form", ["name", "repository"])
def test_a_chart_is_pulled_from_an_oci_registry(
    oci_registry: OciRegistry, tmp_path: Path, form: str
) -> None:
    """Both spellings: `name: oci://host/charts/onechart`, or the registry in `repository`."""
    chart = (
        Chart(name=f"{oci_registry.charts}/onechart", version="0.10.0")
        if form == "name"
        else Chart(repository=oci_registry.charts, name="onechart", version="0.10.0")
    )
    directory = loader(tmp_path, oci_registry).fetch(chart)
    assert "name: onechart" in (directory / "Chart.yaml").read_text()
    assert (directory / "templates").is_dir()


def test_a_registry_not_listed_for_plain_http_is_reached_over_https_and_fails_clearly(
    oci_registry: OciRegistry, tmp_path: Path
) -> None:
    plain = CachingChartLoader(tmp_path / "cache")
    with pytest.raises(ChartSourceError, match=re.escape(oci_registry.host)):
        plain.fetch(Chart(repository=oci_registry.charts, name="onechart", version="0.10.0"))


def test_a_missing_version_in_the_registry_names_the_chart(
    oci_registry: OciRegistry, tmp_path: Path
) -> None:
    with pytest.raises(ChartSourceError, match=r"onechart 9\.9\.9"):
        loader(tmp_path, oci_registry).fetch(
            Chart(repository=oci_registry.charts, name="onechart", version="9.9.9")
        )
