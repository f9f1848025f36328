"""A whole GimletD install in processes, a load generator, and the invariant checks.

The install is what production runs: the API under gunicorn, Celery workers
on a release queue, a notification worker, beat, a Redis of the test's own
and a bare GitOps remote on disk. The load comes from client threads over
HTTP, as CI jobs would send it. `check` reads the outcome back through the
API, the database and the git command line, never through the code under
test, and lists every breach of the invariants of release-flow.md.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from sqlalchemy import Connection, create_engine, text

from gimletd.settings import Settings
from tests.conftest import ADMIN
from tests.support import gitops
from tests.support.processes import Process, start_api, start_beat, start_worker
from tests.support.prometheus import samples
from workers.locks import LOCK_PREFIX, holder_pid

APP = "frontend"
#: Celery's log lines of a task starting and of it ending, by task id.
_TASK_RECEIVED = re.compile(
    r"Task gimletd\.(?:events\.process|gitops\.drain)\[([0-9a-f-]+)\] received"
)  # the tasks that write to the GitOps repository
_TASK_ENDED = re.compile(r"Task [\w.]+\[([0-9a-f-]+)\] (?:succeeded|retry|raised|failed)")
#: Statuses an environment of an event may end in without a breach.
RELEASED = {"success", "superseded"}


def env_name(n: int) -> str:
    return f"env-{n:02d}"


def release_artifact(template: dict[str, Any], n: int, envs: int) -> dict[str, Any]:
    """Artifact `n`: a push to main with its own sha, deployed by policy to one environment."""
    artifact = copy.deepcopy(template)
    sha = f"{n + 1:040x}"
    artifact["version"].update(branch="main", event="push", sha=sha, sourceBranch="main")
    artifact["context"].update(BRANCH="main", CIRCLE_BRANCH="main", CIRCLE_SHA1=sha)
    config = copy.deepcopy(artifact["environments"][0])
    config.update(env=env_name(n % envs), app=APP)
    artifact["environments"] = [config]
    return artifact


def releases(
    template: dict[str, Any], numbers: Iterable[int], envs: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Artifacts `numbers` of `release_artifact`, each with its number, made as they are posted."""
    return ((n, release_artifact(template, n, envs)) for n in numbers)


@dataclass
class Posted:
    """What the load generator saw: accepted events, and the answers it had to retry."""

    accepted: dict[int, str] = field(default_factory=dict)  # artifact n -> event id
    accepted_at: dict[int, float] = field(default_factory=dict)  # artifact n -> time.time()
    unavailable: int = 0  # 503s, retried after their Retry-After
    repeated: int = 0  # retries answered with the first try, stored behind its 503 (200)
    refused: list[str] = field(default_factory=list)  # anything else but 201: a breach
    lock: threading.Lock = field(default_factory=threading.Lock)


