"""End-to-end latency and throughput of GimletD, next to the deploy step CI pipelines run today.

    .venv/bin/python bench/e2e.py [--artifacts N] [--envs E] [--workers W]

One invocation measures two runs on the same machine, with the same releases:

1. **gimletd**: a private redis-server, the API under gunicorn, W Celery workers
   (`--concurrency 1` each), SQLite, a bare GitOps remote on disk and onechart served
   from a local Helm repository. N artifacts are posted from a few client threads; the
   latency of each is from its `201` to its commit appearing on the remote's `main`.
2. **baseline**: what CI's deploy step does per release, four jobs at a time: `git clone`,
   replace `<env>/<app>/`, commit, `git pull --rebase`, `git push`, retrying pull and push
   on rejection. The files are the ones GimletD writes, rendered up front (not charged);
   jobs arrive on the same schedule as the gimletd run's `201`s.

This is a measurement, not a test: nothing asserts on timings. bench/README.md explains
the figures; results also go to bench/results/e2e-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pygit2
from pydantic import SecretStr
from reporting import (  # beside this file
    ROOT,
    ratio,
    save_result,
    source_version,
    start_py_spy,
    stop_py_spy,
)
from reporting import print_profile as print_py_spy

from gimletd.charts import CachingChartLoader
from gimletd.cli import gunicorn_command
from gimletd.gitops import layout
from gimletd.gitops.repository import GitopsRepository, init_bare
from gimletd.models import POLICY_TRIGGER, Artifact
from gimletd.release import apply_queue, plan_artifact
from gimletd.rendering import RenderEngine, render
from gimletd.settings import Settings
from gimletd.store import Store

SEED_ARTIFACT = ROOT.parent / "shared" / "fixtures" / "seed-artifact-restored.json"
ONECHART_DIR = ROOT / "tests" / "charts" / "onechart"

ADMIN_TOKEN = "bench-admin-token"
APP = "frontend"
BRANCH = "main"
READY_TIMEOUT = 60.0
#: How often the remote's branch is read; the latency figures are this precise.
POLL_INTERVAL = 0.02
#: The baseline's parallelism: four CI runners deploying at once.
BASELINE_JOBS = 4
#: Pull-and-push rounds a baseline job tries before it gives up, like a CI retry loop.
BASELINE_PUSH_ATTEMPTS = 20

#: The deploy step of a CI pipeline, per release. $STAGE holds the files of `<env>/`.
BASELINE_SCRIPT = r"""
set -euo pipefail
git clone -q --branch "$BRANCH" "$REMOTE" "$WORK"
cd "$WORK"
rm -rf "${ENV_NAME:?}/${APP:?}"
mkdir -p "$ENV_NAME"
cp -R "$STAGE/$ENV_NAME/." "$ENV_NAME/"
git add -A
git commit -q -F "$STAGE/message.txt"
for attempt in $(seq 1 "$ATTEMPTS"); do
  if ! git pull -q --rebase -X theirs origin "$BRANCH"; then
    git rebase --abort 2>/dev/null || true
    continue
  fi
  if git push -q origin "HEAD:$BRANCH" 2>/dev/null; then
    echo "attempts=$attempt"
    exit 0
  fi
done
echo "attempts=$ATTEMPTS"
exit 1
"""


# -- options and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    artifacts: int
    envs: int
    workers: int
    pool: str
    clients: int
    timeout: float
    keep: bool
    database_url: str | None
    json_path: Path | None = None
    profile: bool = True
    py_spy: bool = False


@dataclass
class RunStats:
    """One run's figures. Latencies are seconds; throughput is commits per second."""

    name: str
    artifacts: int
    committed: int
    outcomes: dict[str, int]
    p50: float
    p99: float
    mean: float
    max: float
    window: float
    throughput: float
    latencies: list[float] = field(default_factory=list)  # sorted, for the report's plots
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default), NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def window_of(starts: dict[str, float], ends: dict[str, float]) -> float:
    """Seconds from the first start to the last end; NaN when nothing ended."""
    return max(ends.values()) - min(starts.values()) if ends and starts else float("nan")


def run_stats(
    name: str,
    artifacts: int,
    starts: dict[str, float],
    ends: dict[str, float],
    outcomes: Counter[str],
    extra: dict[str, Any] | None = None,
) -> RunStats:
    """Latency per release that reached the remote, and throughput over the whole window.

    The window runs from the first release's start to the last commit seen, so
    the throughput counts the time the system needed to drain what it accepted.
    """
    latencies = [ends[key] - starts[key] for key in ends if key in starts]
    window = window_of(starts, ends)
    return RunStats(
        name=name,
        artifacts=artifacts,
        committed=len(latencies),
        outcomes=dict(outcomes),
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        mean=sum(latencies) / len(latencies) if latencies else float("nan"),
        max=max(latencies, default=float("nan")),
        window=window,
        throughput=len(latencies) / window if window > 0 else float("nan"),
        latencies=sorted(latencies),
        extra=extra or {},
    )


# -- processes and temporary state ------------------------------------------------------------


