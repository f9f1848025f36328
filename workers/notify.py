"""Sending notifications: one task per (notice, target), retried with back-off (I6).

A notice and its pending deliveries are stored with the outcome they announce,
so a delivery lost with a worker or a Redis restart is found by the sweep and
sent again; a release never waits for, or fails with, a notification.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from celery import Task

from gimletd import metrics
from gimletd.models import DeliveryStatus
from gimletd.notifications import github
from gimletd.notifications.delivery import (
    NotificationError,
    Outcome,
    Verdict,
    retry_delay,
    send,
)
from gimletd.notifications.notice import Notice
from gimletd.notifications.targets import configured_targets, judge, request_for, targets_for
from workers import context
from workers.celery import RETRY_WHILE_STORE_UNAVAILABLE, app

log = logging.getLogger(__name__)

#: A send may take this many times NOTIFICATIONS_TIMEOUT in all. httpx's timeout bounds
#: each read, not a whole answer: an endpoint sending a byte now and then would hold a
#: worker process for good, and releases with it where a worker serves both queues (I6).
DEADLINE_FACTOR = 2


class DeadlineExceeded(Exception):
    """A send outlived its deadline."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `DeadlineExceeded` in the block after `seconds`, even inside a blocking read.

    A SIGALRM timer, so only in a process's main thread, where the prefork and
    solo pools run tasks, and only when no other timer runs there (its owner
    bounds the block then, as pytest-timeout does in tests); otherwise the
    block runs without one. A timer that fires as the block ends raises
    nothing: the block finished.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
        yield
        return
    armed = True

    def expire(signum: int, frame: object) -> None:
        if armed:
            raise DeadlineExceeded(f"no complete answer within {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def notice_targets(notice: Notice) -> list[str]:
    """The configured targets that take `notice`."""
    return targets_for(notice, configured_targets(context.settings()))


def send_deliveries(deliveries: Iterable[tuple[str, str]]) -> None:
    """Queue a task for each (notice id, target)."""
    for notice_id, target in deliveries:
        deliver.delay(notice_id, target)


def send_notices(notices: Iterable[tuple[Notice, Sequence[str]]]) -> None:
    """Queue a task for each target of each stored (notice, targets)."""
    send_deliveries((notice.id, target) for notice, targets in notices for target in targets)


@app.task(
    bind=True,
    name="gimletd.notify.deliver",
    acks_late=True,
    **RETRY_WHILE_STORE_UNAVAILABLE,
)
def deliver(self: Task, notice_id: str, target: str) -> None:
    """Send one notice to one target; retry what the target's reply says to retry."""
    store, settings = context.store(), context.settings()
    # Long enough for the request and recording its outcome; a worker killed while
    # sending leaves the delivery to the sweep once this runs out.
    lease = 3 * settings.notifications_timeout
    delivery = store.start_delivery(notice_id, target, lease=lease)
    if delivery is None:
        return  # sent, given up on, being sent, or not due: another task carries it
    notice, attempts = delivery.notice, delivery.attempts
    if target == "github" and _flux_reported(notice):
        store.finish_delivery(
            notice_id, target, DeliveryStatus.SKIPPED,
            "not sent: Flux reported on the commit meanwhile, and that status was sent",
        )  # fmt: skip
        return
    try:
        outbound = request_for(target, notice, settings)
        timeout = settings.notifications_timeout
        with deadline(DEADLINE_FACTOR * timeout):
            reply = send(outbound, timeout=timeout)
        outcome = judge(target, reply)
    except NotificationError as exc:
        outcome = Outcome(Verdict.GIVE_UP, str(exc))
    except DeadlineExceeded as exc:  # the endpoint answers, but too slowly to finish
        outcome = Outcome(Verdict.RETRY, str(exc))
    except Exception as exc:  # a bug or a malformed setting; its text may hold a token
        log.exception("sending notification %s to %s failed", notice_id, target)
        outcome = Outcome(Verdict.RETRY, f"sending failed: {type(exc).__name__}")
    if outcome.verdict is Verdict.SENT:
        plural = "s" if attempts > 1 else ""
        store.finish_delivery(
            notice_id, target, DeliveryStatus.SENT, f"sent in {attempts} attempt{plural}"
        )
        return
    if outcome.verdict is Verdict.GIVE_UP or attempts >= settings.notifications_max_attempts:
        reason = outcome.reason
        if outcome.verdict is Verdict.RETRY:
            reason = f"gave up after {attempts} attempts: {reason}"
        store.finish_delivery(notice_id, target, DeliveryStatus.FAILED, reason)
        metrics.NOTIFICATION_FAILURES.labels(target, "given up").inc()
        log.warning("notification %s to %s given up: %s", notice_id, target, reason)
        return
    delay = retry_delay(outcome, attempts, base=settings.notifications_retry_base)
    store.defer_delivery(notice_id, target, until=time.time() + delay, problem=outcome.reason)
    metrics.NOTIFICATION_FAILURES.labels(target, "retried").inc()
    log.info("notification %s to %s: %s; retrying in %.1fs", notice_id, target, outcome.reason,
             delay)  # fmt: skip
    raise self.retry(countdown=delay, max_retries=None)


def _flux_reported(notice: Notice) -> bool:
    """Whether a `pending` commit status would now overwrite Flux's result for its commit.

    The pending status and Flux's are separate deliveries; when the first was
    retried past the second, sending it would leave the commit pending for good.
    """
    if not github.is_pending(notice) or not notice.gitops_commit:
        return False
    gitops_repo = context.settings().gitops_repo_for(notice.env)
    status = context.store().flux_status(gitops_repo, notice.env, notice.gitops_commit)
    return status is not None and status.final
