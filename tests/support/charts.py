"""Chart sources on this machine: a Helm repository over local HTTP and a bare git repository.

The machine running the tests has no internet, so `tests/charts/onechart` (see
`tests/charts/README.md`) is published to both, once per session. The HTTP
server is our own `pytest_httpserver.HTTPServer` on a free port, not the shared
`httpserver` fixture, whose per-test `clear()` would drop the repository's
files; it runs until the session ends, so processes that end-to-end tests start
can fetch from the URL too.

Register with `pytest_plugins = ["tests.support.charts"]`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from pytest_httpserver import HTTPServer

CHARTS_DIR = Path(__file__).resolve().parents[1] / "charts"
ONECHART_DIR = CHARTS_DIR / "onechart"
ONECHART_VERSION = "0.10.0"
GIT_CHART_PATH = "charts/onechart"
GIT_BRANCH = "main"
GIT_TAG = f"onechart-{ONECHART_VERSION}"

__all__ = [
    "GIT_BRANCH",
    "GIT_CHART_PATH",
    "GIT_TAG",
    "ONECHART_DIR",
    "ONECHART_VERSION",
    "ChartRepository",
    "GitChartRepository",
    "chart_repo",
    "chart_repo_url",
    "commit_directory",
    "copy_chart",
    "git_chart_repo",
    "git_chart_url",
    "onechart_dir",
    "publish_chart_repository",
]


@dataclass(frozen=True)
class ChartRepository:
    """A Helm chart repository served over HTTP from `directory`."""

    url: str
    server: HTTPServer
    directory: Path

    def requests(self) -> list[str]:
        """The paths requested so far, in order, to tell whether a fetch hit the network."""
        return [request.path for request, _ in self.server.log]


@dataclass(frozen=True)
class GitChartRepository:
    """A bare git repository holding the chart at `GIT_CHART_PATH` on `GIT_BRANCH`."""

    path: Path
    commit: str

    @property
    def base_url(self) -> str:
        return self.path.as_uri()

    def chart_url(self, query: str = f"branch={GIT_BRANCH}") -> str:
        """The Go original's git chart URL, e.g. `file:///…/charts.git?branch=main&path=…`."""
        return f"{self.base_url}?{query}&path=/{GIT_CHART_PATH}/"


def publish_chart_repository(chart_dirs: list[Path], directory: Path) -> ChartRepository:
    """Package `chart_dirs` into `directory` and serve it as a Helm repository; call `stop`."""
    import helm_python as helm

    directory.mkdir(parents=True, exist_ok=True)
    for chart_dir in chart_dirs:
        helm.package(chart_dir, destination=directory)
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    helm.repo_index_generate(directory, base_url=url)
    for path in sorted(directory.iterdir()):
        content_type = "text/yaml" if path.suffix == ".yaml" else "application/gzip"
        server.expect_request(f"/{path.name}").respond_with_data(
            path.read_bytes(), content_type=content_type
        )
    return ChartRepository(url=url, server=server, directory=directory)


def _tree(repo: pygit2.Repository, directory: Path) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for path in sorted(directory.iterdir()):
        if path.is_dir():
            builder.insert(path.name, _tree(repo, path), pygit2.enums.FileMode.TREE)
        else:
            blob = repo.create_blob(path.read_bytes())
            builder.insert(path.name, blob, pygit2.enums.FileMode.BLOB)
    return builder.write()


def commit_directory(
    repo_path: Path,
    chart_dir: Path,
    *,
    subdir: str = GIT_CHART_PATH,
    branch: str = GIT_BRANCH,
    message: str = "Add the chart",
) -> str:
    """Commit `chart_dir` as `subdir` on `branch` of the bare repository at `repo_path`.

    The repository is created when missing, with `branch` as its default branch.
    Returns the new commit id.
    """
    if repo_path.exists():
        repo = pygit2.Repository(str(repo_path))
    else:
        repo = pygit2.init_repository(str(repo_path), bare=True, initial_head=branch)
    tree = _tree(repo, chart_dir)
    for segment in reversed(subdir.strip("/").split("/")):
        builder = repo.TreeBuilder()
        builder.insert(segment, tree, pygit2.enums.FileMode.TREE)
        tree = builder.write()
    ref = f"refs/heads/{branch}"
    parents = [repo.references[ref].target] if ref in repo.references else []
    signature = pygit2.Signature("GimletD tests", "tests@gimletd.invalid", int(time.time()), 0)
    commit = repo.create_commit(ref, signature, signature, message, tree, parents)
    repo.free()
    return str(commit)


@pytest.fixture(scope="session")
def onechart_dir() -> Path:
    """The hand-written test chart, `tests/charts/onechart`."""
    return ONECHART_DIR


@pytest.fixture(scope="session")
def chart_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepository]:
    """`onechart` 0.10.0 in a Helm repository served on 127.0.0.1 for the whole session."""
    repository = publish_chart_repository([ONECHART_DIR], tmp_path_factory.mktemp("chart-repo"))
    yield repository
    if repository.server.is_running():
        repository.server.stop()


@pytest.fixture(scope="session")
def chart_repo_url(chart_repo: ChartRepository) -> str:
    """The base URL of the session's Helm repository, for `chart.repository`."""
    return chart_repo.url


@pytest.fixture(scope="session")
def git_chart_repo(tmp_path_factory: pytest.TempPathFactory) -> GitChartRepository:
    """A bare repository with onechart under `charts/onechart/` on `main`, tagged `GIT_TAG`."""
    path = tmp_path_factory.mktemp("git-charts") / "charts.git"
    commit = commit_directory(path, ONECHART_DIR)
    repo = pygit2.Repository(str(path))
    repo.references.create(f"refs/tags/{GIT_TAG}", pygit2.Oid(hex=commit))
    repo.free()
    return GitChartRepository(path=path, commit=commit)


@pytest.fixture(scope="session")
def git_chart_url(git_chart_repo: GitChartRepository) -> str:
    """`file:///…/charts.git?branch=main&path=/charts/onechart/`, for `chart.name`."""
    return git_chart_repo.chart_url()


def copy_chart(destination: Path) -> Path:
    """A writable copy of onechart, for tests that change the chart."""
    shutil.copytree(ONECHART_DIR, destination)
    return destination
