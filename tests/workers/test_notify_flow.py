"""End to end: releases announced to Slack, Discord, GitHub and webhooks; Flux's reports fed back.

A real Celery worker sends to a real local HTTP server standing in for each
service (their API base URLs are settings), which answers as the service does:
success, rate limits with `Retry-After`, server errors and refusals. Flux
events are the fixture payloads, pointed at the real GitOps commits and signed
as Flux's generic-hmac provider signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from gimletd.models import EventType, WriteKind
from gimletd.release import failure_notices
from gimletd.settings import Settings
from gimletd.store import FailedEnvironment, Store
from tests.conftest import ADMIN
from tests.support.processes import Process, free_port
from tests.support.prometheus import samples
from tests.workers.conftest import on_branch, post_artifact, wait_for_event, wait_until

StartWorkers = Callable[..., list[Process]]
SLACK_TOKEN = "xoxb-test-token"
GITHUB_TOKEN = "ghp_test_token"
WEBHOOK_SECRET = "webhook-secret"
FLUX_SECRET = "generic-hmac-test-token"
SHA = "deae5dbaf237766240181fa397e923d3c5253112"
SECOND_SHA = "5ec0d5ba5ec0d5ba5ec0d5ba5ec0d5ba5ec0d5ba"
STATUSES = f"/github/repos/mycompany/frontend/statuses/{SHA}"
SECOND_STATUSES = f"/github/repos/mycompany/frontend/statuses/{SECOND_SHA}"
DISCORD_HOOK = "/discord/webhooks/123/hook-token"


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Services:
    """The local stand-in for Slack, Discord, GitHub and webhook receivers.

    `answers[path]` is the list of replies to give in turn, the last one repeated.
    """

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.received: list[Received] = []
        self.answers: dict[str, list[Response]] = {}
        server.expect_request(re.compile(".*")).respond_with_handler(self._handle)

    def answer(self, path: str, *responses: Response) -> None:
        self.answers[path] = list(responses)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def _handle(self, request: Request) -> Response:
        self.received.append(
            Received(
                request.path,
                request.query_string.decode(),
                dict(request.headers),
                request.get_data(),
                time.monotonic(),
            )
        )
        replies = self.answers.get(request.path)
        if not replies:
            return Response("not found", status=404)
        return replies.pop(0) if len(replies) > 1 else replies[0]


def reply(status: int = 200, body: Any = None, **headers: str) -> Response:
    return Response(
        json.dumps(body) if body is not None else "",
        status=status,
        headers={"Content-Type": "application/json", **headers},
    )


SLACK_OK = reply(200, {"ok": True, "channel": "C1", "ts": "1503435956.000247"})


@pytest.fixture
def services(httpserver: HTTPServer) -> Services:
    return Services(httpserver)


@pytest.fixture
def settings(settings: Settings, httpserver: HTTPServer) -> Settings:
    """Every provider on, each pointed at the local server; quick retries."""
    return settings.model_copy(
        update={
            "notifications_provider": "slack,discord,github,webhook",
            "notifications_token": SecretStr(SLACK_TOKEN),
            "notifications_default_channel": "C-default",
            "notifications_channel_mapping": "staging=C-staging,production=C-ops",
            "slack_api_url": httpserver.url_for("/slack"),
            "discord_webhook_url": SecretStr(httpserver.url_for(DISCORD_HOOK)),
            "github_token": SecretStr(GITHUB_TOKEN),
            "github_api_url": httpserver.url_for("/github"),
            "webhook_urls": SecretStr(
                f"{httpserver.url_for('/hook-a')},{httpserver.url_for('/hook-b')}"
            ),
            "webhook_secret": SecretStr(WEBHOOK_SECRET),
            "flux_webhook_secret": SecretStr(FLUX_SECRET),
            "notifications_retry_base": 0.2,
            "notifications_max_attempts": 4,
        }
    )


@pytest.fixture
def worker(settings: Settings, start_workers: StartWorkers) -> Process:
    [started] = start_workers(settings)
    return started


def answer_everything(services: Services) -> None:
    services.answer("/slack/chat.postMessage", SLACK_OK)
    services.answer(DISCORD_HOOK, reply(200, {"id": "334385199974967042"}))
    services.answer(STATUSES, reply(201, {"id": 1, "state": "pending"}))
    services.answer(SECOND_STATUSES, reply(201, {"id": 2, "state": "pending"}))
    services.answer("/hook-a", reply(204))
    services.answer("/hook-b", reply(200, {"received": True}))


def release_to_staging(
    client: FlaskClient, artifact: dict[str, Any], sha: str = SHA
) -> dict[str, Any]:
    """A push of `sha` to main, which the seed artifact's staging policy deploys; its event."""
    pushed = on_branch(artifact, "main", "push", sha=sha)
    event = wait_for_event(client, post_artifact(client, pushed)["eventId"])
    assert event["status"] == "processed", event
    return event  # type: ignore[no-any-return]


