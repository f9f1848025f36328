"""The API on PostgreSQL: hostile values that SQLite would swallow end in 4xx, not 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from api import create_app
from gimletd.settings import Settings
from tests.conftest import ADMIN


@pytest.fixture
def pg_client(settings: Settings, postgres_url: str) -> Iterator[FlaskClient]:
    app = create_app(settings.model_copy(update={"database_url": SecretStr(postgres_url)}))
    yield app.test_client()
    app.extensions["gimletd"].close()


def artifact(fixtures_dir: Path, **version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    data["version"].update(version)
    return data


def test_an_artifact_round_trips(pg_client: FlaskClient, fixtures_dir: Path) -> None:
    created = pg_client.post("/api/artifact", json=artifact(fixtures_dir), headers=ADMIN)
    assert created.status_code == 201
    listed = pg_client.get("/api/artifacts?since=2000-01-01T00:00:00Z", headers=ADMIN).json
    assert [a["id"] for a in listed] == [created.json["id"]]


@pytest.mark.parametrize(
    "version",
    [{"repositoryName": "r" * 600}, {"branch": "a\x00b"}, {"sha": "f" * 200}],
)
def test_values_the_database_cannot_hold_are_422(
    pg_client: FlaskClient, fixtures_dir: Path, version: dict[str, str]
) -> None:
    response = pg_client.post(
        "/api/artifact", json=artifact(fixtures_dir, **version), headers=ADMIN
    )
    assert response.status_code == 422
    assert pg_client.get("/api/artifacts", headers=ADMIN).json == []


@pytest.mark.parametrize(
    "query",
    ["since=2999-01-01T00:00:00Z", "until=1800-01-01T00:00:00Z", "branch=x", "sha=abc"],
)
def test_extreme_but_valid_queries_are_answered(pg_client: FlaskClient, query: str) -> None:
    assert pg_client.get(f"/api/artifacts?{query}", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("query", ["branch=a%00b", "event?id=a%00b"])
def test_nul_characters_in_queries_are_400(pg_client: FlaskClient, query: str) -> None:
    path = f"/api/{query}" if query.startswith("event") else f"/api/artifacts?{query}"
    assert pg_client.get(path, headers=ADMIN).status_code == 400
