"""Discord: one embed per message, by webhook URL or as a bot posting to a channel.

Limits (protocols.md §4): title 256, description 4096, at most 25 fields with
names of 256 and values of 1024, footer 2048, and all of an embed's text at
most 6000 characters. `allowed_mentions: {"parse": []}` keeps `@everyone` in
a commit message from pinging anyone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gimletd.notifications.delivery import (
    SENT,
    USER_AGENT,
    Outbound,
    Outcome,
    Reply,
    Verdict,
    judge_http,
)
from gimletd.notifications.notice import Notice
from gimletd.notifications.text import cut, facts, gitops_commit_url, headline, links, web_url

DEFAULT_API_URL = "https://discord.com/api/v10"
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
MAX_FIELDS = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
CONTENT_LIMIT = 2000
GREEN, RED = 0x2ECC71, 0xE74C3C
#: Discord asks HTTP API clients for a `DiscordBot (url, version)` user agent.
BOT_USER_AGENT = "DiscordBot (https://github.com/gimlet-io/gimletd, 1)"


def webhook_request(notice: Notice, *, webhook_url: str) -> Outbound:
    """Execute the webhook with `wait=true`, so a message Discord did not save is an error."""
    parts = urlsplit(webhook_url)
    query = urlencode([*parse_qsl(parts.query), ("wait", "true")])
    return Outbound.json(urlunsplit(parts._replace(query=query)), message(notice), {})


def bot_request(notice: Notice, *, token: str, channel: str, api_url: str) -> Outbound:
    return Outbound.json(
        f"{api_url.rstrip('/')}/channels/{channel}/messages",
        message(notice),
        {"Authorization": f"Bot {token}", "User-Agent": f"{BOT_USER_AGENT} {USER_AGENT}"},
    )


def message(notice: Notice) -> dict[str, Any]:
    title = headline(notice)
    description = ""
    if notice.error:
        description = f"**Error**\n```{notice.error}```"
    link_lines = [f"[{label}]({url})" for label, url in links(notice)]
    if link_lines:
        description = "\n".join([description, " · ".join(link_lines)]).strip()
    embed: dict[str, Any] = {
        "title": cut(title, TITLE_LIMIT),
        "description": cut(description, DESCRIPTION_LIMIT),
        "color": RED if notice.kind.failure else GREEN,
        "timestamp": datetime.fromtimestamp(notice.created, UTC).isoformat(),
        "fields": [
            {
                "name": cut(label, FIELD_NAME_LIMIT),
                "value": cut(value, FIELD_VALUE_LIMIT),
                "inline": label != "Commit message",
            }
            for label, value in facts(notice)[:MAX_FIELDS]
        ],
        "footer": {"text": cut(f"GimletD · event {notice.event_id}", FOOTER_LIMIT)},
    }
    url = gitops_commit_url(notice) or (web_url(notice.version.url) if notice.version else None)
    if url is not None:
        embed["url"] = url
    return {
        "content": cut(title, CONTENT_LIMIT),
        "embeds": [fit(embed, EMBED_TOTAL_LIMIT)],
        "allowed_mentions": {"parse": []},
    }


def embed_text_length(embed: dict[str, Any]) -> int:
    """The characters Discord counts against EMBED_TOTAL_LIMIT."""
    fields = embed.get("fields", [])
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + len(embed.get("footer", {}).get("text", ""))
        + sum(len(f["name"]) + len(f["value"]) for f in fields)
    )


def fit(embed: dict[str, Any], limit: int) -> dict[str, Any]:
    """The embed cut to `limit` characters in all: the description gives way first, then fields."""
    over = embed_text_length(embed) - limit
    if over > 0 and embed.get("description"):
        embed["description"] = cut(embed["description"], max(len(embed["description"]) - over, 0))
    for item in sorted(embed["fields"], key=lambda f: len(f["value"]), reverse=True):
        over = embed_text_length(embed) - limit
        if over <= 0:
            break
        item["value"] = cut(item["value"], max(len(item["value"]) - over, 1))
    return embed


def judge(reply: Reply) -> Outcome:
    if reply.status == 429:
        body = reply.json()
        wait = body.get("retry_after") if isinstance(body, dict) else None
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            return Outcome(Verdict.RETRY, "Discord is rate limiting (429)", float(wait))
    if reply.status == 404:
        return Outcome(Verdict.GIVE_UP, "Discord does not know the webhook or channel (404)")
    return judge_http(reply, "Discord") or SENT