class Install:
    """GimletD's processes on `settings`, started and stopped by the test."""

    def __init__(self, settings: Settings, log_dir: Path, remote: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.remote = remote
        self.processes: list[Process] = []
        self.api: Process | None = None
        self.url = ""
        self.workers: list[Process] = []
        self.kills = 0
        self.kills_mid_write = 0
        self._http: httpx.Client | None = None
        self._redis: redis.Redis | None = None
        self._numbers = itertools.count()
        self._names = threading.Lock()

    def start(self, *, workers: int = 3) -> None:
        """Start every process at once and wait until each is ready."""
        with ThreadPoolExecutor(max_workers=workers + 3) as pool:
            api = pool.submit(start_api, self.settings, self.log_dir)
            started = [pool.submit(self.add_worker) for _ in range(workers)]
            notifier = pool.submit(start_worker, self.settings, self.log_dir, "notifier",
                                   queues="notifications")  # fmt: skip
            beat = pool.submit(start_beat, self.settings, self.log_dir)
        # Everything that did start is in `processes` before any failure is raised, so the
        # fixture stops it and no stray worker takes the next test's tasks.
        if api.exception() is None:
            self.api, self.url = api.result()
            self.processes.append(self.api)
        self.processes.extend(f.result() for f in (notifier, beat) if f.exception() is None)
        for future in (api, notifier, beat, *started):
            future.result()

    def add_worker(self) -> Process:
        with self._names:
            name = f"w{next(self._numbers)}"
        worker = start_worker(self.settings, self.log_dir, name, queues="gimletd")
        with self._names:
            self.processes.append(worker)
            self.workers.append(worker)
        return worker

    def kill_writing_worker(self, *, wait: float = 3.0) -> bool:
        """SIGKILL a worker and its pool process in the middle of its GitOps writes.

        As the OOM killer or a lost node would. The worker chosen is one whose pool
        process holds an environment's GitOps lock, which it holds only while it
        applies writes (the lock's token names its pid: `workers.locks.holder_token`).
        When none does within `wait` seconds, one in the middle of a task, else any.
        True when the lock was still held when the worker died: its key outlives
        the kill until it expires, and the kill is counted in `kills_mid_write`.
        """
        deadline = time.monotonic() + wait
        processes = {worker: _pids_of(worker) for worker in self.workers}  # read /proc once
        holder = _lock_holder(processes, self._lock_holder_pids())
        while holder is None and time.monotonic() < deadline:
            time.sleep(0.002)
            holder = _lock_holder(processes, self._lock_holder_pids())
        if holder is not None:
            worker, writing = holder
            for pid in writing:  # the process in the middle of its writes first, at once
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            busy = [w for w in self.workers if _running_task(w.log())]
            worker = (busy or self.workers)[0]
        pids = processes[worker]
        _kill_with_children(worker)
        self.workers.remove(worker)
        self.kills += 1
        mid_write = bool(pids & self._lock_holder_pids())
        self.kills_mid_write += mid_write
        return mid_write

    def kill_writers(self, kills: int, *, seed: int, pause: tuple[float, float]) -> None:
        """Kill a writing worker `kills` times, each after a random pause, and replace it."""
        chance = random.Random(seed)
        for _ in range(kills):
            time.sleep(chance.uniform(*pause))
            self.kill_writing_worker()
            self.add_worker()

    def _lock_holder_pids(self) -> set[int]:
        """The pids that hold a GitOps lock now, as their lock tokens name them."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.resolved_redis_url)
        tokens = (self._redis.get(key) for key in self._redis.scan_iter(f"{LOCK_PREFIX}:*"))
        return {pid for token in tokens if token and (pid := holder_pid(token)) is not None}

    def stop(self) -> None:
        """Kill every process and its children when the run is over.

        Nothing is left to finish: even a cold shutdown of a Celery worker takes
        about 3 s, and a warm one waits for a delivery to an endpoint that sleeps.
        """
        for process in self.processes:
            _kill_with_children(process)
            process.stop()  # it has exited: this closes its log
        if self._http is not None:
            self._http.close()
        if self._redis is not None:
            self._redis.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.processes)

    def client(self) -> httpx.Client:
        """A new client with its own connections, as one CI job would have; close it."""
        return httpx.Client(base_url=self.url, headers=ADMIN, timeout=30)

    @property
    def http(self) -> httpx.Client:
        """The test's own client for reads, shared by its threads and closed by `stop`.

        One for the whole run: making an httpx client costs about 45 ms of CPU (it
        loads the CA certificates), which, per request, was most of a run's CPU.
        """
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, headers=ADMIN, timeout=30,
                                      limits=httpx.Limits(max_connections=16))  # fmt: skip
        return self._http

    def post(
        self, artifacts: Iterable[tuple[int, dict[str, Any]]], *, clients: int = 8,
        posted: Posted | None = None, pace: float = 0.0,
    ) -> Posted:  # fmt: skip
        """Post the artifacts from `clients` threads; a 503 is retried after its Retry-After.

        Each client sends as fast as the API answers, or waits `pace` seconds between posts.
        """
        posted = posted or Posted()
        pending = iter(artifacts)
        take = threading.Lock()

        def client_loop() -> None:
            with self.client() as client:
                while True:
                    with take:
                        item = next(pending, None)
                    if item is None:
                        return
                    n, body = item
                    self.post_one(client, n, body, posted)
                    time.sleep(pace)

        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return posted

    def post_in_background(
        self, artifacts: Iterable[tuple[int, dict[str, Any]]], *, clients: int = 4,
        pace: float = 0.0,
    ) -> tuple[Posted, threading.Thread]:  # fmt: skip
        """Post from a thread, so the test can break things meanwhile; it joins the thread."""
        posted = Posted()
        options = {"posted": posted, "clients": clients, "pace": pace}
        thread = threading.Thread(target=self.post, args=(artifacts,), kwargs=options)
        thread.start()
        return posted, thread

    @staticmethod
    def post_one(client: httpx.Client, n: int, body: dict[str, Any], posted: Posted) -> None:
        """Post one artifact as `gimlet artifact push` does: one Idempotency-Key for its tries."""
        deadline = time.monotonic() + 60
        key = {"Idempotency-Key": str(uuid.uuid4())}
        while time.monotonic() < deadline:
            try:
                response = client.post("/api/artifact", json=body, headers=key)
            except httpx.TransportError as exc:
                with posted.lock:
                    posted.refused.append(f"artifact {n}: {type(exc).__name__}")
                return
            repeated = response.status_code == 200 and response.json().get("duplicate") is True
            if response.status_code == 201 or repeated:
                with posted.lock:
                    posted.accepted[n] = response.json()["eventId"]
                    posted.accepted_at[n] = time.time()
                    posted.repeated += repeated
                return
            if response.status_code == 503 and "Retry-After" in response.headers:
                with posted.lock:
                    posted.unavailable += 1
                time.sleep(min(float(response.headers["Retry-After"]), 1.0))
                continue
            with posted.lock:
                posted.refused.append(f"artifact {n}: {response.status_code} {response.text}")
            return
        with posted.lock:
            posted.refused.append(f"artifact {n}: still 503 after 60s")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(self.http.get("/metrics").text)

    def wait_until_settled(self, event_ids: Iterable[str], timeout: float = 120.0) -> None:
        """Wait until no event is `new` and no GitOps write is queued, by `GET /metrics`."""
        expected = len(set(event_ids))
        deadline = time.monotonic() + timeout
        while True:
            values = self.metrics()
            events = Counter[bool]()
            for (name, labels), value in values.items():
                if name == "gimletd_events":
                    events[("status", "new") in labels] += int(value)
            new, ended = events[True], events[False]
            queued = sum(v for (name, _), v in values.items() if name == "gimletd_queue_depth")
            if new == 0 and queued == 0 and ended >= expected:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled after {timeout}s: {new} events new, {queued} writes queued\n"
                    + self.logs()
                )
            time.sleep(0.2)


def _running_task(log: str) -> str | None:
    """The id of the release task a worker's log shows started and not ended, if any."""
    ended = set(_TASK_ENDED.findall(log))
    running = [task for task in _TASK_RECEIVED.findall(log) if task not in ended]
    return running[-1] if running else None


@dataclass
class Outcome:
    """What a run left behind, and every invariant it breached."""

    name: str
    events: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    commits: int = 0
    push_rejections: int = 0
    write_retries: int = 0
    kills: int = 0
    kills_mid_write: int = 0
    unavailable: int = 0
    extra: dict[str, int] = field(default_factory=dict)  # what only one scenario counts
    breaches: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.name}: events {dict(self.events)}, results {dict(self.results)}, "
            f"commits {self.commits}, push rejections {self.push_rejections}, "
            f"write retries {self.write_retries}, "
            f"workers killed {self.kills} ({self.kills_mid_write} mid-write), "
            f"503s retried {self.unavailable}, "
            + "".join(f"{name.replace('_', ' ')} {value}, " for name, value in self.extra.items())
            + f"breaches {len(self.breaches)}"
        )


