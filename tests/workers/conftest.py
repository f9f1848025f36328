from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import ADMIN

EVENT_TIMEOUT = 90.0


def on_branch(
    artifact: dict[str, Any], branch: str, event: str, *, sha: str | None = None
) -> dict[str, Any]:
    """The artifact CI sends for `branch` (and commit `sha`): version and context agree."""
    changed = copy.deepcopy(artifact)
    changed["version"].update(branch=branch, event=event, sourceBranch=branch)
    changed["context"].update(BRANCH=branch, CIRCLE_BRANCH=branch)
    if sha is not None:
        changed["version"]["sha"] = sha
        changed["context"]["CIRCLE_SHA1"] = sha
    return changed


def post_artifact(client: FlaskClient, artifact: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/artifact", json=artifact, headers=ADMIN)
    assert response.status_code == 201, response.json
    body: dict[str, Any] = response.json
    return body


def wait_for_event(client: FlaskClient, event_id: str, timeout: float = EVENT_TIMEOUT) -> Any:
    """Poll `GET /api/event` until the event is terminal, as the original's CLI does."""
    deadline = time.monotonic() + timeout
    while True:
        event = client.get(f"/api/event?id={event_id}", headers=ADMIN).json
        if event["status"] != "new":
            return event
        if time.monotonic() > deadline:
            raise AssertionError(f"event {event_id} still new after {timeout}s: {event}")
        time.sleep(0.2)


def wait_until(check: Callable[[], Any], what: str, timeout: float = EVENT_TIMEOUT) -> Any:
    """Call `check` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)
    return result
