"""The configured targets, and for each the request of its provider and the reading of replies.

`slack`, `discord` and `github` are one target each; WEBHOOK_URLS gives one
target per URL, `webhook-1`, `webhook-2`, ... in the order written, so the
URLs (which often carry a token) never show in the API.
"""

from __future__ import annotations

from gimletd.notifications import discord, github, slack, webhook
from gimletd.notifications.delivery import NotificationError, Outbound, Outcome, Reply
from gimletd.notifications.notice import Notice
from gimletd.settings import Settings

WEBHOOK_PREFIX = "webhook-"


def configured_targets(settings: Settings) -> list[str]:
    """Every target NOTIFICATIONS_PROVIDER turns on."""
    targets: list[str] = []
    for provider in settings.notification_providers:
        if provider == "webhook":
            count = len(settings.webhook_url_list)
            targets.extend(f"{WEBHOOK_PREFIX}{n}" for n in range(1, count + 1))
        else:
            targets.append(provider)
    return targets


def targets_for(notice: Notice, configured: list[str]) -> list[str]:
    """The targets that take `notice`: every one, but GitHub only for a commit it knows."""
    return [t for t in configured if t != "github" or github.applies(notice)]


def request_for(target: str, notice: Notice, settings: Settings) -> Outbound:
    """The HTTP request that sends `notice` to `target`.

    :raise NotificationError: when the settings no longer allow it (a target
        removed, no Slack channel for the env); retrying does not help.
    """
    if target == "slack" and settings.notifications_token is not None:
        channel = settings.slack_channel_for(notice.env)
        if not channel:
            raise NotificationError(
                f"no Slack channel for {notice.env}: set NOTIFICATIONS_DEFAULT_CHANNEL or map "
                "the env in NOTIFICATIONS_CHANNEL_MAPPING"
            )
        return slack.request(
            notice,
            token=settings.notifications_token.get_secret_value(),
            channel=channel,
            api_url=settings.slack_api_url,
        )
    if target == "discord" and settings.discord_webhook_url is not None:
        return discord.webhook_request(
            notice, webhook_url=settings.discord_webhook_url.get_secret_value()
        )
    if target == "discord" and settings.discord_token is not None and settings.discord_channel:
        return discord.bot_request(
            notice,
            token=settings.discord_token.get_secret_value(),
            channel=settings.discord_channel,
            api_url=settings.discord_api_url,
        )
    if target == "github" and settings.github_token is not None:
        return github.request(
            notice, token=settings.github_token.get_secret_value(), api_url=settings.github_api_url
        )
    if target.startswith(WEBHOOK_PREFIX):
        urls = settings.webhook_url_list
        index = target.removeprefix(WEBHOOK_PREFIX)
        if index.isdigit() and 1 <= int(index) <= len(urls):
            secret = settings.webhook_secret
            return webhook.request(
                notice,
                url=urls[int(index) - 1],
                secret=secret.get_secret_value() if secret else None,
            )
    raise NotificationError(f"{target} is not a configured notification target any more")


def judge(target: str, reply: Reply) -> Outcome:
    """What `reply` to a request for `target` means."""
    if target == "slack":
        return slack.judge(reply)
    if target == "discord":
        return discord.judge(reply)
    if target == "github":
        return github.judge(reply)
    return webhook.judge(reply)
