"""Chart sources: which form a chart names, and fetching each form once into the cache."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from gimletd import yamlsafe
from gimletd.charts import (
    CachingChartLoader,
    GitRefKind,
    GitSource,
    HelmRepositorySource,
    LocalSource,
    OCISource,
    parse_chart_source,
    redact_url,
)
from gimletd.errors import ChartSourceError, RenderError
from gimletd.models import Chart
from tests.support.charts import (
    GIT_TAG,
    ChartRepository,
    GitChartRepository,
    commit_directory,
    copy_chart,
)


def chart_version(chart_dir: Path) -> str:
    metadata = yamlsafe.load((chart_dir / "Chart.yaml").read_text(), what="Chart.yaml")
    return str(metadata["version"])


@pytest.fixture
def closed_port() -> int:
    """A localhost port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def loader(tmp_path: Path) -> CachingChartLoader:
    return CachingChartLoader(tmp_path / "cache")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- parse_chart_source ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "expected"),
    [
        (
            Chart(repository="https://chart.onechart.dev", name="onechart", version="0.10.0"),
            HelmRepositorySource("https://chart.onechart.dev", "onechart", "0.10.0"),
        ),
        (
            Chart(name="oci://ghcr.io/org/charts/onechart", version="1.0.0"),
            OCISource("oci://ghcr.io/org/charts/onechart", "1.0.0"),
        ),
        (
            Chart(repository="oci://ghcr.io/org/charts/", name="onechart", version="1.0.0"),
            OCISource("oci://ghcr.io/org/charts/onechart", "1.0.0"),
        ),
        (
            Chart(
                name="https://github.com/gimlet-io/onechart.git?branch=main&path=/charts/onechart/"
            ),
            GitSource(
                "https://github.com/gimlet-io/onechart.git",
                GitRefKind.BRANCH,
                "main",
                "charts/onechart",
            ),
        ),
        (
            Chart(name="file:///srv/charts.git?tag=v1.2.0&path=/charts/x/"),
            GitSource("file:///srv/charts.git", GitRefKind.TAG, "v1.2.0", "charts/x"),
        ),
        (
            Chart(name="ssh://git@github.com/org/charts.git?sha=0123abcd"),
            GitSource("ssh://git@github.com/org/charts.git", GitRefKind.SHA, "0123abcd", ""),
        ),
        (
            Chart(name="git@github.com:gimlet-io/onechart.git?path=/charts/onechart/"),
            GitSource(
                "git@github.com:gimlet-io/onechart.git", GitRefKind.DEFAULT, "", "charts/onechart"
            ),
        ),
        (
            Chart(name="https://github.com/org/charts.git"),
            GitSource("https://github.com/org/charts.git", GitRefKind.DEFAULT, "", ""),
        ),
        (Chart(name="/srv/charts/onechart"), LocalSource("/srv/charts/onechart")),
        (Chart(name="./charts/onechart"), LocalSource("./charts/onechart")),
        (Chart(name="../onechart"), LocalSource("../onechart")),
        (Chart(name="charts/onechart"), LocalSource("charts/onechart")),
    ],
)
def test_parse_chart_source_recognises_each_form(chart: Chart, expected: object) -> None:
    assert parse_chart_source(chart) == expected


def test_a_bare_chart_name_without_repository_is_an_error_listing_the_forms() -> None:
    """The Go original's `repository: ""`, `name: onechart` names no source at all."""
    with pytest.raises(RenderError) as caught:
        parse_chart_source(Chart(repository="", name="onechart", version="0.10.0"))
    message = str(caught.value)
    assert "'onechart' has no source" in message
    assert "chart.repository is empty" in message
    assert "https://charts.example.com" in message and "oci://" in message
    assert ".git?branch=main&path=" in message and "./charts/onechart" in message


