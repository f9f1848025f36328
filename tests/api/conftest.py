from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from gimletd.settings import Settings

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    app.extensions["gimletd"].store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