def settled_notifications(client: FlaskClient, event_id: str, count: int) -> list[dict[str, Any]]:
    """The event's notifications, once `count` of them have stopped being pending."""

    def check() -> list[dict[str, Any]] | None:
        found = client.get(f"/api/event?id={event_id}", headers=ADMIN).json["notifications"]
        done = [n for n in found if n["status"] != "pending"]
        return found if len(done) >= count else None

    result: list[dict[str, Any]] = wait_until(check, f"{count} notifications settled")
    return result


def flux_event(fixtures_dir: Path, name: str, gitops_sha: str) -> bytes:
    """A Flux fixture about the GitOps commit `gitops_sha`, compact as Flux sends it."""
    event = json.loads((fixtures_dir / "payloads" / "flux" / name).read_text())
    for key, revision in event["metadata"].items():
        if key.endswith("revision"):
            event["metadata"][key] = revision.replace(
                "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1", gitops_sha
            )
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def post_flux(client: FlaskClient, body: bytes, env: str = "staging") -> dict[str, Any]:
    signature = "sha256=" + hmac.new(FLUX_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        f"/api/flux-events?env={env}",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Signature": signature,
            "Gotk-Component": "kustomize-controller",
        },
    )
    assert response.status_code == 202, response.json
    event = wait_for_event(client, response.json["id"])
    assert event["status"] == "processed", event
    return event  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_release_is_announced_everywhere_and_flux_results_come_back(
    client: FlaskClient,
    artifact: dict[str, Any],
    services: Services,
    worker: Process,
    fixtures_dir: Path,
) -> None:
    answer_everything(services)
    first = release_to_staging(client, artifact)
    notifications = settled_notifications(client, first["id"], 5)
    assert sorted((n["target"], n["kind"], n["status"]) for n in notifications) == [
        ("discord", "deploy", "sent"),
        ("github", "deploy", "sent"),
        ("slack", "deploy", "sent"),
        ("webhook-1", "deploy", "sent"),
        ("webhook-2", "deploy", "sent"),
    ], worker.log()[-3000:]

    [slack] = services.to("/slack/chat.postMessage")
    assert slack.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    assert slack.headers["Content-Type"] == "application/json; charset=utf-8"
    message = slack.json()
    assert message["channel"] == "C-staging"  # NOTIFICATIONS_CHANNEL_MAPPING
    assert message["text"] == "Deployed frontend to staging"
    header = message["blocks"][0]["text"]["text"]
    assert header == ":white_check_mark: Deployed frontend to staging"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in
              message["blocks"][1]["fields"]}  # fmt: skip
    assert fields["*Version*"] == f"{SHA[:8]} on main"
    assert fields["*Author*"] == "Laszlo Fogas"
    assert fields["*GitOps commit*"] == first["gitopsHashes"][0]["hash"][:8]

    [discord] = services.to(DISCORD_HOOK)
    assert discord.query == "wait=true" and "Authorization" not in discord.headers
    assert discord.json()["allowed_mentions"] == {"parse": []}
    assert discord.json()["embeds"][0]["title"] == "Deployed frontend to staging"

    [status] = services.to(STATUSES)
    assert status.headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert status.headers["Accept"] == "application/vnd.github+json"
    assert status.json() == {
        "state": "pending",
        "target_url": None,  # the GitOps repository is a local path: it has no web page
        "description": "Committed to staging; waiting for Flux to apply",
        "context": "gitops/staging",
    }

    for path in ("/hook-a", "/hook-b"):
        [hook] = services.to(path)
        signature = hmac.new(WEBHOOK_SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["X-Signature"] == f"sha256={signature}"
        assert (
            hook.json()["type"] == "deploy" and hook.json()["id"] == hook.headers["X-Delivery-Id"]
        )

    # A second release: Flux skips the first commit and reports on the second.
    second = release_to_staging(client, artifact, SECOND_SHA)
    settled_notifications(client, second["id"], 5)
    services.received.clear()
    first_commit = first["gitopsHashes"][0]["hash"]
    second_commit = second["gitopsHashes"][0]["hash"]

    docs = "kustomization-validation-failed.docs-example.json"  # the old format
    rejected = post_flux(client, flux_event(fixtures_dir, docs, second_commit))
    both = ", ".join(sorted([first_commit[:12], second_commit[:12]]))
    assert rejected["statusDesc"].endswith(f"ValidationFailed; commits updated: {both}")
    ready = post_flux(client, flux_event(fixtures_dir, "kustomization-ready.json", second_commit))
    # The skipped commit took the docs event's failure; Flux's next result is its too.
    assert ready["statusDesc"].endswith(f"ReconciliationSucceeded; commits updated: {both}")
    tracked = client.get(f"/api/eventArtifactTrack?id={second['artifactID']}", headers=ADMIN).json
    assert tracked["results"][0]["gitopsCommitStatus"] == "ReconciliationSucceeded"
    assert tracked["gitopsHashes"][0]["status"] == "ReconciliationSucceeded"
    earlier = client.get(f"/api/event?id={first['id']}", headers=ADMIN).json
    assert earlier["results"][0]["gitopsCommitStatus"] == "ReconciliationSucceeded"
    assert earlier["results"][0]["gitopsCommitStatusDesc"].startswith(
        f"applied with {second_commit}: Reconciliation finished"
    )

    # A later failure of the newest commit leaves the applied one applied.
    failed = post_flux(client, flux_event(fixtures_dir, "kustomization-failed.json", second_commit))
    assert failed["statusDesc"].endswith("HealthCheckFailed")
    earlier = client.get(f"/api/event?id={first['id']}", headers=ADMIN).json
    assert earlier["results"][0]["gitopsCommitStatus"] == "ReconciliationSucceeded"
    releases = client.get("/api/releases?env=staging", headers=ADMIN).json
    assert releases[0]["fluxStatus"] == "HealthCheckFailed"
    assert releases[0]["fluxStatusDesc"].startswith("health check failed after 5m0.009826547s")

    def states(path: str, count: int) -> list[str] | None:
        received = services.to(path)
        return sorted(r.json()["state"] for r in received) if len(received) >= count else None

    assert wait_until(lambda: states(SECOND_STATUSES, 3), "three statuses") == [
        "failure", "failure", "success",
    ]  # fmt: skip
    assert wait_until(lambda: states(STATUSES, 2), "two statuses") == ["failure", "success"]
    slack = wait_until(
        lambda: (found := services.to("/slack/chat.postMessage")) and len(found) >= 5 and found,
        "five Slack messages",
    )
    texts = sorted(r.json()["text"] for r in slack)
    assert texts[0] == texts[1] == "Flux applied frontend in staging"
    assert texts[2].startswith("Flux failed to apply frontend in staging: health check failed")
    assert texts[3] == texts[4]
    assert texts[3].startswith("Flux failed to apply frontend in staging: service/apps/webapp")
    assert len(services.to("/slack/chat.postMessage")) == 5  # a report changing nothing is silent


@pytest.mark.slow
def test_rate_limits_and_server_errors_are_retried_until_sent(
    client: FlaskClient, artifact: dict[str, Any], services: Services, worker: Process
) -> None:
    answer_everything(services)
    services.answer(
        "/slack/chat.postMessage",
        reply(429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "1"}),
        SLACK_OK,
    )
    services.answer(DISCORD_HOOK, reply(500), reply(502), reply(200, {"id": "1"}))
    event = release_to_staging(client, artifact)
    notifications = settled_notifications(client, event["id"], 5)
    attempts = {n["target"]: (n["status"], n["attempts"]) for n in notifications}
    assert attempts["slack"] == ("sent", 2)
    assert attempts["discord"] == ("sent", 3)
    first, second = services.to("/slack/chat.postMessage")
    assert second.at - first.at >= 1.0  # Retry-After honoured
    assert first.body == second.body  # the same message, retried
    assert len(services.to(DISCORD_HOOK)) == 3
    failures = samples(client.get("/metrics").get_data(as_text=True))
    assert failures[("gimletd_notification_failures_total",
                     (("outcome", "retried"), ("target", "discord")))] == 2  # fmt: skip
    assert failures[("gimletd_notification_failures_total",
                     (("outcome", "retried"), ("target", "slack")))] == 1  # fmt: skip