@pytest.mark.parametrize(
    ("chart", "message"),
    [
        (Chart(name=""), "chart.name is empty"),
        (Chart(repository="ftp://charts.example.com", name="x"), "not an http"),
        (Chart(repository="https://charts.example.com", name="a/b"), "not a chart name"),
        (Chart(name="https://h/r.git?branch=a&tag=b"), "gives branch and tag"),
        (Chart(name="https://h/r.git?ref=main"), "unknown parameters"),
        (Chart(name="https://h/r.git?path=/charts/../../etc"), "'..'"),
        (Chart(name="https://h/r.git?sha=not-hex"), "not a hexadecimal commit"),
        (Chart(name="https://h/r.git?branch=a..b"), "not a valid git ref"),
        (Chart(name="https://h/r.git?branch=a&branch=b"), "repeats"),
    ],
)
def test_malformed_chart_sources_are_render_errors(chart: Chart, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        parse_chart_source(chart)


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url("https://user:s3cret@host:8443/x") == "https://user:***@host:8443/x"
    assert redact_url("https://host/x") == "https://host/x"
    assert "s3cret" not in str(parse_chart_source(Chart(name="https://u:s3cret@h/r.git")))


def test_messages_never_show_a_password() -> None:
    with pytest.raises(RenderError) as caught:
        parse_chart_source(Chart(name="https://u:s3cret@h/r.git?nope=1"))
    assert "s3cret" not in str(caught.value)


# --- Helm repositories -----------------------------------------------------------------------


def test_a_repository_chart_is_fetched_and_unpacked(
    loader: CachingChartLoader, chart_repo_url: str
) -> None:
    path = loader.fetch(Chart(repository=chart_repo_url, name="onechart", version="0.10.0"))
    assert (path / "templates" / "deployment.yaml").is_file()
    assert chart_version(path) == "0.10.0"
    assert path.is_relative_to(loader.cache_dir)
    assert list((loader.cache_dir / "tmp").iterdir()) == []


def test_a_pinned_chart_is_downloaded_once(tmp_path: Path, chart_repo: ChartRepository) -> None:
    """The second fetch, even by another loader on the same cache, does not hit the server."""
    chart = Chart(repository=chart_repo.url, name="onechart", version="0.10.0")
    before = len(chart_repo.requests())
    first = CachingChartLoader(tmp_path / "cache").fetch(chart)
    downloaded = chart_repo.requests()[before:]
    assert "/onechart-0.10.0.tgz" in downloaded

    loader = CachingChartLoader(tmp_path / "cache")
    after_first = len(chart_repo.requests())
    assert loader.fetch(chart) == first
    assert loader.fetch(chart) == first
    assert chart_repo.requests()[after_first:] == []


def test_concurrent_fetches_download_once(tmp_path: Path, chart_repo: ChartRepository) -> None:
    chart = Chart(repository=chart_repo.url, name="onechart", version="0.10.0")
    loaders = [CachingChartLoader(tmp_path / "cache") for _ in range(4)]
    before = len(chart_repo.requests())
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda lo=lo: results.append(lo.fetch(chart))) for lo in loaders
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert chart_repo.requests()[before:].count("/onechart-0.10.0.tgz") == 1


def test_an_unpinned_chart_resolves_the_newest_version(
    loader: CachingChartLoader, chart_repo_url: str
) -> None:
    path = loader.fetch(Chart(repository=chart_repo_url, name="onechart"))
    assert chart_version(path) == "0.10.0"


def test_a_missing_version_names_the_repository(
    loader: CachingChartLoader, chart_repo_url: str
) -> None:
    with pytest.raises(ChartSourceError, match=f"onechart 9.9.9 .*{chart_repo_url}"):
        loader.fetch(Chart(repository=chart_repo_url, name="onechart", version="9.9.9"))


def test_an_unresolvable_repository_names_its_url(loader: CachingChartLoader) -> None:
    with pytest.raises(ChartSourceError) as caught:
        loader.fetch(Chart(repository="https://chart.invalid", name="onechart", version="0.10.0"))
    assert "could not be fetched from the Helm repository https://chart.invalid" in str(
        caught.value
    )
    assert "reachable from the GimletD worker" in str(caught.value)


