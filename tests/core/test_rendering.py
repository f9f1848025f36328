"""Rendering an environment config into the files of `<env>/<app>/`, by Helm or for Flux."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gimletd import yamlsafe
from gimletd.charts import CachingChartLoader
from gimletd.errors import ChartSourceError, RenderError, UnsafeYAML
from gimletd.models import Chart, Manifest
from gimletd.rendering import RenderEngine, helm_available, render, resource_filename
from tests.conftest import SHARED
from tests.support.charts import GIT_TAG, GitChartRepository

FIXTURES = SHARED / "fixtures"
SHA = "deae5dbaf237766240181fa397e923d3c5253112"


def seed_environment(env: str = "staging", **chart: str) -> Manifest:
    """An environment of the seed artifact, templates resolved as the release flow would."""
    text = (FIXTURES / "seed-artifact-restored.json").read_text()
    text = text.replace("{{ .CIRCLE_SHA1 }}", SHA).replace(
        "{{ .BRANCH | sanitizeDNSName }}", "new-feature"
    )
    data = json.loads(text)
    environment = next(item for item in data["environments"] if item["env"] == env)
    environment["chart"].update(chart)
    return Manifest.model_validate(environment)


def parse(files: dict[str, bytes], name: str) -> dict[str, Any]:
    return yamlsafe.load(files[name].decode(), what=name)


@pytest.fixture
def charts(tmp_path: Path) -> CachingChartLoader:
    return CachingChartLoader(tmp_path / "chart-cache")


def resource(kind: str, name: str, api_version: str = "v1", **metadata: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, **metadata}}


def manifests(*resources: dict[str, Any]) -> str:
    return "---\n".join(yamlsafe.dump(item).decode() for item in resources)


# --- Helm engine -----------------------------------------------------------------------------


def test_helm_is_available_here() -> None:
    assert helm_available()


def test_the_seed_staging_environment_renders_a_deployment_of_the_built_image(
    charts: CachingChartLoader, chart_repo_url: str
) -> None:
    manifest = seed_environment(repository=chart_repo_url)
    files = render(manifest, engine=RenderEngine.HELM, charts=charts)

    assert sorted(files) == [
        "configmap-frontend.yaml",
        "deployment-frontend.yaml",
        "ingress-frontend.yaml",
        "service-frontend.yaml",
    ]
    deployment = parse(files, "deployment-frontend.yaml")
    assert deployment["metadata"] == {
        "name": "frontend",
        "namespace": "staging",
        "labels": {
            "app.kubernetes.io/name": "onechart",
            "app.kubernetes.io/instance": "frontend",
            "helm.sh/chart": "onechart-0.10.0",
        },
    }
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"mycompany/frontend:{SHA}"
    assert container["imagePullPolicy"] == "Always"
    assert container["ports"] == [{"name": "http", "containerPort": 5000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthcheck", "port": 5000}

    assert parse(files, "configmap-frontend.yaml")["data"] == {"NODE_ENV": "production"}
    ingress = parse(files, "ingress-frontend.yaml")
    assert ingress["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt",
        "kubernetes.io/ingress.class": "nginx",
    }
    assert ingress["spec"]["tls"] == [
        {"hosts": ["frontend.staging.mycompany.com"], "secretName": "tls-frontend"}
    ]


def test_the_seed_preview_environment_has_no_configmap_and_its_own_names(
    charts: CachingChartLoader, chart_repo_url: str
) -> None:
    files = render(
        seed_environment("preview", repository=chart_repo_url),
        engine=RenderEngine.HELM,
        charts=charts,
    )
    assert sorted(files) == [
        "deployment-frontend-new-feature.yaml",
        "ingress-frontend-new-feature.yaml",
        "service-frontend-new-feature.yaml",
    ]
    assert (
        parse(files, "deployment-frontend-new-feature.yaml")["metadata"]["namespace"] == "preview"
    )


def test_files_are_exact_yaml_and_stable(charts: CachingChartLoader, chart_repo_url: str) -> None:
    """Same input, same bytes, from a fresh loader too; the layout of a file is fixed."""
    manifest = seed_environment(repository=chart_repo_url)
    first = render(manifest, engine=RenderEngine.HELM, charts=charts)
    second = render(manifest, engine=RenderEngine.HELM, charts=charts)
    assert first == second
    assert list(first) == sorted(first)
    assert first["service-frontend.yaml"] == (
        b"apiVersion: v1\n"
        b"kind: Service\n"
        b"metadata:\n"
        b"  name: frontend\n"
        b"  namespace: staging\n"
        b"  labels:\n"
        b"    app.kubernetes.io/name: onechart\n"
        b"    app.kubernetes.io/instance: frontend\n"
        b"    helm.sh/chart: onechart-0.10.0\n"
        b"spec:\n"
        b"  type: ClusterIP\n"
        b"  ports:\n"
        b"  - name: http\n"
        b"    port: 80\n"
        b"    targetPort: 5000\n"
        b"    protocol: TCP\n"
        b"  selector:\n"
        b"    app.kubernetes.io/name: onechart\n"
        b"    app.kubernetes.io/instance: frontend\n"
    )


def test_a_chart_from_git_or_a_local_path_renders_the_same_files(
    charts: CachingChartLoader,
    chart_repo_url: str,
    git_chart_url: str,
    git_chart_repo: GitChartRepository,
    onechart_dir: Path,
) -> None:
    expected = render(
        seed_environment(repository=chart_repo_url), engine=RenderEngine.HELM, charts=charts
    )
    tagged = git_chart_repo.chart_url(f"tag={GIT_TAG}")
    for chart in (
        {"repository": "", "name": git_chart_url},
        {"repository": "", "name": tagged},
        {"repository": "", "name": str(onechart_dir)},
    ):
        rendered = render(seed_environment(**chart), engine=RenderEngine.HELM, charts=charts)
        assert rendered == expected, chart


def test_notes_and_helm_test_hooks_are_dropped(
    charts: CachingChartLoader, onechart_dir: Path
) -> None:
    manifest = Manifest(app="web", env="dev", chart=Chart(name=str(onechart_dir)))
    files = render(manifest, engine=RenderEngine.HELM, charts=charts)
    assert sorted(files) == ["deployment-web.yaml", "service-web.yaml"]
    assert "release.json" not in files


def test_an_empty_namespace_renders_into_default(
    charts: CachingChartLoader, onechart_dir: Path
) -> None:
    manifest = Manifest(app="web", env="dev", chart=Chart(name=str(onechart_dir)))
    files = render(manifest, engine=RenderEngine.HELM, charts=charts)
    assert parse(files, "deployment-web.yaml")["metadata"]["namespace"] == "default"


def test_a_template_failure_names_the_environment(
    charts: CachingChartLoader, onechart_dir: Path
) -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        chart=Chart(name=str(onechart_dir)),
        values={"image": "not-a-map", "ingress": {"host": "x"}},
    )
    with pytest.raises(RenderError, match=r"^dev/web: Helm could not render the chart"):
        render(manifest, engine=RenderEngine.HELM, charts=charts)


def test_an_unreachable_chart_repository_names_the_environment_and_url(
    charts: CachingChartLoader,
) -> None:
    manifest = seed_environment(repository="https://chart.invalid")
    with pytest.raises(ChartSourceError) as caught:
        render(manifest, engine=RenderEngine.HELM, charts=charts)
    message = str(caught.value)
    assert message.startswith(
        "staging/frontend: chart onechart 0.10.0 could not be fetched from the Helm repository "
        "https://chart.invalid: "
    )


def test_a_chart_without_a_source_names_the_environment(charts: CachingChartLoader) -> None:
    manifest = seed_environment(repository="")
    with pytest.raises(RenderError, match=r"^staging/frontend: chart 'onechart' has no source"):
        render(manifest, engine=RenderEngine.HELM, charts=charts)


def test_a_chart_needs_a_loader_for_the_helm_engine(onechart_dir: Path) -> None:
    manifest = Manifest(app="web", env="dev", chart=Chart(name=str(onechart_dir)))
    with pytest.raises(RenderError, match="no chart loader"):
        render(manifest, engine=RenderEngine.HELM, charts=None)


# --- Raw manifests, patches and naming -------------------------------------------------------


def test_manifests_alone_need_no_chart_loader() -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        chart=Chart(),
        manifests=manifests(resource("ConfigMap", "settings"), resource("Secret", "token")),
    )
    files = render(manifest, engine=RenderEngine.HELM, charts=None)
    assert sorted(files) == ["configmap-settings.yaml", "secret-token.yaml"]


def test_manifests_and_patches_apply_after_the_chart(
    charts: CachingChartLoader, onechart_dir: Path
) -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        chart=Chart(name=str(onechart_dir)),
        manifests=manifests(resource("ConfigMap", "extra")),
        strategicMergePatches=(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
            "spec:\n  template:\n    spec:\n      containers:\n"
            "      - name: web\n        env: [{name: MODE, value: fast}]\n"
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: b}\n"
        ),
        json6902Patches=[
            {
                "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": "web"},
                "patch": "- {op: replace, path: /spec/replicas, value: 3}",
            }
        ],
    )
    files = render(manifest, engine=RenderEngine.HELM, charts=charts)
    deployment = parse(files, "deployment-web.yaml")
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "MODE", "value": "fast"}]
    assert container["image"] == "nginx:1.25.3"
    assert parse(files, "configmap-extra.yaml")["data"] == {"a": "b"}


def test_a_patch_for_a_missing_resource_names_it_and_the_environment() -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        manifests=manifests(resource("ConfigMap", "settings")),
        strategicMergePatches="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\n",
    )
    with pytest.raises(RenderError, match=r"dev/web.*targets Deployment apps/v1 api"):
        render(manifest, engine=RenderEngine.HELM, charts=None)


def test_a_resource_without_a_name_names_the_environment() -> None:
    manifest = Manifest(app="web", env="dev", manifests="apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(RenderError, match=r"^dev/web: ConfigMap has no metadata.name"):
        render(manifest, engine=RenderEngine.HELM, charts=None)


def test_a_list_is_flattened_into_its_items() -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": [resource("ConfigMap", "a")]}
    manifest = Manifest(app="web", env="dev", manifests=manifests(items))
    assert list(render(manifest, engine=RenderEngine.HELM, charts=None)) == ["configmap-a.yaml"]


def test_the_same_object_twice_is_an_error() -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        manifests=manifests(resource("ConfigMap", "a"), resource("ConfigMap", "a")),
    )
    with pytest.raises(RenderError, match="ConfigMap v1 a is defined twice"):
        render(manifest, engine=RenderEngine.HELM, charts=None)


def test_file_names_are_kind_and_name_in_lower_case() -> None:
    assert resource_filename(resource("Deployment", "frontend", "apps/v1")) == (
        "deployment-frontend.yaml"
    )
    assert resource_filename(resource("ClusterRole", "system:Controller:x_y")) == (
        "clusterrole-system-controller-x-y.yaml"
    )
    assert resource_filename(resource("ConfigMap", "..hidden")) == "configmap-hidden.yaml"


def test_colliding_names_add_namespace_then_group_then_a_hash() -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        manifests=manifests(
            resource("ConfigMap", "settings", namespace="blue"),
            resource("ConfigMap", "settings", namespace="green"),
            resource("Certificate", "tls", "cert-manager.io/v1", namespace="dev"),
            resource("Certificate", "tls", "other.example.com/v1", namespace="dev"),
            resource("Secret", "a_b"),
            resource("Secret", "a-b"),
            resource("Service", "settings", namespace="blue"),
        ),
    )
    files = render(manifest, engine=RenderEngine.HELM, charts=None)
    names = sorted(files)
    hashed = [name for name in names if name.startswith("secret.core-a-b-")]
    assert len(hashed) == 2 and hashed[0] != hashed[1]
    assert sorted(set(names) - set(hashed)) == [
        "certificate.cert-manager.io-dev-tls.yaml",
        "certificate.other.example.com-dev-tls.yaml",
        "configmap-blue-settings.yaml",
        "configmap-green-settings.yaml",
        "service-settings.yaml",
    ]
    assert parse(files, "configmap-green-settings.yaml")["metadata"]["namespace"] == "green"


def test_long_names_are_cut_with_a_hash() -> None:
    name = resource_filename(resource("ConfigMap", "x" * 300))
    assert len(name) <= 210 and name.endswith(".yaml")
    assert name != resource_filename(resource("ConfigMap", "x" * 299))


# --- Flux engine -----------------------------------------------------------------------------


def test_flux_writes_a_helm_release_and_its_helm_repository() -> None:
    manifest = seed_environment()
    files = render(manifest, engine=RenderEngine.FLUX, charts=None)
    assert sorted(files) == ["helmrelease-frontend.yaml", "helmrepository-frontend.yaml"]
    assert parse(files, "helmrelease-frontend.yaml") == {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "frontend", "namespace": "staging"},
        "spec": {
            "interval": "5m",
            "releaseName": "frontend",
            "chart": {
                "spec": {
                    "chart": "onechart",
                    "version": "0.10.0",
                    "sourceRef": {"kind": "HelmRepository", "name": "frontend"},
                }
            },
            "values": manifest.values,
        },
    }
    assert parse(files, "helmrepository-frontend.yaml") == {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "frontend", "namespace": "staging"},
        "spec": {"interval": "5m", "url": "https://chart.onechart.dev"},
    }


def test_flux_uses_an_oci_helm_repository_for_oci_charts() -> None:
    manifest = seed_environment(repository="", name="oci://ghcr.io/org/charts/onechart")
    files = render(manifest, engine=RenderEngine.FLUX, charts=None)
    assert parse(files, "helmrepository-frontend.yaml")["spec"] == {
        "interval": "5m",
        "url": "oci://ghcr.io/org/charts",
        "type": "oci",
    }
    chart = parse(files, "helmrelease-frontend.yaml")["spec"]["chart"]["spec"]
    assert chart["chart"] == "onechart"
    assert chart["version"] == "0.10.0"


def test_flux_uses_a_git_repository_for_git_charts(git_chart_url: str) -> None:
    manifest = seed_environment(repository="", name=git_chart_url)
    files = render(manifest, engine=RenderEngine.FLUX, charts=None)
    assert sorted(files) == ["gitrepository-frontend.yaml", "helmrelease-frontend.yaml"]
    source = parse(files, "gitrepository-frontend.yaml")
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert source["spec"] == {
        "interval": "5m",
        "url": git_chart_url.split("?")[0],
        "ref": {"branch": "main"},
    }
    assert parse(files, "helmrelease-frontend.yaml")["spec"]["chart"]["spec"] == {
        "chart": "./charts/onechart",
        "sourceRef": {"kind": "GitRepository", "name": "frontend"},
        "reconcileStrategy": "Revision",
    }


@pytest.mark.parametrize(
    ("name", "ref", "url"),
    [
        (
            "git@github.com:org/charts.git?tag=v1&path=/x/",
            {"tag": "v1"},
            "ssh://git@github.com/org/charts.git",
        ),
        (
            "https://h/charts.git?sha=abcdef1&path=/x/",
            {"commit": "abcdef1"},
            "https://h/charts.git",
        ),
    ],
)
def test_flux_git_refs_and_urls(name: str, ref: dict[str, str], url: str) -> None:
    files = render(
        seed_environment(repository="", name=name), engine=RenderEngine.FLUX, charts=None
    )
    spec = parse(files, "gitrepository-frontend.yaml")["spec"]
    assert spec["ref"] == ref and spec["url"] == url


def test_flux_refuses_a_local_chart(onechart_dir: Path) -> None:
    manifest = seed_environment(repository="", name=str(onechart_dir))
    with pytest.raises(
        RenderError, match="staging/frontend: a local chart path cannot be rendered by Flux"
    ):
        render(manifest, engine=RenderEngine.FLUX, charts=None)


def test_flux_needs_a_git_ref() -> None:
    manifest = seed_environment(repository="", name="https://h/charts.git?path=/x/")
    with pytest.raises(RenderError, match="names no branch, tag or sha"):
        render(manifest, engine=RenderEngine.FLUX, charts=None)


def test_flux_never_writes_a_password_to_the_gitops_repository() -> None:
    manifest = seed_environment(repository="https://user:s3cret@charts.example.com")
    with pytest.raises(RenderError) as caught:
        render(manifest, engine=RenderEngine.FLUX, charts=None)
    assert "holds a password" in str(caught.value) and "s3cret" not in str(caught.value)


def test_flux_output_can_be_patched() -> None:
    manifest = seed_environment()
    manifest.strategic_merge_patches = (
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\n"
        "metadata: {name: frontend}\nspec: {secretRef: {name: charts-auth}}\n"
    )
    files = render(manifest, engine=RenderEngine.FLUX, charts=None)
    assert parse(files, "helmrepository-frontend.yaml")["spec"]["secretRef"] == {
        "name": "charts-auth"
    }


def test_aliases_in_manifests_are_refused() -> None:
    manifest = Manifest(
        app="web",
        env="dev",
        manifests="apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: a}\ndata: *m\n",
    )
    with pytest.raises(UnsafeYAML, match=r"manifests of dev/web: YAML alias \*m"):
        render(manifest, engine=RenderEngine.HELM, charts=None)


def test_the_public_surface() -> None:
    import gimletd.rendering

    assert sorted(gimletd.rendering.__all__) == [
        "RenderEngine",
        "helm_available",
        "render",
        "resource_filename",
    ]


def test_rendering_imports_and_renders_for_flux_without_helm_or_pygit2() -> None:
    """helm-python-sdk and pygit2 are imported only when a chart is fetched or rendered."""
    script = (
        "import sys\n"
        "sys.modules['helm_python'] = None\n"
        "sys.modules['pygit2'] = None\n"
        "from gimletd.models import Chart, Manifest\n"
        "from gimletd.rendering import RenderEngine, helm_available, render\n"
        "assert not helm_available()\n"
        "chart = Chart(repository='https://charts.example.com', name='x', version='1')\n"
        "files = render(Manifest(app='web', env='dev', chart=chart), "
        "engine=RenderEngine.FLUX, charts=None)\n"
        "print(sorted(files))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "['helmrelease-web.yaml', 'helmrepository-web.yaml']"


class ForeignEngine(enum.StrEnum):
    """An enum with the same values, as a settings module might define its own."""

    HELM = "helm"
    FLUX = "flux"


def test_the_engine_is_matched_by_value(charts: CachingChartLoader, onechart_dir: Path) -> None:
    manifest = Manifest(app="web", env="dev", chart=Chart(name=str(onechart_dir)))
    files = render(manifest, engine=ForeignEngine.HELM, charts=charts)  # type: ignore[arg-type]
    assert "deployment-web.yaml" in files