class Child:
    """A server process in its own process group, logging to a file, stopped with its children.

    Its own session keeps Ctrl-C away from it, so the benchmark stops the
    servers itself, in order, and a Celery worker's pool processes go with it.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, offset: int = 0) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not {what} in {READY_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.05)

    def wait_for_text(self, text: str) -> None:
        self.wait_until(lambda: text in self.log(), f"showing {text!r}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after a grace period; never raises."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait()
        self._signal_group(signal.SIGKILL)  # stragglers of the group (pool processes)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group.

    Read from /proc, so it works on Linux only (0 elsewhere). A Celery worker's
    pool process and gunicorn's workers are in their parent's group, so this is
    a whole server's cost; what the group leader reaped is in its cutime/cstime.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp; fields[0] is the state (field 3)
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `kill` cleans up as Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout


def git_environment(home: Path) -> dict[str, str]:
    """git with no user or system configuration, and a fixed identity, for repeatable runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="CI",
        GIT_AUTHOR_EMAIL="ci@example.invalid",
        GIT_COMMITTER_NAME="CI",
        GIT_COMMITTER_EMAIL="ci@example.invalid",
    )
    return env


def seeded_remote(path: Path, home: Path) -> Path:
    """A bare GitOps remote with one commit on `main`, so both runs start from the same state."""
    init_bare(path, BRANCH)
    seed = path.parent / f"{path.name}-seed"
    env = git_environment(home)
    git("init", "-q", "-b", BRANCH, str(seed), env=env)
    (seed / "README.md").write_text("GitOps repository of the benchmark\n")
    git("add", "-A", cwd=seed, env=env)
    git("commit", "-q", "-m", "Initial commit", cwd=seed, env=env)
    git("push", "-q", str(path), f"HEAD:{BRANCH}", cwd=seed, env=env)
    shutil.rmtree(seed)
    return path