@pytest.mark.slow
def test_refusals_are_given_up_with_the_reason_on_the_event(
    client: FlaskClient,
    artifact: dict[str, Any],
    services: Services,
    worker: Process,
    fixtures_dir: Path,
) -> None:
    answer_everything(services)
    too_long = json.loads(
        (fixtures_dir / "payloads/github/commit-status-422-description-too-long.json").read_text()
    )
    services.answer(STATUSES, reply(422, too_long))
    services.answer(
        "/slack/chat.postMessage", reply(200, {"ok": False, "error": "channel_not_found"})
    )
    services.answer("/hook-a", reply(400, {"error": "bad"}))
    event = release_to_staging(client, artifact)
    notifications = settled_notifications(client, event["id"], 5)
    outcome = {n["target"]: (n["status"], n["attempts"], n["statusDesc"]) for n in notifications}
    assert outcome["github"] == (
        "failed", 1,
        "GitHub refused the status (422): description is too long (maximum is 140 characters)",
    )  # fmt: skip
    assert outcome["slack"] == ("failed", 1, "Slack refused the message: channel_not_found")
    assert outcome["webhook-1"][:2] == ("failed", 1)
    assert "refused it (400)" in outcome["webhook-1"][2]
    assert outcome["webhook-2"][0] == outcome["discord"][0] == "sent"
    assert len(services.to(STATUSES)) == 1  # a 4xx is not retried
    assert client.get(f"/api/event?id={event['id']}", headers=ADMIN).json["status"] == "processed"


