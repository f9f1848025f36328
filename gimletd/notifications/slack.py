"""Slack: `chat.postMessage` with Block Kit blocks and a plain `text` fallback.

Slack answers HTTP 200 for most failures, with `{"ok": false, "error": ...}`
in the body; those are failures too. Limits (protocols.md §3): header text
150 characters, section text 3000, at most 10 fields of 2000, at most 10
context elements, `text` 40,000.
"""

from __future__ import annotations

from typing import Any

from gimletd.notifications.delivery import SENT, Outbound, Outcome, Reply, Verdict, judge_http
from gimletd.notifications.notice import Notice
from gimletd.notifications.text import cut, facts, headline, links

DEFAULT_API_URL = "https://slack.com/api"
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
MAX_CONTEXT = 10
TEXT_LIMIT = 40_000
#: Errors Slack gives for its own trouble; anything else is about the request and final.
TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "request_timeout", "service_unavailable", "ratelimited"}
)


def escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally: `<!channel>` in a commit message pings nobody."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def request(notice: Notice, *, token: str, channel: str, api_url: str) -> Outbound:
    return Outbound.json(
        f"{api_url.rstrip('/')}/chat.postMessage",
        message(notice, channel),
        {"Authorization": f"Bearer {token}"},
    )


def message(notice: Notice, channel: str) -> dict[str, Any]:
    """The `chat.postMessage` body; a failure gets a red-light header and its error up front."""
    title = headline(notice)
    icon = ":rotating_light:" if notice.kind.failure else ":white_check_mark:"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": cut(f"{icon} {title}", HEADER_LIMIT),
                "emoji": True,
            },
        }
    ]
    if notice.error:
        blocks.append(_section(f"*Error*\n```{escape(notice.error)}```"))
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{label}*\n{escape(value)}", FIELD_LIMIT)}
        for label, value in facts(notice)[:MAX_FIELDS]
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    link_elements = [
        {"type": "mrkdwn", "text": f"<{url}|{escape(label)}>"}
        for label, url in links(notice)[:MAX_CONTEXT]
    ]
    if link_elements:
        blocks.append({"type": "context", "elements": link_elements})
    fallback = title + (f": {notice.error}" if notice.error else "")
    return {
        "channel": channel,
        "text": cut(escape(fallback), TEXT_LIMIT),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def judge(reply: Reply) -> Outcome:
    shared = judge_http(reply, "Slack")
    if shared is not None:
        return shared
    body = reply.json()
    if not isinstance(body, dict):
        return Outcome(Verdict.RETRY, f"Slack answered {reply.status} without JSON")
    if body.get("ok") is True:
        return SENT
    error = str(body.get("error") or "unknown_error")
    if error in TRANSIENT_ERRORS:
        return Outcome(Verdict.RETRY, f"Slack failed to post the message: {error}")
    return Outcome(Verdict.GIVE_UP, f"Slack refused the message: {error}")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}