# -- the chart repository ---------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def chart_repository(directory: Path) -> Iterator[str]:
    """onechart packaged and indexed in `directory`, served over HTTP on 127.0.0.1; its URL.

    The same steps as tests/support/charts.py, with http.server instead of
    pytest-httpserver, so the benchmark needs none of the test extras.
    """
    import helm_python as helm

    directory.mkdir(parents=True)
    helm.package(ONECHART_DIR, destination=directory)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    helm.repo_index_generate(directory, base_url=url)
    thread = threading.Thread(target=server.serve_forever, name="chart-repo", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


# -- artifacts --------------------------------------------------------------------------------


def artifacts(count: int, envs: int, chart_url: str) -> list[dict[str, Any]]:
    """Artifact i: a push to main with its own sha, released by policy to `env-{i % envs}`.

    Derived from the shared seed artifact, read now so the benchmark follows it.
    """
    seed = json.loads(SEED_ARTIFACT.read_text())
    template = seed["environments"][0]
    made = []
    for i in range(count):
        artifact = copy.deepcopy(seed)
        sha = f"{i + 1:040x}"
        artifact["version"].update(branch=BRANCH, event="push", sha=sha)
        artifact["context"].update(CIRCLE_SHA1=sha, CIRCLE_BRANCH=BRANCH, BRANCH=BRANCH)
        environment = copy.deepcopy(template)
        environment.update(app=APP, env=f"env-{i % envs}", namespace=f"env-{i % envs}")
        environment["chart"]["repository"] = chart_url
        artifact["environments"] = [environment]
        made.append(artifact)
    return made


# -- the gimletd run --------------------------------------------------------------------------


def start_redis(work: Path, stack: contextlib.ExitStack) -> tuple[str, Child]:
    """A private redis-server on a free port with persistence off; its URL and process."""
    port = free_port()
    directory = work / "redis"
    directory.mkdir()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
    redis = Child("redis", command, dict(os.environ), work / "logs")
    stack.callback(redis.stop)
    redis.wait_for_text("Ready to accept connections")
    return f"redis://127.0.0.1:{port}/0", redis


def prepare_database(settings: Settings) -> None:
    """Migrate and create the admin once, before several processes would race to do it."""
    store = Store(settings.resolved_database_url)
    try:
        store.migrate()
        store.ensure_admin(ADMIN_TOKEN)
    finally:
        store.close()


def start_gimletd(
    settings: Settings, options: Options, work: Path, stack: contextlib.ExitStack
) -> tuple[str, Child, list[Child]]:
    """gunicorn with two API processes and the Celery workers; the API URL and the processes.

    All are started before any is waited for, so their start-ups overlap.
    """
    env = settings.environment(inherit=os.environ)
    logs = work / "logs"
    port = free_port()
    command = gunicorn_command("127.0.0.1", port, workers=2)
    api = Child("api", command, env, logs)
    stack.callback(api.stop)
    celery = []
    for n in range(options.workers):
        command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel",
                   "INFO", "--pool", options.pool, "--concurrency", "1", "-n", f"w{n}@%h",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
        worker = Child(f"worker-{n}", command, env, logs)
        stack.callback(worker.stop)
        celery.append(worker)
    url = f"http://127.0.0.1:{port}"
    api.wait_until(lambda: _answers(f"{url}/health"), "answering")
    for worker in celery:
        worker.wait_for_text(" ready.")
    return url, api, celery


def process_tree_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has waited for (the baseline's jobs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def cpu_snapshot(servers: dict[str, list[Child]]) -> dict[str, float]:
    """CPU seconds so far of each kind of server, and of this benchmark process itself."""
    snapshot = {
        name: sum(group_cpu_seconds(child.popen.pid) for child in children)
        for name, children in servers.items()
    }
    own = os.times()
    snapshot["benchmark (clients, watcher)"] = own.user + own.system
    return snapshot


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class RemoteWatcher(threading.Thread):
    """Notes when each release's commit first appears on the remote's branch.

    Reads the branch's ref file every POLL_INTERVAL and, only when it moved,
    walks the new commits with pygit2 (no process to spawn, so watching costs
    the measured system almost nothing), mapping each commit's `Gimlet-Event`
    trailer to the time the move was seen: at most one interval late, and
    independent of what the API says about the event.
    """

    def __init__(self, remote: Path) -> None:
        super().__init__(name="remote-watcher", daemon=True)
        self.remote = remote
        self.first_seen: dict[str, float] = {}
        self.commits: dict[str, str] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._head = self._read_head()

    def run(self) -> None:
        while not self._halt.wait(POLL_INTERVAL):
            self.poll()

    def poll(self) -> None:
        head = self._read_head()
        if head is None or head == self._head:
            return
        seen_at = time.monotonic()
        new = self._new_commits(self._head, head)
        with self._lock:
            for sha, event_id in new:
                self.first_seen.setdefault(event_id, seen_at)
                self.commits.setdefault(event_id, sha)
        self._head = head

    def seen(self) -> dict[str, float]:
        with self._lock:
            return dict(self.first_seen)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.poll()  # whatever landed since the last tick

    def _read_head(self) -> str | None:
        loose = self.remote / "refs" / "heads" / BRANCH
        with contextlib.suppress(FileNotFoundError):
            sha = loose.read_text().strip()
            if sha:
                return sha
        with contextlib.suppress(FileNotFoundError):
            for line in (self.remote / "packed-refs").read_text().splitlines():
                if line.endswith(f" refs/heads/{BRANCH}"):
                    return line.split()[0]
        return None

    def _new_commits(self, old: str | None, new: str) -> list[tuple[str, str]]:
        """(sha, event id) of the commits in `old..new` that carry a `Gimlet-Event` trailer."""

        repo = pygit2.Repository(str(self.remote))
        try:
            walker = repo.walk(pygit2.Oid(hex=new))
            if old is not None:
                walker.hide(pygit2.Oid(hex=old))
            found = []
            for commit in walker:
                event_id = event_trailer(commit.message)
                if event_id:
                    found.append((str(commit.id), event_id))
            return found
        finally:
            repo.free()


def event_trailer(message: str) -> str | None:
    """The `Gimlet-Event` trailer of a commit message, read as git would (last paragraph)."""
    for line in message.strip().split("\n\n")[-1].splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Gimlet-Event" and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class Posted:
    index: int
    event_id: str
    accepted_at: float


def post_artifacts(api_url: str, made: list[dict[str, Any]], clients: int) -> list[Posted]:
    """Post every artifact from `clients` threads as fast as the API answers; 201 times."""
    local = threading.local()

    def post(item: tuple[int, dict[str, Any]]) -> Posted:
        index, artifact = item
        client = getattr(local, "client", None)
        if client is None:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            client = local.client = httpx.Client(base_url=api_url, headers=headers, timeout=30)
        response = client.post("/api/artifact", json=artifact)
        accepted_at = time.monotonic()
        if response.status_code != 201:
            raise RuntimeError(f"artifact {index}: {response.status_code} {response.text}")
        return Posted(index, response.json()["eventId"], accepted_at)

    with ThreadPoolExecutor(clients, thread_name_prefix="client") as pool:
        return list(pool.map(post, enumerate(made)))


def event_status(client: httpx.Client, event_id: str) -> dict[str, Any]:
    response = client.get("/api/event", params={"id": event_id})
    response.raise_for_status()
    event: dict[str, Any] = response.json()
    return event


def wait_for_events(
    client: httpx.Client, posted: list[Posted], watcher: RemoteWatcher, timeout: float
) -> None:
    """Wait until every event is on the remote or ended without a commit (or `timeout`).

    The API is asked only about the oldest few events not yet on the remote (or
    all of them once the remote stops moving), so polling stays light next to
    the workers on a small machine.
    """
    deadline = time.monotonic() + timeout
    ended: dict[str, dict[str, Any]] = {}
    last_count, last_change = -1, time.monotonic()
    while True:
        seen = watcher.seen()
        pending = [p.event_id for p in posted if p.event_id not in seen and p.event_id not in ended]
        if not pending:
            break
        now = time.monotonic()
        if len(seen) != last_count:
            last_count, last_change = len(seen), now
        if now > deadline:
            print(f"  timeout: {len(pending)} events neither committed nor ended", flush=True)
            break
        idle = now - last_change > 2.0
        for event_id in pending if idle else pending[:5]:
            event = event_status(client, event_id)
            if event["status"] not in ("new", "processing") and not _committed(event):
                ended[event_id] = event
        time.sleep(1.0)


def final_events(client: httpx.Client, posted: list[Posted]) -> dict[str, dict[str, Any]]:
    """Every event's record as the API tells it, once the run is over."""
    return {p.event_id: event_status(client, p.event_id) for p in posted}


def _committed(event: dict[str, Any]) -> bool:
    return any(r.get("status") == "success" for r in event.get("results", []))


def warm_up(
    client: httpx.Client, chart_url: str, workers: int, watcher: RemoteWatcher, timeout: float
) -> None:
    """One release per worker to environments of its own, so the timed run starts warm.

    The first release in a process pays for the chart download, the Helm engine's
    start and the GitOps clone; a long-running GimletD has paid that long ago.
    """
    made = artifacts(workers, workers, chart_url)
    for n, artifact in enumerate(made):
        artifact["environments"][0].update(env=f"warmup-{n}", namespace=f"warmup-{n}")
        artifact["version"]["sha"] = f"{0xFFFF0 + n:040x}"
    posted = [
        Posted(n, client.post("/api/artifact", json=a).raise_for_status().json()["eventId"], 0.0)
        for n, a in enumerate(made)
    ]
    wait_for_events(client, posted, watcher, timeout)
    events = final_events(client, posted)
    missing = [e for e in events if e not in watcher.seen()]
    if missing:
        raise RuntimeError(
            "warm-up releases did not reach the remote, so GimletD cannot be measured: "
            + "; ".join(
                f"{events[e]['status']}: {events[e].get('statusDesc', '')}" for e in missing
            )
        )


def task_profile(workers: list[Child], offsets: list[int]) -> dict[str, Any]:
    """Per Celery task name: runs, total and mean seconds, from the workers' own logs.

    Only the log written after `offsets` counts, so warm-up is left out.
    """
    durations: dict[str, list[float]] = defaultdict(list)
    retries: Counter[str] = Counter()
    done = re.compile(r"Task (\S+)\[[^\]]+\] succeeded in ([0-9.]+)s")
    retried = re.compile(r"Task (\S+)\[[^\]]+\] retry")
    for worker, offset in zip(workers, offsets, strict=True):
        for line in worker.log(offset).splitlines():
            message = _log_message(line)
            if match := done.search(message):
                durations[match[1]].append(float(match[2]))
            elif match := retried.search(message):
                retries[match[1]] += 1
    return {
        name: {
            "runs": len(values),
            "total_s": round(sum(values), 3),
            "mean_ms": round(1000 * sum(values) / len(values), 1),
            "p50_ms": round(1000 * percentile(values, 50), 1),
            "retries": retries[name],
        }
        for name, values in sorted(durations.items())
    }


#: Worker log lines worth counting, by what they say (best effort: the wording may change).
LOG_EVENTS = {
    "push_rejected": re.compile(r"rejected, re-applying"),
    "write_deferred": re.compile(r"WriteDeferred|failed, retrying in"),
}


def log_events(workers: list[Child], offsets: list[int]) -> dict[str, int]:
    """How often the workers logged a rejected push or a deferred write after `offsets`.

    A rejected push is a whole write redone on the new head; a deferred write
    waits seconds before its next try, which shows in the latency's tail.
    """
    counts = dict.fromkeys(LOG_EVENTS, 0)
    for worker, offset in zip(workers, offsets, strict=True):
        for line in worker.log(offset).splitlines():
            message = _log_message(line)
            for name, pattern in LOG_EVENTS.items():
                if pattern.search(message) and "Task " not in message:
                    counts[name] += 1
    return counts


def _log_message(line: str) -> str:
    with contextlib.suppress(ValueError, TypeError):
        return str(json.loads(line)["message"])
    return line


def run_gimletd(
    options: Options, work: Path, chart_url: str, made: list[dict[str, Any]]
) -> tuple[RunStats, list[float]]:
    """Start GimletD, release every artifact through it, and measure; (stats, 201 times)."""
    with contextlib.ExitStack() as stack:
        remote = seeded_remote(work / "gitops.git", work / "home")
        redis_url, redis = start_redis(work, stack)
        settings = Settings(
            data_dir=work / "data",
            gitops_repo=str(remote),
            redis_url=redis_url,
            admin_token=SecretStr(ADMIN_TOKEN),
            renderer=RenderEngine.HELM,
            database_url=SecretStr(options.database_url) if options.database_url else None,
        )
        prepare_database(settings)
        api_url, api, workers = start_gimletd(settings, options, work, stack)
        watcher = RemoteWatcher(remote)
        watcher.start()
        stack.callback(watcher.stop)
        client = stack.enter_context(
            httpx.Client(
                base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
            )
        )
        print(f"  started: API {api_url}, {options.workers} workers; warming up", flush=True)
        warm_up(client, chart_url, options.workers, watcher, min(options.timeout, 60.0))
        offsets = [w.log_size() for w in workers]

        print(f"  posting {len(made)} artifacts from {options.clients} clients", flush=True)
        servers = {"api (gunicorn)": [api], "redis": [redis], "celery workers": workers}
        samplers = [
            (start_py_spy(worker.popen.pid, work / f"py-spy-{n}.txt"), work / f"py-spy-{n}.txt")
            for n, worker in enumerate(workers if options.py_spy else [])
        ]
        cpu_before = cpu_snapshot(servers)
        posted = post_artifacts(api_url, made, options.clients)
        wait_for_events(client, posted, watcher, options.timeout)
        cpu = {k: v - cpu_before[k] for k, v in cpu_snapshot(servers).items()}
        py_spy = stop_py_spy(samplers, within="trace_task") if samplers else None
        watcher.stop()
        events = final_events(client, posted)
        seen, commits = watcher.seen(), dict(watcher.commits)

        outcomes: Counter[str] = Counter()
        hash_mismatch = 0
        for p in posted:
            event = events[p.event_id]
            results = event.get("results") or [{"status": event["status"]}]
            outcomes.update(str(r.get("status")) for r in results)
            for r in results:
                if r.get("status") == "success" and commits.get(p.event_id) != r.get("hash"):
                    hash_mismatch += 1
        starts = {p.event_id: p.accepted_at for p in posted}
        ends = {e: t for e, t in seen.items() if e in starts}
        extra = {
            "post_window_s": max(starts.values()) - min(starts.values()),
            "api_commit_not_on_remote": hash_mismatch,
            "tasks": task_profile(workers, offsets),
            "log_events": log_events(workers, offsets),
            "cpu_seconds": cpu,
            "worker_seconds_available": options.workers * window_of(starts, ends),
            "py_spy": py_spy,
        }
        stats = run_stats("gimletd", len(made), starts, ends, outcomes, extra)
        accepted = sorted(p.accepted_at for p in posted)
        return stats, [t - accepted[0] for t in accepted]


# -- the baseline run -------------------------------------------------------------------------


def stage_releases(
    made: list[dict[str, Any]], stage_dir: Path, remote: Path, work: Path
) -> tuple[list[tuple[Path, str]], float]:
    """Render each release with GimletD's own code into `stage_dir/<i>/`; (jobs, seconds/render).

    The baseline then writes byte-for-byte what GimletD writes. Rendering is
    done here, outside the timed run, so the baseline is not charged for it.
    """
    loader = CachingChartLoader(work / "charts", allow_local=False)
    jobs = []
    render_seconds = 0.0
    for i, data in enumerate(made):
        artifact = Artifact.model_validate({**data, "id": f"frontend-baseline-{i}"})
        started = time.perf_counter()
        plan = plan_artifact(
            artifact,
            event_id=f"baseline-{i}",
            triggered_by=POLICY_TRIGGER,
            gitops_repo_for=lambda env: str(remote),
            render=lambda m: render(m, engine=RenderEngine.HELM, charts=loader),
            now=time.time(),
        )
        render_seconds += time.perf_counter() - started
        if plan.failures or len(plan.writes) != 1:
            raise RuntimeError(f"baseline release {i} did not render: {plan.failures}")
        write = plan.writes[0]
        trailers = layout.CommitTrailers(
            f"baseline-{i}", artifact.id, POLICY_TRIGGER, write.env, write.app
        )
        directory = stage_dir / str(i)
        app_dir = directory / write.env / write.app
        app_dir.mkdir(parents=True)
        for name, content in layout.app_files(write.files, write.release).items():
            (app_dir / name).write_bytes(content)
        (directory / write.env / layout.RELEASE_FILE).write_bytes(
            layout.release_json(write.release)
        )
        message = layout.deploy_message(write.env, write.app, POLICY_TRIGGER, trailers)
        (directory / "message.txt").write_text(message + "\n")
        jobs.append((directory, write.env))
    return jobs, render_seconds / max(len(made), 1)


@dataclass(frozen=True)
class JobResult:
    index: int
    ok: bool
    attempts: int
    error: str


def deploy_job(
    index: int, stage: Path, env_name: str, remote: Path, scratch: Path, git_env: dict[str, str]
) -> JobResult:
    """One CI deploy step in bash: clone, write, commit, pull --rebase and push until it lands."""
    work = scratch / f"job-{index}"
    env = {
        **git_env,
        "REMOTE": str(remote),
        "WORK": str(work),
        "STAGE": str(stage),
        "ENV_NAME": env_name,
        "APP": APP,
        "BRANCH": BRANCH,
        "ATTEMPTS": str(BASELINE_PUSH_ATTEMPTS),
    }
    try:
        done = subprocess.run(
            ["bash", "-c", BASELINE_SCRIPT], env=env, capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    match = re.search(r"attempts=(\d+)", done.stdout)
    attempts = int(match[1]) if match else 0
    return JobResult(index, done.returncode == 0, attempts, done.stderr[-500:])


def run_baseline(
    options: Options, work: Path, made: list[dict[str, Any]], schedule: list[float]
) -> RunStats:
    """The same releases through CI-style deploy jobs, BASELINE_JOBS at a time.

    Job i is submitted at the offset at which the gimletd run got its i-th 201,
    so both runs are offered the same load. A job's latency runs from its
    submission (it may wait for a free runner) to its commit appearing on the
    remote, seen by the same watcher as in the gimletd run (the commit message
    carries a `Gimlet-Event: baseline-<i>` trailer).
    """
    remote = seeded_remote(work / "baseline.git", work / "home")
    print(f"  rendering {len(made)} releases up front (not charged to the baseline)", flush=True)
    jobs, render_each = stage_releases(made, work / "stage", remote, work)
    git_env = git_environment(work / "home")
    scratch = work / "jobs"
    scratch.mkdir()
    print(f"  running {len(jobs)} deploy jobs, {BASELINE_JOBS} at a time", flush=True)
    submitted: dict[str, float] = {}
    futures: list[Future[JobResult]] = []
    watcher = RemoteWatcher(remote)
    watcher.start()
    pool = ThreadPoolExecutor(BASELINE_JOBS, thread_name_prefix="ci")
    cpu_before = process_tree_cpu_seconds()
    try:
        start = time.monotonic()
        for i, ((stage, env_name), offset) in enumerate(zip(jobs, schedule, strict=True)):
            time.sleep(max(0.0, start + offset - time.monotonic()))
            submitted[f"baseline-{i}"] = time.monotonic()
            futures.append(pool.submit(deploy_job, i, stage, env_name, remote, scratch, git_env))
        results = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        watcher.stop()
    ends = {key: t for key, t in watcher.seen().items() if key in submitted}
    cpu = process_tree_cpu_seconds() - cpu_before
    outcomes = Counter("success" if r.ok else "failure" for r in results)
    commits = int(git("--git-dir", str(remote), "rev-list", "--count", BRANCH)) - 1
    attempts = [r.attempts for r in results if r.ok]
    extra = {
        "render_seconds_per_release_not_charged": render_each,
        "commits_on_remote": commits,
        "push_attempts_mean": sum(attempts) / len(attempts) if attempts else float("nan"),
        "push_attempts_max": max(attempts, default=0),
        "errors": [r.error for r in results if not r.ok][:3],
        "cpu_seconds": {"jobs (bash, git) and benchmark": cpu},
        "job_ok_but_not_seen": sum(
            1 for r in results if r.ok and f"baseline-{r.index}" not in ends
        ),
    }
    return run_stats("baseline", len(made), submitted, ends, outcomes, extra)


# -- where the time goes ---------------------------------------------------------------------

#: Methods timed by the profile: the store's transactions and the GitOps repository's steps.
PROFILED_STORE = (
    "create_artifact",
    "claim_event",
    "artifact",
    "plan_event",
    "unfinished_writes",
    "count_write_attempt",
    "last_applied_seq",
    "start_writes",
    "finish_writes",
    "finish_event_if_done",
    "event",
    "env_lock",
    "hold",
    "artifact_accepted_at",
)
#: Private names too, as they are where the time goes; the names of several versions of
#: `gimletd.gitops.repository` are listed, and whichever exist are timed.
PUSH_METHODS = ("_push_local", "_move_branch", "_push")
PROFILED_REPO = ("fetch", "find_commit", "list_dir", "commit", "_build_tree", *PUSH_METHODS)
PROFILE_RELEASES = 60


@contextlib.contextmanager
def timed_methods(
    owner: type, names: Sequence[str], totals: dict[str, list[float]]
) -> Iterator[None]:
    """Wrap `owner`'s methods in this process only, adding each call's seconds to `totals`."""
    originals = {name: getattr(owner, name) for name in names if hasattr(owner, name)}

    def timed(key: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[key].append(time.perf_counter() - started)

        return wrapper

    for name, original in originals.items():
        setattr(owner, name, timed(f"{owner.__name__}.{name}", original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(owner, name, original)


def profile_release_path(work: Path, made: list[dict[str, Any]]) -> dict[str, Any]:
    """One artifact's path through GimletD in this process, without Celery, Redis or HTTP.

    The same store and repository calls the API and the workers make (store the
    artifact, claim, plan with rendering, apply the env's queue), one release at
    a time on a fresh SQLite and remote, each call timed. What this leaves out
    of the workers' task times is Celery, Redis and CPU contention.
    """
    base = work / "profile"
    base.mkdir()
    remote = seeded_remote(base / "gitops.git", work / "home")
    store = Store(f"sqlite:///{base / 'gimletd.sqlite'}")
    store.migrate()
    loader = CachingChartLoader(work / "charts", allow_local=False)
    repo = GitopsRepository(str(remote), cache_dir=base / "clones", clone_name="profile")
    totals: dict[str, list[float]] = defaultdict(list)
    releases = made[:PROFILE_RELEASES]
    started = time.perf_counter()
    with (
        timed_methods(Store, PROFILED_STORE, totals),
        timed_methods(GitopsRepository, PROFILED_REPO, totals),
    ):
        for data in releases:
            _, event = store.create_artifact(Artifact.model_validate(data), triggered_by="admin")
            claim = store.claim_event(event.id)
            assert claim is not None
            artifact = store.artifact(claim.artifact_id)
            t = time.perf_counter()
            plan = plan_artifact(
                artifact,
                event_id=event.id,
                triggered_by=POLICY_TRIGGER,
                gitops_repo_for=lambda env: repo.url,
                render=lambda m: render(m, engine=RenderEngine.HELM, charts=loader),
                now=time.time(),
            )
            totals["plan_artifact (render)"].append(time.perf_counter() - t)
            store.plan_event(event.id, writes=plan.writes, failures=[])
            t = time.perf_counter()
            apply_queue(store, repo, plan.writes[0].env, push_attempts=5, max_attempts=10)
            totals["apply_queue (one write)"].append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    store.close()
    count = len(releases)
    per_release = {key: 1000 * sum(values) / count for key, values in totals.items()}
    return {
        "releases": count,
        "ms_per_release": 1000 * elapsed / count,
        "stages_ms": profile_stages(per_release, 1000 * elapsed / count),
        "calls_ms": dict(sorted(per_release.items(), key=lambda kv: -kv[1])),
    }


#: The profile's top-level calls by stage; nested calls (`Store.event` inside
#: `create_artifact`, `finish_event_if_done` inside `finish_writes`) are inside their caller.
PROFILE_STAGES = (
    ("api: store artifact and event (SQLite)", ("Store.create_artifact",)),
    ("process: claim and load the event (SQLite)", ("Store.claim_event", "Store.artifact")),
    ("process: match policies and render (Helm)", ("plan_artifact (render)",)),
    ("process: record the planned write (SQLite)", ("Store.plan_event",)),
    (
        "drain: queue bookkeeping (SQLite, 2 reads, 2 txns)",
        (
            "Store.unfinished_writes",
            "Store.count_write_attempt",
            "Store.last_applied_seq",
            "Store.start_writes",
            "Store.finish_writes",
        ),
    ),
    (
        "drain: lock, holds, acceptance times (SQLite)",
        ("Store.env_lock", "Store.hold", "Store.artifact_accepted_at"),
    ),
    ("drain: fetch the remote head (pygit2)", ("GitopsRepository.fetch",)),
    (
        "drain: look for its own commit, read <env>/<app>/",
        ("GitopsRepository.find_commit", "GitopsRepository.list_dir"),
    ),
    ("drain: blobs and trees (pygit2)", ("GitopsRepository._build_tree",)),
    (
        "drain: push, or move the branch (compare-and-swap)",
        tuple(f"GitopsRepository.{name}" for name in PUSH_METHODS),
    ),
)


def profile_stages(per_release: dict[str, float], total: float) -> dict[str, float]:
    """Milliseconds per release by stage, plus what no timed call covers (Python glue)."""
    stages = {
        label: sum(per_release.get(key, 0.0) for key in keys) for label, keys in PROFILE_STAGES
    }
    commit_object = per_release.get("GitopsRepository.commit", 0.0) - per_release.get(
        "GitopsRepository._build_tree", 0.0
    )
    stages["drain: commit object (pygit2)"] = commit_object
    stages["everything else (validation, logging, glue)"] = total - sum(stages.values())
    return stages


def safe_profile(work: Path, made: list[dict[str, Any]]) -> dict[str, Any]:
    """The profile, or why it could not run: it uses internals that may change under it."""
    try:
        return profile_release_path(work, made)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# -- reporting --------------------------------------------------------------------------------


def report(
    options: Options,
    gimletd: RunStats,
    baseline: RunStats,
    profile: dict[str, Any],
    load: list[float],
) -> dict[str, Any]:
    """Print the table and return everything as one JSON-ready dict."""
    ratios = {
        "throughput": ratio(gimletd.throughput, baseline.throughput),
        "p50_latency": ratio(gimletd.p50, baseline.p50),
        "p99_latency": ratio(gimletd.p99, baseline.p99),
    }
    print()
    print(
        f"{'run':<10} {'committed':>11} {'p50 s':>8} {'p99 s':>8} {'mean s':>8} "
        f"{'window s':>9} {'commits/s':>10}"
    )
    for s in (gimletd, baseline):
        print(
            f"{s.name:<10} {f'{s.committed}/{s.artifacts}':>11} {s.p50:>8.3f} {s.p99:>8.3f} "
            f"{s.mean:>8.3f} {s.window:>9.2f} {s.throughput:>10.2f}"
        )
    print(
        f"{'gimletd/baseline':<21} throughput {ratios['throughput']:.2f}x (goal >= 20x), "
        f"p50 latency {ratios['p50_latency']:.2f}x, p99 latency {ratios['p99_latency']:.2f}x "
        "(lower is better)"
    )
    print(f"outcomes: gimletd {gimletd.outcomes}, baseline {baseline.outcomes}")
    if gimletd.extra["api_commit_not_on_remote"] or baseline.extra["errors"]:
        print(
            f"  check: {gimletd.extra['api_commit_not_on_remote']} gimletd commits reported by "
            f"the API were not seen on the remote; baseline errors: {baseline.extra['errors']}"
        )
    print(
        f"source: {source_version()}; machine: {os.cpu_count()} CPUs, 1-minute load average "
        f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after (other work skews both runs)"
    )
    render_ms = 1000 * baseline.extra["render_seconds_per_release_not_charged"]
    attempts = baseline.extra["push_attempts_mean"], baseline.extra["push_attempts_max"]
    print(
        f"baseline: rendering {render_ms:.1f} ms/release, not charged; pull+push rounds "
        f"per job mean {attempts[0]:.2f}, max {attempts[1]}"
    )
    print("gimletd worker time per task (from the workers' logs, warm-up excluded):")
    for name, t in gimletd.extra["tasks"].items():
        print(
            f"  {name:<28} runs {t['runs']:>4}  mean {t['mean_ms']:>7.1f} ms  "
            f"p50 {t['p50_ms']:>7.1f} ms  total {t['total_s']:>7.2f} s  "
            f"retries {t['retries']}"
        )
    busy = sum(t["total_s"] for t in gimletd.extra["tasks"].values())
    print(
        f"  busy {busy:.2f} s of {gimletd.extra['worker_seconds_available']:.2f} worker-seconds; "
        f"posting took {gimletd.extra['post_window_s']:.2f} s"
    )
    events = gimletd.extra["log_events"]
    print(
        f"  pushes rejected and redone on the new head: {events['push_rejected']}; "
        f"writes deferred after repeated rejections: {events['write_deferred']}"
    )
    if gimletd.committed:
        per_release = 1000 * busy / gimletd.committed
        print(
            f"  {per_release:.1f} ms of worker time per committed release: at most "
            f"{options.workers * 1000 / per_release:.0f} releases/s with {options.workers} workers"
        )
    print_cpu(gimletd)
    print_cpu(baseline)
    if gimletd.extra["py_spy"] is not None:
        print_py_spy(gimletd.extra["py_spy"], "a Celery task of the workers")
    print_profile(profile)
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": asdict(options),
        "source": source_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "git": git("--version").strip(),
            "load_average_1m": {"before": load[0], "after": os.getloadavg()[0]},
        },
        "runs": {"gimletd": asdict(gimletd), "baseline": asdict(baseline)},
        "ratios": ratios,
        "profile": profile,
    }


def print_cpu(run: RunStats) -> None:
    """CPU per committed release by process kind, against what the machine's cores offer.

    Both runs are CPU-bound on a small machine, so this explains the throughput
    ratio: it is close to the ratio of CPU spent per release.
    """
    cpu: dict[str, float] = run.extra.get("cpu_seconds", {})
    if not run.committed or not cpu:
        return
    cores = os.cpu_count() or 1
    total = sum(cpu.values())
    print(f"{run.name} CPU per committed release (user + system):")
    for name, seconds in cpu.items():
        print(f"  {name:<34} {1000 * seconds / run.committed:>7.1f} ms")
    print(
        f"  {'total':<34} {1000 * total / run.committed:>7.1f} ms; {total:.1f} of the "
        f"{cores * run.window:.1f} CPU-s that {cores} cores offered in the window"
    )


def print_profile(profile: dict[str, Any]) -> None:
    if not profile:
        return
    if "error" in profile:
        print(f"profile unavailable: {profile['error']}")
        return
    releases, total = profile["releases"], profile["ms_per_release"]
    print(f"one release at a time in one process, no Celery/Redis/HTTP ({releases} releases):")
    for label, ms in profile["stages_ms"].items():
        print(f"  {label:<50} {ms:>6.2f} ms")
    print(f"  {'total':<50} {total:>6.2f} ms per release")


# -- main -------------------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=200, help="releases per run (200)")
    parser.add_argument("--envs", type=int, default=10, help="environments, env-{i %% E} (10)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (2)")
    parser.add_argument(
        "--pool",
        choices=("prefork", "solo"),
        default="prefork",
        help="Celery pool of each worker (prefork, as tests/support/processes.py starts them)",
    )
    parser.add_argument("--clients", type=int, default=4, help="threads posting artifacts (4)")
    parser.add_argument(
        "--timeout", type=float, default=150.0, help="seconds to wait for a run's releases (150)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the in-process profile of one release"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="an empty database for GimletD (say postgres://...); SQLite in the run's "
        "temporary directory when not given",
    )
    parser.add_argument(
        "--py-spy", action="store_true",
        help="sample the workers with py-spy while they release, and print where their tasks "
        "spend their time (needs root or ptrace_scope 0)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.artifacts, args.envs, args.workers, args.clients) < 1:
        parser.error("--artifacts, --envs, --workers and --clients must be at least 1")
    return Options(
        args.artifacts,
        args.envs,
        args.workers,
        args.pool,
        args.clients,
        args.timeout,
        args.keep,
        args.database_url,
        args.json,
        not args.no_profile,
        args.py_spy,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    load = [os.getloadavg()[0]]
    raise_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="gimletd-bench-"))
    try:
        (work / "logs").mkdir()
        (work / "home").mkdir()
        # The Helm engine reads these when it loads: keep its caches in the temporary directory.
        for variable, subdir in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            os.environ[variable] = str(work / "helm" / subdir)
        with chart_repository(work / "chart-repo") as chart_url:
            made = artifacts(options.artifacts, options.envs, chart_url)
            print(
                f"gimletd: {options.artifacts} artifacts, {options.envs} environments", flush=True
            )
            gimletd, schedule = run_gimletd(options, work, chart_url, made)
            print("baseline: the same releases as CI deploy jobs", flush=True)
            baseline = run_baseline(options, work, made, schedule)
            profile: dict[str, Any] = {}
            if options.profile:
                print("profile: one release's path through GimletD, in process", flush=True)
                profile = safe_profile(work, made)
        result = report(options, gimletd, baseline, profile, load)
        path = save_result("e2e", result, options.json_path)
        print(f"\nwrote {path}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopped every process, removing temporary files", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        if not options.keep:
            print(
                "(--keep keeps the temporary directory with every process's log)", file=sys.stderr
            )
        return 1
    finally:
        if options.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
