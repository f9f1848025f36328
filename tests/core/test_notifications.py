"""Notices and the requests of each provider, without I/O: wording, shapes, limits, replies."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer

from gimletd.models import Release, ResultStatus, Version, WriteKind
from gimletd.notifications import delivery, discord, github, slack, webhook
from gimletd.notifications.delivery import (
    MAX_BACKOFF,
    NO_ANSWER,
    Outbound,
    Outcome,
    Reply,
    Verdict,
    retry_after,
    retry_delay,
    send,
)
from gimletd.notifications.notice import Notice, NoticeKind, write_notice
from gimletd.notifications.targets import configured_targets, request_for, targets_for
from gimletd.notifications.text import headline, links
from gimletd.settings import Settings
from gimletd.webhooks import signature_matches

SHA = "deae5dbaf237766240181fa397e923d3c5253112"
GITOPS_SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
VERSION = Version(
    repository_name="mycompany/frontend",
    sha=SHA,
    branch="main",
    message="Add the checkout page\n\nLong description",
    author_name="Laszlo Fogas",
    url=f"https://github.com/mycompany/frontend/commit/{SHA}",
)


def release(triggered_by: str = "policy", version: Version | None = VERSION) -> Release:
    return Release(
        app="frontend",
        env="staging",
        artifact_id="artifact-1",
        triggered_by=triggered_by,
        version=version,
        gitops_repo="git@github.com:mycompany/gitops.git",
        event_id="event-1",
    )


def notice(kind: WriteKind = WriteKind.RELEASE, status: ResultStatus = ResultStatus.SUCCESS,
           **options: Any) -> Notice:  # fmt: skip
    made = write_notice(
        kind, status, options.pop("release", release()), commit=GITOPS_SHA,
        desc=options.pop("desc", ""), now=1_700_000_000, **options,
    )  # fmt: skip
    assert made is not None
    return made


def fixture(fixtures_dir: Path, name: str) -> Any:
    return json.loads((fixtures_dir / "payloads" / name).read_text())


@pytest.mark.parametrize(
    ("kind", "status", "triggered_by", "expected", "text"),
    [
        (WriteKind.RELEASE, ResultStatus.SUCCESS, "policy", NoticeKind.DEPLOY,
         "Deployed frontend to staging"),
        (WriteKind.RELEASE, ResultStatus.SUCCESS, "jane", NoticeKind.RELEASE,
         "jane released frontend to staging"),
        (WriteKind.ROLLBACK, ResultStatus.SUCCESS, "jane", NoticeKind.ROLLBACK,
         "jane rolled back frontend in staging"),
        (WriteKind.DELETE, ResultStatus.SUCCESS, "jane", NoticeKind.DELETE,
         "jane deleted frontend from staging"),
        (WriteKind.DELETE, ResultStatus.SUCCESS, "policy", NoticeKind.CLEANUP,
         "Cleaned up preview app frontend in staging"),
        (WriteKind.RELEASE, ResultStatus.FAILURE, "jane", NoticeKind.FAILED,
         "Release of frontend in staging failed"),
        (WriteKind.DELETE, ResultStatus.FAILURE, "policy", NoticeKind.FAILED,
         "Cleanup of frontend in staging failed"),
    ],
)  # fmt: skip
def test_each_outcome_has_its_notice_and_headline(
    kind: WriteKind, status: ResultStatus, triggered_by: str, expected: NoticeKind, text: str
) -> None:
    made = notice(kind, status, release=release(triggered_by), desc="boom")
    assert made.kind is expected
    assert headline(made) == text
    assert made.error == ("boom" if status is ResultStatus.FAILURE else "")
    assert made.gitops_commit == ("" if status is ResultStatus.FAILURE else GITOPS_SHA)


@pytest.mark.parametrize("status", [ResultStatus.UNCHANGED, ResultStatus.SUPERSEDED])
def test_writes_that_changed_nothing_are_not_announced(status: ResultStatus) -> None:
    assert write_notice(WriteKind.RELEASE, status, release(), commit="", desc="", now=0) is None


def test_links_point_at_the_source_commit_and_the_gitops_commit_page() -> None:
    assert links(notice()) == [
        ("Source commit", VERSION.url),
        ("GitOps commit", f"https://github.com/mycompany/gitops/commit/{GITOPS_SHA}"),
    ]
    smuggled = VERSION.model_copy(update={"url": "https://x|ok> <!channel> <https://y"})
    hostile = notice(release=release(version=smuggled))
    assert [label for label, _ in links(hostile)] == ["GitOps commit"]
    assert "<!channel>" not in json.dumps(slack.message(hostile, "C1"))


def test_slack_message_has_blocks_a_fallback_and_no_pings(fixtures_dir: Path) -> None:
    version = VERSION.model_copy(update={"message": "<!channel> look & see"})
    failed = notice(status=ResultStatus.FAILURE, release=release("jane", version),
                    desc="x" * 5000)  # fmt: skip
    body = slack.message(failed, "C123")
    example = fixture(fixtures_dir, "slack/chat.postMessage-request.json")
    assert set(example) <= set(body)
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "section",
                                                           "context"]  # fmt: skip
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text" and header["text"].startswith(":rotating_light:")
    assert len(body["blocks"][1]["text"]["text"]) == slack.SECTION_LIMIT
    assert body["blocks"][1]["text"]["text"].endswith("…")
    fields = body["blocks"][2]["fields"]
    assert len(fields) <= slack.MAX_FIELDS
    assert "*Commit message*\n&lt;!channel&gt; look &amp; see" in [f["text"] for f in fields]
    assert "<!channel>" not in json.dumps(body)
    assert body["text"].startswith("Release of frontend in staging failed: xxx")


def test_slack_reads_ok_false_on_200_as_a_failure(fixtures_dir: Path) -> None:
    refused = Reply(
        200, {}, json.dumps(fixture(fixtures_dir, "slack/chat.postMessage-error.json")).encode()
    )
    assert slack.judge(refused) == Outcome(
        Verdict.GIVE_UP, "Slack refused the message: too_many_attachments"
    )
    ok = json.dumps(fixture(fixtures_dir, "slack/chat.postMessage-ok.json")).encode()
    assert slack.judge(Reply(200, {}, ok)).verdict is Verdict.SENT
    transient = Reply(200, {}, b'{"ok": false, "error": "internal_error"}')
    assert slack.judge(transient).verdict is Verdict.RETRY
    limited = fixture(fixtures_dir, "slack/chat.postMessage-ratelimited.http.json")
    headers = {k.lower(): v for k, v in limited["headers"].items()}
    outcome = slack.judge(Reply(limited["status"], headers, json.dumps(limited["body"]).encode()))
    assert (outcome.verdict, outcome.retry_after) == (Verdict.RETRY, 30.0)


def test_discord_embed_stays_within_every_limit() -> None:
    huge = VERSION.model_copy(
        update={"message": "m" * 3000, "branch": "b" * 500, "author_name": "a" * 2000}
    )
    who = "@everyone " * 100
    failed = notice(status=ResultStatus.FAILURE, release=release(who, huge), desc="e" * 10_000)
    assert discord.embed_text_length(discord.message(failed)["embeds"][0]) == 6000
    body = discord.message(failed)
    [embed] = body["embeds"]
    assert body["allowed_mentions"] == {"parse": []}
    assert len(embed["title"]) <= discord.TITLE_LIMIT
    assert len(embed["description"]) <= discord.DESCRIPTION_LIMIT
    assert all(len(f["value"]) <= discord.FIELD_VALUE_LIMIT for f in embed["fields"])
    assert len(embed["fields"]) <= discord.MAX_FIELDS
    assert discord.embed_text_length(embed) <= discord.EMBED_TOTAL_LIMIT
    assert embed["color"] == discord.RED
    assert len(body["content"]) <= discord.CONTENT_LIMIT


def test_discord_waits_as_its_429_body_says(fixtures_dir: Path) -> None:
    limited = fixture(fixtures_dir, "discord/rate-limit-429.http.json")
    headers = {k.lower(): v for k, v in limited["headers"].items()}
    outcome = discord.judge(Reply(429, headers, json.dumps(limited["body"]).encode()))
    assert (outcome.verdict, outcome.retry_after) == (Verdict.RETRY, 64.57)
    invalid = json.dumps(fixture(fixtures_dir, "discord/error-invalid-form-body.json")).encode()
    assert discord.judge(Reply(400, {}, invalid)).verdict is Verdict.GIVE_UP
    assert discord.judge(Reply(404)).verdict is Verdict.GIVE_UP


def test_discord_webhook_url_keeps_its_query_and_waits() -> None:
    outbound = discord.webhook_request(
        notice(), webhook_url="https://d.test/api/webhooks/1/t?thread_id=9"
    )
    assert outbound.url == "https://d.test/api/webhooks/1/t?thread_id=9&wait=true"
    assert "Authorization" not in outbound.headers


@pytest.mark.parametrize(
    ("kind", "status", "state"),
    [
        (NoticeKind.DEPLOY, ResultStatus.SUCCESS, "pending"),
        (NoticeKind.FAILED, ResultStatus.FAILURE, "failure"),
    ],
)
def test_github_status_states_and_description_limit(
    kind: NoticeKind, status: ResultStatus, state: str
) -> None:
    made = notice(status=status, desc="d" * 500)
    assert made.kind is kind
    outbound = github.request(made, token="t", api_url="https://ghe.test/api/v3/")
    assert outbound.url == f"https://ghe.test/api/v3/repos/mycompany/frontend/statuses/{SHA}"
    body = json.loads(outbound.body)
    assert body["state"] == state and body["context"] == "gitops/staging"
    assert len(body["description"]) <= github.DESCRIPTION_LIMIT
    assert outbound.headers["Authorization"] == "Bearer t"
    assert outbound.headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_github_takes_only_notices_about_a_github_commit() -> None:
    assert github.applies(notice())
    assert not github.applies(notice(WriteKind.DELETE))
    assert not github.applies(notice(release=release(version=None)))
    gitlab = VERSION.model_copy(update={"repository_name": "group/sub/project"})
    assert not github.applies(notice(release=release(version=gitlab)))
    configured = ["slack", "github", "webhook-1"]
    assert targets_for(notice(WriteKind.DELETE), configured) == ["slack", "webhook-1"]


def test_github_tells_a_rate_limit_from_a_refusal(fixtures_dir: Path) -> None:
    too_long = json.dumps(
        fixture(fixtures_dir, "github/commit-status-422-description-too-long.json")
    )
    refused = github.judge(Reply(422, {}, too_long.encode()))
    assert refused == Outcome(
        Verdict.GIVE_UP,
        "GitHub refused the status (422): description is too long (maximum is 140 characters)",
    )
    assert github.judge(Reply(403, {}, b"{}")).verdict is Verdict.GIVE_UP
    limited = github.judge(
        Reply(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1030"}), now=1000
    )
    assert (limited.verdict, limited.retry_after) == (Verdict.RETRY, 30.0)
    created = json.dumps(fixture(fixtures_dir, "github/commit-status-response-201.json"))
    assert github.judge(Reply(201, {}, created.encode())).verdict is Verdict.SENT


def test_webhook_is_signed_like_flux_generic_hmac() -> None:
    outbound = webhook.request(notice(), url="https://hooks.test/x", secret="s3cret")
    expected = hmac.new(b"s3cret", outbound.body, hashlib.sha256).hexdigest()
    assert outbound.headers["X-Signature"] == f"sha256={expected}"
    assert signature_matches(b"s3cret", outbound.body, outbound.headers["X-Signature"])
    body = json.loads(outbound.body)
    assert body["type"] == "deploy" and body["id"] == outbound.headers["X-Delivery-ID"]
    assert body["notice"]["version"]["sha"] == SHA
    assert "X-Signature" not in webhook.request(notice(), url="https://h.test", secret=None).headers


def test_replies_every_provider_reads_the_same_way() -> None:
    assert webhook.judge(Reply(204)).verdict is Verdict.SENT
    assert webhook.judge(Reply(503)).verdict is Verdict.RETRY
    assert webhook.judge(Reply(NO_ANSWER, {}, b"ConnectError")).reason.startswith(
        "The webhook could not be reached"
    )
    assert webhook.judge(Reply(301)).verdict is Verdict.GIVE_UP
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470) == 10.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_delay(Outcome(Verdict.RETRY), 1, base=2.0) == 2.0
    assert retry_delay(Outcome(Verdict.RETRY), 3, base=2.0) == 8.0
    assert retry_delay(Outcome(Verdict.RETRY), 30, base=2.0) == MAX_BACKOFF
    assert retry_delay(Outcome(Verdict.RETRY, retry_after=7.5), 30, base=2.0) == 7.5


def test_settings_name_the_targets_and_refuse_incomplete_providers() -> None:
    settings = Settings(
        NOTIFICATIONS_PROVIDER="slack, webhook,github",
        NOTIFICATIONS_TOKEN="xoxb",
        NOTIFICATIONS_DEFAULT_CHANNEL="C-all",
        NOTIFICATIONS_CHANNEL_MAPPING="production=C-ops",
        WEBHOOK_URLS="https://a.test/h?token=1,https://b.test/h",
        GITHUB_TOKEN="ghp",
    )
    assert configured_targets(settings) == ["slack", "webhook-1", "webhook-2", "github"]
    production = notice(release=release().model_copy(update={"env": "production"}))
    assert json.loads(request_for("slack", production, settings).body)["channel"] == "C-ops"
    assert json.loads(request_for("slack", notice(), settings).body)["channel"] == "C-all"
    assert request_for("webhook-2", notice(), settings).url == "https://b.test/h"
    for broken, message in [
        ({"NOTIFICATIONS_PROVIDER": "teams"}, "use slack, discord, github or webhook"),
        ({"NOTIFICATIONS_PROVIDER": "slack"}, "NOTIFICATIONS_TOKEN"),
        ({"NOTIFICATIONS_PROVIDER": "discord", "DISCORD_TOKEN": "x"}, "DISCORD_CHANNEL"),
        ({"NOTIFICATIONS_PROVIDER": "webhook", "WEBHOOK_URLS": " "}, "WEBHOOK_URLS"),
        ({"NOTIFICATIONS_CHANNEL_MAPPING": "staging"}, "is not env=channel"),
    ]:
        with pytest.raises(ValidationError, match=message):
            Settings(**broken)


def test_a_discord_bot_posts_to_its_channel_with_its_token(httpserver: HTTPServer) -> None:
    """The bot variant against a real HTTP server: path, `Bot` auth, Discord's user agent."""
    settings = Settings(
        NOTIFICATIONS_PROVIDER="discord",
        DISCORD_TOKEN="bot-token\n",  # as read from a file: the newline is dropped
        DISCORD_CHANNEL="290926798999357250",
        DISCORD_API_URL=httpserver.url_for("/api/v10"),
    )
    httpserver.expect_request(
        "/api/v10/channels/290926798999357250/messages",
        method="POST",
        headers={"Authorization": "Bot bot-token"},
    ).respond_with_json({"id": "334385199974967042"})
    reply = send(request_for("discord", notice(), settings), timeout=5)
    assert discord.judge(reply).verdict is Verdict.SENT
    [(request, _)] = httpserver.log
    assert request.headers["User-Agent"].startswith("DiscordBot (")
    assert request.get_json()["allowed_mentions"] == {"parse": []}


def test_deliveries_share_a_client_and_a_forked_process_makes_its_own(
    httpserver: HTTPServer,
) -> None:
    """A Celery pool child is forked from its worker: it must not send on the parent's sockets."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    outbound = Outbound.json(httpserver.url_for("/hook"), {"n": 1}, {})
    assert send(outbound, timeout=5).status == 200
    assert send(outbound, timeout=5).status == 200
    assert delivery._client.cache_info().hits >= 1  # the second send reused the first's client

    child = os.fork()
    if child == 0:  # the child: exit 0 only with a client of its own that works
        code = 1
        try:
            if delivery._client.cache_info().currsize == 0:
                code = 0 if send(outbound, timeout=5).status == 200 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(httpserver.log) == 3
    assert send(outbound, timeout=5).status == 200  # the parent's client still works