def _lock_holder(
    processes: dict[Process, set[int]], holders: set[int]
) -> tuple[Process, set[int]] | None:
    """The worker one of whose `processes` is among the lock `holders`, and those pids."""
    for worker, pids in processes.items():
        if pids & holders:
            return worker, pids & holders
    return None


def _pids_of(process: Process) -> set[int]:
    """The pids of a process and its children (a Celery worker's pool processes)."""
    try:
        main = psutil.Process(process.popen.pid)
        return {main.pid, *(child.pid for child in main.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _kill_with_children(process: Process) -> None:
    """SIGKILL a process and every process it started (a worker's pool), and reap it."""
    with contextlib.suppress(psutil.NoSuchProcess):
        parent = psutil.Process(process.popen.pid)
        for each in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(psutil.NoSuchProcess):
                each.kill()
    process.popen.wait()


def fetch_events(install: Install, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    def one(event_id: str) -> tuple[str, dict[str, Any]]:
        return event_id, install.http.get("/api/event", params={"id": event_id}).json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, event_ids))


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[Connection]:
    """A connection to the install's database, for reading it from outside GimletD."""
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def acceptance_order(settings: Settings) -> dict[str, int]:
    """Each event's place in acceptance order, read from the database."""
    with _database(settings) as connection:
        rows = connection.execute(text("SELECT id, seq FROM events"))
        return {row.id: row.seq for row in rows}


def events_in_flight(settings: Settings) -> int:
    """Events not yet processed (status `new`), read from the database."""
    with _database(settings) as connection:
        count = connection.execute(text("SELECT count(*) FROM events WHERE status = 'new'"))
        return int(count.scalar_one())


def check(
    name: str,
    install: Install,
    posted: Posted,
    *,
    allowed: Callable[[dict[str, Any]], bool] = lambda result: result["status"] in RELEASED,
) -> Outcome:
    """Read back the run through the API, the database and git; list every breach.

    - every accepted artifact's event is terminal, each environment released or
      superseded (I1, I5), and `allowed` decides what else a test may accept;
    - no other event is stored: a push the database committed behind an error
      (a connection cut during COMMIT) was answered by its retry, which carried
      the same Idempotency-Key;
    - each successful (event, env) is on the remote exactly once, as the event
      says, and no other release commit is (I2);
    - each environment's releases follow acceptance order and its app ends on
      the last artifact accepted for it (I3);
    - the remote passes `git fsck --strict`.
    """
    outcome = Outcome(
        name, kills=install.kills, kills_mid_write=install.kills_mid_write,
        unavailable=posted.unavailable,
    )  # fmt: skip
    breaches = outcome.breaches
    breaches.extend(f"not accepted: {refusal}" for refusal in posted.refused)
    events = fetch_events(install, posted.accepted.values())
    seq = acceptance_order(install.settings)
    unknown = [event_id for event_id in seq if event_id not in events]
    if unknown:
        breaches.append(f"{len(unknown)} events stored that no client was told of: {unknown}")
    if posted.repeated:
        outcome.extra["retries_answered_by_the_first_push"] = posted.repeated
    for event_id, event in events.items():
        outcome.events[event["status"]] += 1
        if event["status"] == "new":
            breaches.append(f"event {event_id} is not terminal (I5)")
        for result in event["results"]:
            outcome.results[result["status"]] += 1
            if not allowed(result):
                breaches.append(f"event {event_id} {result['env']}: {result}")

    history = gitops.messages(install.remote)
    releases = [c for c in history if "Gimlet-Event" in c.trailers]
    outcome.commits = len(releases)
    written = Counter((c.trailers["Gimlet-Event"], c.trailers["Gimlet-Env"]) for c in releases)
    expected = {
        (event_id, result["env"]): result["hash"]
        for event_id, event in events.items()
        for result in event["results"]
        if result["status"] == "success"
    }
    for key, count in written.items():
        if count > 1:
            breaches.append(f"{key} committed {count} times (I2)")
        if key not in expected:
            breaches.append(f"{key} committed but not reported as a success")
    commit_of = {(c.trailers["Gimlet-Event"], c.trailers["Gimlet-Env"]): c.sha for c in releases}
    for key, sha in expected.items():
        if commit_of.get(key) != sha:
            breaches.append(
                f"{key} reported as a success in {sha}, but main has {commit_of.get(key)}"
            )

    last: dict[str, str] = {}
    for event_id in sorted(events, key=seq.__getitem__):
        for result in events[event_id]["results"]:
            if result["status"] != "failure":  # a failed release leaves the app as it was
                last[result["env"]] = event_id
    applied: dict[str, list[int]] = {}
    for commit in reversed(releases):
        applied.setdefault(commit.trailers["Gimlet-Env"], []).append(
            seq[commit.trailers["Gimlet-Event"]]
        )
    for env, order in applied.items():
        if order != sorted(order):
            breaches.append(f"{env}: releases applied out of acceptance order (I3)")
    for env, event_id in sorted(last.items()):
        release = gitops.read_json(install.remote, f"{env}/{APP}/release.json")
        if release["eventId"] != event_id:
            breaches.append(f"{env}/{APP} ends on {release['eventId']}, not {event_id} (I3)")

    fsck = gitops.fsck(install.remote)
    if fsck.returncode != 0:
        breaches.append(f"git fsck: {fsck.stdout}{fsck.stderr}")

    values = install.metrics()
    outcome.push_rejections = int(values.get(("gimletd_gitops_push_rejections_total", ()), 0))
    outcome.write_retries = int(values.get(("gimletd_gitops_write_retries_total", ()), 0))
    return outcome