@pytest.mark.slow
def test_a_release_succeeds_when_every_provider_is_down(
    client: FlaskClient, artifact: dict[str, Any], settings: Settings, start_workers: StartWorkers
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    [worker] = start_workers(
        settings.model_copy(
            update={
                "slack_api_url": f"{down}/slack",
                "discord_webhook_url": SecretStr(f"{down}/discord"),
                "github_api_url": f"{down}/github",
                "webhook_urls": SecretStr(f"{down}/a,{down}/b"),
                "notifications_max_attempts": 2,
            }
        )
    )
    event = release_to_staging(client, artifact)
    assert [r["status"] for r in event["results"]] == ["success"]
    notifications = settled_notifications(client, event["id"], 5)
    assert {n["status"] for n in notifications} == {"failed"}, worker.log()[-3000:]
    assert all(n["attempts"] == 2 for n in notifications)
    assert all("could not be reached" in n["statusDesc"] for n in notifications)


@pytest.mark.slow
def test_a_notification_whose_task_was_lost_is_sent_by_the_sweep(
    client: FlaskClient, settings: Settings, services: Services, start_workers: StartWorkers
) -> None:
    """A notice stored without its task being queued (Redis lost it) still goes out."""
    answer_everything(services)
    store = Store(settings.resolved_database_url)
    event = store.create_event(
        EventType.RELEASE, request={"env": "staging"}, triggered_by="jane", artifact_id=""
    )
    failure = FailedEnvironment(settings.resolved_gitops_repo, "staging", "frontend", "no chart")
    [notice] = failure_notices(
        [failure], WriteKind.RELEASE, event_id=event.id, triggered_by="jane", artifact=None,
        now=time.time(),
    )  # fmt: skip
    store.plan_event(event.id, writes=[], failures=[failure], notices=[(notice, ["webhook-1"])])
    store.close()
    start_workers(settings, beat=True)
    [sent] = settled_notifications(client, event.id, 1)
    assert (sent["target"], sent["kind"], sent["status"]) == ("webhook-1", "failed", "sent")
    [hook] = services.to("/hook-a")
    assert hook.json()["headline"] == "Release of frontend in staging failed"
    assert hook.json()["notice"]["error"] == "no chart"
