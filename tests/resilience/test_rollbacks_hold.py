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
import functools
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from gimletd.settings import Settings
from gimletd.sqlite import writer_lock_path
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


class Rollbacks:
    """The rollbacks of a run: each env's last one, the (commit, event) it went back to."""

    def __init__(self, install: Install, posted: Posted) -> None:
        self.install = install
        self.posted = posted
        self.events: dict[str, str] = {}
        self.targets: dict[str, tuple[str, str]] = {}
        self._numbers = itertools.count(ROLLBACKS_FROM)

    def roll_back(self, client: httpx.Client, env: str, target: tuple[str, str]) -> str:
        """Roll `env` back to the release commit `target`; the event's id."""
        sha, _ = target
        response = client.post("/api/rollback", params={"env": env, "app": APP, "sha": sha})
        assert response.status_code == 201, f"rollback of {env}: {response.text}"
        event_id = str(response.json()["id"])
        n = next(self._numbers)
        self.posted.accepted[n], self.posted.accepted_at[n] = event_id, time.time()
        self.events[env], self.targets[env] = event_id, target
        return event_id

    def breaches(self) -> list[str]:
        """Each rolled-back app must run its target, held by its rollback."""
        breaches = []
        held = {hold["env"]: hold for hold in self.install.http.get("/api/holds").json()}
        for env, event_id in self.events.items():
            commit, released_by = self.targets[env]
            live = gitops.read_json(self.install.remote, f"{env}/{APP}/release.json")
            if live["eventId"] != released_by:
                breaches.append(f"{env}/{APP} runs {live['eventId']}, not its rollback target")
            hold = held.get(env)
            if hold is None or (hold["commit"], hold["eventId"]) != (commit, event_id):
                breaches.append(f"{env}/{APP}: no hold of its rollback {event_id}: {hold}")
        return breaches