def test_a_closed_port_names_the_url(loader: CachingChartLoader, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(
        ChartSourceError, match=f"could not be fetched from the Helm repository {url}"
    ):
        loader.fetch(Chart(repository=url, name="onechart", version="0.10.0"))
    assert list((loader.cache_dir / "charts").iterdir()) == []


def test_an_unreachable_oci_registry_names_the_reference(
    loader: CachingChartLoader, closed_port: int
) -> None:
    reference = f"oci://127.0.0.1:{closed_port}/charts/onechart"
    with pytest.raises(
        ChartSourceError, match=f"could not be fetched from the OCI registry {reference}"
    ):
        loader.fetch(Chart(name=reference, version="0.10.0"))


# --- git repositories ------------------------------------------------------------------------


def test_a_git_chart_is_extracted_from_the_branch(
    loader: CachingChartLoader, git_chart_url: str
) -> None:
    path = loader.fetch(Chart(name=git_chart_url))
    assert chart_version(path) == "0.10.0"
    assert (path / "templates" / "_helpers.tpl").is_file()
    assert not (path / "charts").exists()  # only the subtree at path=


@pytest.mark.parametrize("query", ["", f"tag={GIT_TAG}", "sha={commit}", "sha={short}"])
def test_a_git_chart_by_default_branch_tag_or_sha(
    loader: CachingChartLoader, git_chart_repo: GitChartRepository, query: str
) -> None:
    query = query.format(commit=git_chart_repo.commit, short=git_chart_repo.commit[:10])
    url = f"{git_chart_repo.base_url}?{query}&path=/charts/onechart/".replace("?&", "?")
    assert chart_version(loader.fetch(Chart(name=url))) == "0.10.0"


def test_a_branch_is_refetched_only_after_the_refresh_interval(tmp_path: Path) -> None:
    chart_dir = copy_chart(tmp_path / "onechart")
    repo_path = tmp_path / "charts.git"
    commit_directory(repo_path, chart_dir)
    clock = FakeClock()
    loader = CachingChartLoader(tmp_path / "cache", refresh_seconds=300, clock=clock)
    chart = Chart(name=f"{repo_path.as_uri()}?branch=main&path=/charts/onechart/")
    first = loader.fetch(chart)

    text = (chart_dir / "Chart.yaml").read_text().replace("0.10.0", "0.11.0")
    (chart_dir / "Chart.yaml").write_text(text)
    commit_directory(repo_path, chart_dir, message="Bump the chart")

    clock.now += 299
    assert loader.fetch(chart) == first
    clock.now += 1
    second = loader.fetch(chart)
    assert second != first
    assert chart_version(second) == "0.11.0"
    assert chart_version(first) == "0.10.0"  # the old commit's chart stays as it was


def test_a_fetched_tag_needs_no_network(tmp_path: Path) -> None:
    """Tags and shas are immutable: once in the mirror they are used without fetching."""
    repo_path = tmp_path / "charts.git"
    commit = commit_directory(repo_path, copy_chart(tmp_path / "onechart"))
    pygit2.Repository(str(repo_path)).references.create("refs/tags/v1", pygit2.Oid(hex=commit))
    chart = Chart(name=f"{repo_path.as_uri()}?tag=v1&path=/charts/onechart/")
    first = CachingChartLoader(tmp_path / "cache", refresh_seconds=0).fetch(chart)

    repo_path.rename(tmp_path / "gone.git")
    assert CachingChartLoader(tmp_path / "cache", refresh_seconds=0).fetch(chart) == first


def test_a_missing_git_repository_names_the_url(tmp_path: Path, loader: CachingChartLoader) -> None:
    url = (tmp_path / "missing.git").as_uri()
    with pytest.raises(ChartSourceError, match=f"could not fetch from {url}"):
        loader.fetch(Chart(name=f"{url}?branch=main&path=/charts/onechart/"))


def test_a_missing_branch_is_named(
    loader: CachingChartLoader, git_chart_repo: GitChartRepository
) -> None:
    with pytest.raises(ChartSourceError, match="branch nope"):
        loader.fetch(Chart(name=git_chart_repo.chart_url("branch=nope")))


def test_a_missing_path_is_named(
    loader: CachingChartLoader, git_chart_repo: GitChartRepository
) -> None:
    url = f"{git_chart_repo.base_url}?branch=main&path=/charts/other/"
    with pytest.raises(ChartSourceError, match="has no /charts/other"):
        loader.fetch(Chart(name=url))


def test_an_unreachable_git_host_names_the_url(
    loader: CachingChartLoader, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/org/charts.git"
    with pytest.raises(ChartSourceError, match=f"could not fetch from {url}"):
        loader.fetch(Chart(name=f"{url}?branch=main&path=/charts/onechart/"))


def test_file_urls_are_refused_when_local_sources_are_not_allowed(
    tmp_path: Path, git_chart_url: str
) -> None:
    loader = CachingChartLoader(tmp_path / "cache", allow_local=False)
    with pytest.raises(RenderError, match="file:// chart URLs are not allowed"):
        loader.fetch(Chart(name=git_chart_url))


# --- local directories -----------------------------------------------------------------------


@pytest.fixture
def in_charts_dir(monkeypatch: pytest.MonkeyPatch, onechart_dir: Path) -> Iterator[None]:
    monkeypatch.chdir(onechart_dir.parent)
    yield


def test_an_absolute_local_chart_is_used_in_place(
    loader: CachingChartLoader, onechart_dir: Path
) -> None:
    assert loader.fetch(Chart(name=str(onechart_dir))) == onechart_dir
    assert list((loader.cache_dir / "charts").iterdir()) == []


@pytest.mark.usefixtures("in_charts_dir")
def test_a_relative_local_chart_is_resolved_from_the_working_directory(
    loader: CachingChartLoader, onechart_dir: Path
) -> None:
    assert loader.fetch(Chart(name="./onechart")) == onechart_dir
    assert loader.fetch(Chart(name="../charts/onechart")) == onechart_dir


def test_a_missing_local_chart_says_where_it_looked(
    tmp_path: Path, loader: CachingChartLoader
) -> None:
    with pytest.raises(ChartSourceError, match=r"no Chart.yaml in .*nothing-here"):
        loader.fetch(Chart(name=str(tmp_path / "nothing-here")))


def test_local_charts_can_be_disallowed(tmp_path: Path, onechart_dir: Path) -> None:
    loader = CachingChartLoader(tmp_path / "cache", allow_local=False)
    with pytest.raises(RenderError, match="local chart paths are not allowed"):
        loader.fetch(Chart(name=str(onechart_dir)))


def test_fetch_refuses_a_bare_chart_name(loader: CachingChartLoader) -> None:
    with pytest.raises(RenderError, match="has no source"):
        loader.fetch(Chart(repository="", name="onechart", version="0.10.0"))


def test_the_session_repository_serves_other_processes(tmp_path: Path, chart_repo_url: str) -> None:
    """End-to-end tests start workers that fetch from the same URL."""
    script = (
        "import sys; from pathlib import Path\n"
        "from gimletd.charts import CachingChartLoader\n"
        "from gimletd.models import Chart\n"
        "chart = Chart(repository=sys.argv[1], name='onechart', version='0.10.0')\n"
        "print(CachingChartLoader(Path(sys.argv[2])).fetch(chart))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, chart_repo_url, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (Path(result.stdout.strip()) / "Chart.yaml").is_file()
