"""A notification endpoint that answers a byte at a time cannot hold a worker for good (I6).

httpx's timeout bounds each read, so an endpoint that sends a byte just
inside it never times out. The worker here serves every queue with one
process, as a one-process install would: without a deadline on the whole
delivery, the release behind it would wait as long as the endpoint trickles.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from gimletd.notifications.delivery import Outbound, send
from gimletd.settings import Settings
from tests.workers.test_notify_flow import StartWorkers, release_to_staging, settled_notifications
from workers.notify import DeadlineExceeded, deadline

TIMEOUT = 1.0  # NOTIFICATIONS_TIMEOUT: each read; the endpoint sends a byte every...
TRICKLE = 0.3  # ...this many seconds, so no read ever times out
#: How long the endpoint keeps trickling before it gives up itself.
TRICKLE_FOR = 60.0


@pytest.fixture
def trickle() -> Iterator[str]:
    """An HTTP endpoint that answers every request a header byte at a time, for a minute."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            deadline = time.monotonic() + TRICKLE_FOR
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    connection.sendall(b"a")
                except OSError:
                    return  # the client hung up: the deadline worked
                stop.wait(TRICKLE)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    server.close()


@pytest.fixture
def settings(settings: Settings, trickle: str) -> Settings:
    return settings.model_copy(
        update={
            "notifications_provider": "webhook",
            "webhook_urls": SecretStr(trickle),
            "webhook_secret": SecretStr("s3cret"),
            "notifications_timeout": TIMEOUT,
            "notifications_retry_base": 0.2,
            "notifications_max_attempts": 2,
        }
    )


@pytest.mark.slow
def test_a_trickling_endpoint_is_cut_off_and_the_next_release_goes_ahead(
    client: FlaskClient,
    artifact: dict[str, Any],
    settings: Settings,
    start_workers: StartWorkers,
) -> None:
    start_workers(settings)  # one process for every queue
    first = release_to_staging(client, artifact)
    started = time.monotonic()
    second = release_to_staging(client, artifact, sha="b" * 40)
    # Behind at most one delivery's deadline (2 x the timeout), not the endpoint's minute.
    assert time.monotonic() - started < TRICKLE_FOR / 3, "the release waited for the endpoint"
    for event in (first, second):
        [notification] = settled_notifications(client, event["id"], 1)
        assert notification["status"] == "failed"
        assert notification["attempts"] == 2
        assert notification["statusDesc"] == (
            f"gave up after 2 attempts: no complete answer within {2 * TIMEOUT:g}s"
        )


@pytest.mark.timeout(0)  # pytest-timeout's own SIGALRM timer would stand in for the deadline
def test_a_send_to_a_trickling_endpoint_ends_at_its_deadline(trickle: str) -> None:
    """In process: each read comes in time, the whole answer never does."""
    outbound = Outbound("POST", trickle, {"Content-Type": "application/json"}, b"{}")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"no complete answer within 1\.5s"), deadline(1.5):
        send(outbound, timeout=TIMEOUT)
    assert 1.5 <= time.monotonic() - started < 5
    # The timer is off again: nothing fires later.
    time.sleep(0.2)


@pytest.mark.timeout(0)
def test_a_deadline_leaves_no_timer_behind_and_gives_way_to_another() -> None:
    with deadline(0.2):
        pass
    time.sleep(0.3)  # a timer left running would raise here
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    # Inside another timer's block (the outer deadline's here) it arms nothing of its own.
    with pytest.raises(DeadlineExceeded, match=r"within 0\.3s"), deadline(0.3), deadline(5):
        time.sleep(2)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
