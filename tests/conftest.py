"""Fixtures shared by every test: settings on tmp_path, a bare GitOps remote, the store, Redis.

Redis is pytest-redis's own `redis_proc` on a free port, never the machine's
shared instance. The chart fixtures come from `tests.support.charts`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pytest_redis.executor import RedisExecutor

from api import create_app
from gimletd.gitops.repository import init_bare
from gimletd.settings import Settings
from gimletd.store import Store

pytest_plugins = [
    "tests.support.charts",
    "tests.support.databases",
    "tests.support.gitdaemon",
    "tests.support.githttp",
    "tests.support.ociregistry",
    "tests.support.processes",
    "tests.resilience.report",
]

SHARED = Path(__file__).resolve().parents[2] / "shared"
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test, never from the environment the suite runs in."""
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            monkeypatch.delenv(alias, raising=False)
            monkeypatch.delenv(alias.lower(), raising=False)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """`../shared/fixtures`, read at test time and never copied into the repository."""
    path = SHARED / "fixtures"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the suite reads the shared fixtures beside the checkout")
    return path


@pytest.fixture
def artifact(fixtures_dir: Path, chart_repo_url: str) -> dict[str, Any]:
    """The restored seed artifact with its charts pointed at the local chart repository."""
    data: dict[str, Any] = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    for environment in data["environments"]:
        environment["chart"]["repository"] = chart_repo_url
    return data


@pytest.fixture
def gitops_remote(tmp_path: Path) -> Path:
    """An empty bare repository on disk, standing in for the GitOps remote."""
    path = tmp_path / "gitops.git"
    init_bare(path)
    return path


@pytest.fixture
def redis_url(redis_proc: RedisExecutor) -> str:
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"


@pytest.fixture
def settings(tmp_path: Path, gitops_remote: Path, redis_url: str) -> Settings:
    """Settings of a private install: SQLite, the bare remote and the test Redis."""
    return Settings(
        data_dir=tmp_path / "data",
        gitops_repo=str(gitops_remote),
        redis_url=redis_url,
        admin_token=ADMIN_TOKEN,
        sweep_interval=1.0,
        stale_after=2.0,
    )


S = TypeVar("S", bound=Store)


@contextlib.contextmanager
def migrated(store: S) -> Iterator[S]:
    """`store` with its schema up to date, closed when the block ends."""
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with migrated(Store(settings.resolved_database_url)) as store:
        yield store


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The API on the test's settings."""
    app = create_app(settings)
    yield app
    app.extensions["gimletd"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