@pytest.mark.slow
def test_rollbacks_hold_their_apps_through_worker_kills(
    artifact: dict[str, Any],
    install_settings: Settings,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    """Roll back every env, one with a kill between push and record, the others under kills.

    Then lift the holds, and check the whole run as every scenario does.
    """
    install = start_install(install_settings, workers=3)
    envs = [env_name(n) for n in range(ENVIRONMENTS)]
    posted = Posted()
    for start in range(0, ENVIRONMENTS * BEFORE, ENVIRONMENTS):  # one round at a time, so
        round_ = range(start, start + ENVIRONMENTS)  # none is superseded
        install.post(releases(artifact, round_, ENVIRONMENTS), posted=posted)
        install.wait_until_settled(posted.accepted.values(), timeout=60)
    history = _release_commits(install, envs)
    rollbacks = Rollbacks(install, posted)

    killed_before_record = _roll_back_killing_before_record(install, rollbacks, envs[0], history)
    first_after = ENVIRONMENTS * BEFORE
    deploys = releases(artifact, range(first_after, first_after + ENVIRONMENTS * AFTER),
                       ENVIRONMENTS)  # fmt: skip
    _roll_back_and_deploy_while_killing(install, rollbacks, history, list(deploys))
    _wait_until_only_held_writes_wait(install, rollbacks.events.values(), envs=envs, timeout=90)
    breaches = rollbacks.breaches()

    # What the rollbacks held back is applied once the holds are lifted; then every event
    # is terminal and the whole run can be checked (I2, I3: the apps end on the last deploy).
    for env in rollbacks.events:  # a missing hold is a breach already: 404 is expected then
        lifted = install.http.delete("/api/holds", params={"env": env, "app": APP})
        assert lifted.status_code in (200, 404), lifted.text
    install.wait_until_settled(posted.accepted.values(), timeout=60)
    outcome = check("rollbacks hold", install, posted)
    outcome.breaches[:0] = breaches
    outcome.extra["rollbacks"] = len(rollbacks.events)
    outcome.extra["killed_between_push_and_record"] = int(killed_before_record)
    report(outcome)
    assert killed_before_record, "the kill missed the window between push and record"
    assert outcome.kills >= KILLS + 1
    assert sorted(rollbacks.events) == envs


def _release_commits(install: Install, envs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The release commits of each env, oldest first, as (commit, event)."""
    history: dict[str, list[tuple[str, str]]] = {env: [] for env in envs}
    for commit in reversed(gitops.messages(install.remote)):
        trailers = commit.trailers
        history[trailers["Gimlet-Env"]].append((commit.sha, trailers["Gimlet-Event"]))
    return history


def _roll_back_killing_before_record(
    install: Install, rollbacks: Rollbacks, env: str, history: dict[str, list[tuple[str, str]]]
) -> bool:
    """Roll `env` back while nothing else is written, killing its worker before it records.

    When the kill comes too late, `env` is rolled back again, to another release.
    """
    with install.client() as client:
        for attempt in range(KILL_TRIES):
            target = history[env][attempt % 2]
            kills = install.kills
            killed = kill_between_push_and_record(
                install, functools.partial(rollbacks.roll_back, client, env, target)
            )
            if install.kills > kills:
                install.add_worker()
            if killed:
                return True
    return False


def kill_between_push_and_record(
    install: Install, post: Callable[[], str], timeout: float = 30
) -> bool:
    """SIGKILL the worker that pushes the commit of the event `post` makes, before it records.

    The test watches the remote's branch; the moment it moves, it takes the
    database's writer lock (the `flock` of gimletd/sqlite.py), so the worker
    that pushed waits there to record, and when the new head is the event's
    commit the worker is killed while it waits. False when the event was
    recorded first after all, or its worker held no GitOps lock when killed.
    """
    seen = _branch_head(install)
    event_id = post()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = _branch_head(install)
        if head == seen:
            time.sleep(0.001)
            continue
        seen = head
        with _writer_lock(install.settings, timeout=max(deadline - time.monotonic(), 1.0)):
            [newest, *_] = gitops.messages(install.remote)
            if newest.trailers.get("Gimlet-Event") != event_id:
                continue
            event = install.http.get("/api/event", params={"id": event_id}).json()
            return event["status"] == "new" and install.kill_writing_worker(wait=1.0)
    raise AssertionError(f"{event_id} was not pushed within {timeout}s\n{install.logs()}")


def _branch_head(install: Install) -> bytes:
    """The remote's branch head: its loose ref, cheap to poll; through git once packed."""
    try:
        return (install.remote / "refs" / "heads" / "main").read_bytes()
    except FileNotFoundError:
        return gitops.git(install.remote, "rev-parse", "main").encode()


@contextlib.contextmanager
def _writer_lock(settings: Settings, *, timeout: float) -> Iterator[None]:
    """Hold the SQLite writer lock of the install's database: its writers wait meanwhile."""
    lock = writer_lock_path(make_url(settings.resolved_database_url).database or "")
    assert lock is not None, "needs the install's SQLite database"
    descriptor = os.open(lock, os.O_RDWR)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "a writer kept the database for too long"
                time.sleep(0.0005)
        yield
    finally:
        os.close(descriptor)  # drops the lock


def _roll_back_and_deploy_while_killing(
    install: Install,
    rollbacks: Rollbacks,
    history: dict[str, list[tuple[str, str]]],
    deploys: list[tuple[int, dict[str, Any]]],
) -> None:
    """Roll back each env not rolled back yet, then post new policy deploys, killing workers.

    Deploy i goes to env i: the first round follows each rollback at once, while it
    is being written. One request at a time, from a thread; its failure is raised here.
    """
    failures: list[BaseException] = []

    def post() -> None:
        try:
            with install.client() as client:
                for i, (n, body) in enumerate(deploys):
                    env = env_name(i % ENVIRONMENTS)
                    if env not in rollbacks.events:
                        rollbacks.roll_back(client, env, history[env][0])
                    Install.post_one(client, n, body, rollbacks.posted)
                    time.sleep(0.1)
        except BaseException as exc:
            failures.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    install.kill_writers(KILLS, seed=3, pause=(0.2, 0.6))
    poster.join()
    if failures:
        raise failures[0]


def _wait_until_only_held_writes_wait(
    install: Install, rollbacks: Iterable[str], *, envs: list[str], timeout: float
) -> None:
    """Wait until the rollbacks ended and every write queued is held.

    (A deploy not yet planned is in no queue; the holds keep it back all the same.)
    """
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
