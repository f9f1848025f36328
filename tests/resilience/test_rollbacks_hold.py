"""Rollbacks hold: workers killed while rollbacks and new policy deploys are written.

Other release managers let the next automated deploy undo a rollback. Here a
rollback holds its app until someone lifts the hold, also when the worker
writing it dies between its push and its record: the next worker finds the
commit by its trailer (I2) and must place the hold all the same. That kill is
made certain once per run (`kill_between_push_and_record`); the other kills
fall where they fall.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from gimletd.settings import Settings
from tests.resilience.harness import APP, Install, Outcome, Posted, check, env_name, releases
from tests.support import gitops

ENVIRONMENTS = 6
BEFORE = 3  # policy deploys per environment before its rollback
AFTER = 2  # policy deploys per environment posted after its rollback
KILLS = 3  # besides the one between a rollback's push and its record
#: Tries at that kill, each with a rollback of its own.
KILL_TRIES = 3
#: Numbers of the rollbacks in `Posted.accepted`, after those of the artifacts.
ROLLBACKS_FROM = 10_000


@pytest.mark.slow
def test_rollbacks_hold_their_apps_through_worker_kills(
    artifact: dict[str, Any],
    install_settings: Settings,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    envs = [env_name(n) for n in range(ENVIRONMENTS)]
    first = ENVIRONMENTS * BEFORE
    posted = Posted()
    for start in range(0, first, ENVIRONMENTS):  # a round at a time: none is superseded
        round_ = range(start, start + ENVIRONMENTS)
        install.post(releases(artifact, round_, ENVIRONMENTS), posted=posted)
        install.wait_until_settled(posted.accepted.values(), timeout=60)
    # The release commits of each env, oldest first, as (commit, event).
    history: dict[str, list[tuple[str, str]]] = {env: [] for env in envs}
    for commit in reversed(gitops.messages(install.remote)):
        history[commit.trailers["Gimlet-Env"]].append((commit.sha, commit.trailers["Gimlet-Event"]))
    # Each env's last rollback event, and the (commit, event) it rolled back to.
    rollbacks: dict[str, str] = {}
    targets: dict[str, tuple[str, str]] = {}
    numbers = itertools.count(ROLLBACKS_FROM)

    # The first env is rolled back while nothing else is written, and the worker killed
    # between its push and its record; when the kill comes too late, it is rolled back
    # again, to another release.
    killed_before_record = False
    with install.client() as client:
        for attempt in range(KILL_TRIES):
            env = envs[0]
            targets[env] = history[env][attempt % 2]
            rollbacks[env] = _roll_back(client, posted, next(numbers), env, targets[env][0])
            kills = install.kills
            killed_before_record = kill_between_push_and_record(install, rollbacks[env])
            if install.kills > kills:
                install.add_worker()
            if killed_before_record:
                break

    # The others are rolled back as new deploys arrive, while workers are killed.
    for env in envs[1:]:
        targets[env] = history[env][0]
    deploys = list(releases(artifact, range(first, first + ENVIRONMENTS * AFTER), ENVIRONMENTS))
    poster = threading.Thread(
        target=_roll_back_and_deploy, args=(install, posted, numbers, rollbacks, targets, deploys)
    )
    poster.start()
    chance = random.Random(3)
    for _ in range(KILLS):
        time.sleep(chance.uniform(0.2, 0.6))
        install.kill_writing_worker()
        install.add_worker()
    poster.join()
    _wait_until_only_held_writes_wait(install, rollbacks.values(), envs=envs, timeout=90)

    breaches = []
    held = {hold["env"]: hold for hold in install.http.get("/api/holds").json()}
    for env, event_id in rollbacks.items():
        live = gitops.read_json(install.remote, f"{env}/{APP}/release.json")
        if live["eventId"] != targets[env][1]:
            breaches.append(f"{env}/{APP} runs {live['eventId']}, not its rollback target")
        hold = held.get(env)
        if hold is None or hold["commit"] != targets[env][0] or hold["eventId"] != event_id:
            breaches.append(f"{env}/{APP}: no hold of its rollback {event_id}: {hold}")
    # What the rollbacks held back is applied once the holds are lifted; then every event
    # is terminal and the whole run can be checked (I2, I3: the apps end on the last deploy).
    for env in held:
        install.http.delete("/api/holds", params={"env": env, "app": APP}).raise_for_status()
    install.wait_until_settled(posted.accepted.values(), timeout=60)
    outcome = check("rollbacks hold", install, posted)
    outcome.breaches[:0] = breaches
    outcome.extra["rollbacks"] = len(rollbacks)
    outcome.extra["killed_between_push_and_record"] = int(killed_before_record)
    report(outcome)
    assert killed_before_record, "the kill missed the window between push and record"
    assert outcome.kills >= KILLS + 1
    assert len(rollbacks) == ENVIRONMENTS


def kill_between_push_and_record(install: Install, event_id: str, timeout: float = 30) -> bool:
    """SIGKILL the worker that pushed `event_id`'s commit before it records the outcome.

    The test watches the remote's branch; the moment it moves, it takes the
    database's writer lock (the `flock` of gimletd/sqlite.py), so the worker
    that pushed waits there to record, and when the new head is the event's
    commit the worker is killed while it waits. False when the event was
    recorded first after all.
    """
    ref = install.remote / "refs" / "heads" / "main"
    seen = ref.read_bytes()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = ref.read_bytes()
        if head == seen:
            time.sleep(0.0002)
            continue
        seen = head
        with _writer_lock(install.settings):
            [newest, *_] = gitops.messages(install.remote)
            if newest.trailers.get("Gimlet-Event") != event_id:
                continue
            event = install.http.get("/api/event", params={"id": event_id}).json()
            return event["status"] == "new" and install.kill_writing_worker(wait=1.0)
    raise AssertionError(f"{event_id} was not pushed within {timeout}s\n{install.logs()}")


@contextlib.contextmanager
def _writer_lock(settings: Settings) -> Iterator[None]:
    """Hold the SQLite writer lock of the install's database: its writers wait meanwhile."""
    database = make_url(settings.resolved_database_url).database
    assert database, "needs the install's SQLite database"
    descriptor = os.open(f"{database}.writer.lock", os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # drops the lock


def _roll_back(client: httpx.Client, posted: Posted, n: int, env: str, sha: str) -> str:
    """Roll `env` back to `sha`: the event's id, also `posted.accepted[n]` ("" if refused)."""
    response = client.post("/api/rollback", params={"env": env, "app": APP, "sha": sha})
    if response.status_code != 201:
        posted.refused.append(f"rollback of {env}: {response.status_code} {response.text}")
        return ""
    event_id = str(response.json()["id"])
    posted.accepted[n] = event_id
    posted.accepted_at[n] = time.time()
    return event_id


def _roll_back_and_deploy(
    install: Install,
    posted: Posted,
    numbers: Iterator[int],
    rollbacks: dict[str, str],
    targets: dict[str, tuple[str, str]],
    deploys: list[tuple[int, dict[str, Any]]],
) -> None:
    """Roll back each environment not rolled back yet, then post new policy deploys to all.

    Deploy i goes to env i: the first round follows each rollback at once, while it
    is being written. One request at a time.
    """
    with install.client() as client:
        for i in range(ENVIRONMENTS):
            env = env_name(i)
            if env not in rollbacks:
                rollbacks[env] = _roll_back(client, posted, next(numbers), env, targets[env][0])
            Install.post_one(client, *deploys[i], posted)
            time.sleep(0.1)
        for n, body in deploys[ENVIRONMENTS:]:
            Install.post_one(client, n, body, posted)
            time.sleep(0.1)


def _wait_until_only_held_writes_wait(
    install: Install, rollbacks: Iterable[str], *, envs: Iterable[str], timeout: float
) -> None:
    """Wait until the rollbacks ended and every write still queued is held."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [install.http.get("/api/event", params={"id": e}).json()["status"]
                    for e in rollbacks]  # fmt: skip
        queued = [
            write["reason"]
            for env in envs
            for write in install.http.get("/api/queue", params={"env": env}).json()["writes"]
        ]
        if "new" not in statuses and all(reason.startswith("held") for reason in queued):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"rollbacks {statuses}, queued writes {queued} after {timeout}s\n{install.logs()}"
            )
        time.sleep(0.2)
