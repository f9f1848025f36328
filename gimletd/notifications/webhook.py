"""Generic webhooks: the notice as JSON, signed like Flux's generic-hmac.

`X-Signature: sha256=<hex HMAC-SHA256 of the raw body>` when WEBHOOK_SECRET is
set, so the verifier a team already runs for Flux works unchanged.
`X-Delivery-ID` is the notice id, the same on every retry, for idempotency.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from gimletd.notifications.delivery import SENT, Outbound, Outcome, Reply, judge_http
from gimletd.notifications.notice import Notice
from gimletd.notifications.text import headline, links, plain_text


def body(notice: Notice) -> dict[str, Any]:
    """A stable `type`, `id` and `timestamp`, the words of the message, and the notice itself."""
    return {
        "type": notice.kind.value,
        "id": notice.id,
        "timestamp": datetime.fromtimestamp(notice.created, UTC).isoformat(),
        "failure": notice.kind.failure,
        "headline": headline(notice),
        "text": plain_text(notice),
        "links": dict(links(notice)),
        "notice": notice.to_json(),
    }


def request(notice: Notice, *, url: str, secret: str | None) -> Outbound:
    unsigned = Outbound.json(
        url, body(notice), {"X-Delivery-ID": notice.id, "X-Gimlet-Event": notice.kind.value}
    )
    if not secret:
        return unsigned
    signature = hmac.new(secret.encode(), unsigned.body, hashlib.sha256).hexdigest()
    return Outbound(
        unsigned.method,
        unsigned.url,
        {**unsigned.headers, "X-Signature": f"sha256={signature}"},
        unsigned.body,
    )


def judge(reply: Reply) -> Outcome:
    return judge_http(reply, "The webhook") or SENT
