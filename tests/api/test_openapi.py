"""The OpenAPI document: complete, built from the models, and true of the live API.

schemathesis generates requests from the document (a bounded number per
operation, so the suite stays fast) and sends them to the app as an admin:
no answer may be a 5xx, and every answer must match the document's schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from gimletd.gitops.repository import GitopsRepository
from gimletd.history import sync_index
from gimletd.settings import Settings
from gimletd.store import Store
from tests.conftest import ADMIN

EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def indexed_app(app: Flask, store: Store, settings: Settings, tmp_path: Path) -> Flask:
    """The API with the release index of its (empty) GitOps remote built."""
    repo = GitopsRepository(settings.resolved_gitops_repo, cache_dir=tmp_path / "c", clone_name="t")
    sync_index(store, repo, repo.fetch())
    return app


def test_the_live_api_answers_as_its_document_says(indexed_app: Flask) -> None:
    """Every operation, with generated requests; one failure report per operation."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", indexed_app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={**ADMIN, **(case.headers or {})},
                checks=[not_a_server_error, response_schema_conformance],
            )

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_route_is_documented_and_nothing_else(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").json
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    routed = {
        (method, rule.rule.replace("<", "{").replace(">", "}"))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert documented == routed


def test_schemas_come_from_the_models(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").json
    schemas = document["components"]["schemas"]
    artifact = schemas["Artifact"]["properties"]
    assert {"version", "context", "environments", "items"} <= set(artifact)
    assert schemas["Version"]["properties"]["repositoryName"]["maxLength"] == 512
    release = document["paths"]["/api/releases"]["post"]
    assert release["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReleaseRequest"
    }
    assert release["summary"].startswith("Release a stored artifact")
    assert document["paths"]["/health"]["get"]["security"] == []
