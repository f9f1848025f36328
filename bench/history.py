"""Release history from the release index, next to the Go original's walks of git history.

    .venv/bin/python bench/history.py [--releases N] [--small S] [--apps A] [--quick]

The Go original answered `GET /api/releases` by walking git history on every
request; GimletD reads history once into a database table (`gimletd.history`)
and answers from it. This measures both on the same repositories, in one run:

1. **Repositories.** Two bare GitOps remotes made with `git fast-import`
   (`tests.support.gitops.fast_import_releases`, in the Go original's layout):
   S releases (100) and N releases (10,000), one commit each, one second apart.
   Release i goes to env `production`, app `app-{i % A}`, round-robin over A
   apps (100). At S the releases go to min(A, S // 10) apps instead, so that
   each app has ten releases in both repositories and both answers hold ten
   entries: only the length of history differs.
2. **Initial index build**: `sync_index` over the whole history, into SQLite.
3. **gimletd**: `GET /api/releases?env=production&app=<app>&limit=10` over
   real HTTP (the Flask app of `api.create_app` under werkzeug's threaded
   server on 127.0.0.1, one httpx client with keep-alive), timed at the client,
   warm. The HTTP round trip and the token check are charged to gimletd; the
   index query alone (`Store.history`) is timed as well. Both repositories are
   served at once and asked in turns, so that a change in the machine's load
   (other work on it) falls on both sizes alike.
4. **baseline**: what the Go original's `Releases` did for the same request
   (gimlet-cli `pkg/git/nativeGit`), written with pygit2 in this process, the
   repository opened once and warm, as a server holds it:
   - walk the commits from the head, newest first, keeping those that changed
     `<env>/<app>` against their first parent (the tree entry ids of the
     directory differ, where the original diffed the two subtrees), skipping
     rollback and delete commits as it did, until ten;
   - read `<env>/<app>/release.json` of each and `json.loads` it (the original
     read `<env>/release.json` first, the same bytes in these repositories);
   - for each of the ten, the original's `HasBeenReverted`: walk the commits
     from the head again and look for the release's sha in the messages of
     those, not older than the release, that changed `<env>/<app>`. The
     original's walk (go-git's `Log` with `Since`) only skipped the older
     commits, so it read every commit down to the root; the baseline does the
     same: it reads each one's time and compares no trees for those.
   The walks are lazy, as go-git's was: `SortMode.NONE`, which on this linear
   history is newest first. libgit2's `SortMode.TIME` would read the whole
   history before the first commit (about 47 ms at 10,000 commits on the
   machine of bench/README.md), on every walk.
   The second figure, **baseline, stopping early**, is the same walk but
   `HasBeenReverted` stops at the first commit older than the release, as a
   better-written original could have; its cost follows A (how far back ten
   releases of one app go), not the length of history.
5. **One release write** at S and at N commits of history: a policy deploy of
   `app-0`, stored and queued with `Store.plan_event` (untimed), committed to
   the remote by the workers' `apply_queue` and read into the index by
   `sync_index`, timed together; in turns on the two repositories, and every
   write with new content. Its baseline, **CI's clone, commit and push**, is
   the same release written as a CI deploy step writes it: `git clone` of a
   copy of the remote (a local path, git's fastest case), the app's files and
   `release.json`, `git commit`, `git push`.

Two apps are queried: `app-0`, whose newest release is A - 1 commits below the
head, and the app of the newest commit. gimletd and both baselines must name the
same commits in the same order, or the run stops with an error. The goals are
checked on `app-0`, against the baseline that does what the original did.

This is a measurement, not a test: nothing asserts on timings; the goals are
printed as met or not. bench/README.md explains the figures; results also go to
bench/results/history-<timestamp>.json (or `--json PATH`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import gc
import json
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pygit2
from e2e import git, git_environment  # beside this file
from pydantic import SecretStr
from reporting import ROOT, ratio, save_result, source_version
from werkzeug.serving import WSGIRequestHandler, make_server

from api import create_app
from gimletd.gitops.repository import GitopsRepository, init_bare
from gimletd.history import sync_index
from gimletd.logs import configure_logging
from gimletd.models import POLICY_TRIGGER, Artifact, Release
from gimletd.release import apply_queue
from gimletd.settings import Settings
from gimletd.store import HistoryFilter, PlannedWrite, Store

# `tests` is not an installed package: it is importable only with the repository root on
# sys.path, which `python bench/history.py` does not put there (it puts `bench/`).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.support.gitops import fast_import_releases

ADMIN_TOKEN = "bench-admin-token"
BRANCH = "main"
ENV = "production"
LIMIT = 10
#: The issue's goals: the API at least this much faster than the baseline at N...
GOAL_SPEEDUP = 50.0
#: ...and at most this much slower at N than at S; the same for one release write.
GOAL_GROWTH = 1.5
#: A baseline run quicker than this is repeated --repeat times instead of --baseline-repeat.
CHEAP_RUN = 0.05
#: Untimed calls before the timed ones (connections, caches): requests and cheap baselines.
WARM_UP = 3
#: How the Go original told commits that are not releases (pkg/git/nativeGit).
NOT_RELEASES = ("This reverts commit", "[GimletD delete]")
#: Lazy, unlike SortMode.TIME (which reads all of history first); newest first on a linear
#: history, which the comparison with gimletd's answer checks.
WALK = pygit2.enums.SortMode.NONE


# -- options and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    releases: int
    small: int
    apps: int
    repeat: int
    baseline_repeat: int
    writes: int
    quick: bool
    keep: bool
    json_path: Path | None


@dataclass
class Timing:
    """Seconds of repeated runs of one operation; the figures print in milliseconds."""

    runs: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.runs) if self.runs else float("nan")

    def summary(self) -> dict[str, Any]:
        ms = sorted(1000 * run for run in self.runs)
        return {
            "runs": len(ms),
            "median_ms": self.median_ms,
            "min_ms": ms[0] if ms else None,
            "max_ms": ms[-1] if ms else None,
        }


@dataclass
class AppFigures:
    """One app's history, from gimletd and from the baselines, on one repository."""

    app: str
    entries: int
    api: Timing
    store: Timing
    baseline: Timing
    baseline_stopping: Timing

    def summary(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "entries": self.entries,
            "api": self.api.summary(),
            "store_history_in_process": self.store.summary(),
            "baseline": self.baseline.summary(),
            "baseline_stopping_early": self.baseline_stopping.summary(),
            "baseline_over_api": ratio(self.baseline.median_ms, self.api.median_ms),
            "baseline_stopping_early_over_api": ratio(
                self.baseline_stopping.median_ms, self.api.median_ms
            ),
        }


@dataclass
class SizeFigures:
    """Everything measured on one repository."""

    releases: int
    apps: int
    fast_import_s: float
    index_build_s: float
    index_entries: int
    queries: list[AppFigures] = field(default_factory=list)
    write: Timing = field(default_factory=Timing)
    write_apply: Timing = field(default_factory=Timing)
    write_index: Timing = field(default_factory=Timing)
    baseline_write: Timing = field(default_factory=Timing)

    def summary(self) -> dict[str, Any]:
        return {
            "releases": self.releases,
            "apps": self.apps,
            "fast_import_s": self.fast_import_s,
            "index_build_s": self.index_build_s,
            "index_entries": self.index_entries,
            "queries": [q.summary() for q in self.queries],
            "write": self.write.summary(),
            "write_apply_queue": self.write_apply.summary(),
            "write_sync_index": self.write_index.summary(),
            "baseline_write": self.baseline_write.summary(),
        }


def in_turns(
    runs: Sequence[Callable[[], object]], count: int, warm_up: int = WARM_UP
) -> list[Timing]:
    """`count` timed calls of each of `runs`, after `warm_up` untimed rounds.

    The calls take turns, first to last and then last to first, so that a change
    in the machine's load falls on all of them alike; a garbage collection
    first, so that the setup's garbage is not collected inside a timed call.
    """
    for _ in range(warm_up):
        for run in runs:
            run()
    gc.collect()
    timings = [Timing() for _ in runs]
    order = list(zip(runs, timings, strict=True))
    for n in range(count):
        for run, timing in order if n % 2 == 0 else reversed(order):
            started = time.perf_counter()
            run()
            timing.runs.append(time.perf_counter() - started)
    return timings


# -- the repositories -------------------------------------------------------------------------


def app_name(index: int) -> str:
    return f"app-{index}"


def apps_for(releases: int, apps: int) -> int:
    """How many apps `releases` go to: at most `apps`, with LIMIT releases each at least."""
    return max(1, min(apps, releases // LIMIT))


def build_remote(path: Path, releases: int, apps: int) -> float:
    """A bare remote whose `main` has `releases` commits, release i to app i % apps; seconds."""
    started = time.perf_counter()
    init_bare(path, BRANCH)
    made = [(ENV, app_name(i % apps), f"acme-{app_name(i % apps)}-{i}") for i in range(releases)]
    fast_import_releases(path, made)
    return time.perf_counter() - started


# -- the baseline: the Go original's Releases and HasBeenReverted -----------------------------


def entry_id(tree: pygit2.Tree, path: str) -> pygit2.Oid | None:
    try:
        return tree[path].id
    except KeyError:
        return None


def changed(commit: pygit2.Commit, path: str) -> bool:
    """Whether `commit` changed directory `path` against its first parent."""
    parent = entry_id(commit.parents[0].tree, path) if commit.parent_ids else None
    return entry_id(commit.tree, path) != parent


def has_been_reverted(
    repo: pygit2.Repository, head: pygit2.Oid, release: pygit2.Commit, path: str, *, stop: bool
) -> bool:
    """The original's HasBeenReverted: a commit of `path` since `release` names its sha.

    Commits older than `release` are skipped, as go-git's `Since` did, reading on
    to the root; with `stop` the walk ends at the first of them instead.
    """
    sha, since = str(release.id), release.commit_time
    for commit in repo.walk(head, WALK):
        if commit.commit_time < since:
            if stop:
                return False
            continue
        if changed(commit, path) and sha in commit.message:
            return True
    return False


def baseline_history(
    repo: pygit2.Repository, env: str, app: str, limit: int, *, stop: bool = False
) -> list[dict[str, Any]]:
    """The newest `limit` releases of env/app read from git, as the Go original's Releases did."""
    head = repo.references[f"refs/heads/{BRANCH}"].target
    path = f"{env}/{app}"
    releases: list[dict[str, Any]] = []
    for commit in repo.walk(head, WALK):
        if len(releases) >= limit:
            break
        if not changed(commit, path) or any(m in commit.message for m in NOT_RELEASES):
            continue
        try:
            blob = repo[commit.tree[f"{path}/release.json"].id]
        except KeyError:
            continue
        release = json.loads(blob.data)
        release["created"] = commit.commit_time
        release["gitopsRef"] = str(commit.id)
        release["rolledBack"] = has_been_reverted(repo, head, commit, path, stop=stop)
        releases.append(release)
    return releases


# -- gimletd: the API over HTTP, the index query, the writer ----------------------------------


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (gunicorn writes none by default either)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextlib.contextmanager
def serve_api(work: Path, remote: Path, db_path: Path) -> Iterator[httpx.Client]:
    """The API of `api.create_app` over HTTP on 127.0.0.1; an authenticated client of it.

    The API sends to Redis only to enqueue work, which `GET /api/releases` does
    not do once the index exists, so the Redis URL points at nothing.
    """
    settings = Settings(
        data_dir=work / "data",
        gitops_repo=str(remote),
        database_url=SecretStr(f"sqlite:///{db_path}"),
        admin_token=SecretStr(ADMIN_TOKEN),
        redis_url="redis://127.0.0.1:1/0",
    )
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    thread.start()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.server_port}", headers=headers, timeout=30
        ) as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["gimletd"].store.close()


def api_history(client: httpx.Client, app: str) -> list[dict[str, Any]]:
    response = client.get("/api/releases", params={"env": ENV, "app": app, "limit": LIMIT})
    if response.status_code != 200:
        raise RuntimeError(f"GET /api/releases of {app}: {response.status_code} {response.text}")
    entries: list[dict[str, Any]] = response.json()
    return entries


def check_same(app: str, expected: int, answers: dict[str, list[dict[str, Any]]]) -> None:
    """Every answer names the same `expected` commits, newest first, equally rolled back."""
    refs = {name: [entry.get("gitopsRef") for entry in answer] for name, answer in answers.items()}
    flags = {
        name: [entry.get("rolledBack") for entry in answer] for name, answer in answers.items()
    }
    first = next(iter(answers))
    if any(len(r) != expected or r != refs[first] for r in refs.values()) or any(
        f != flags[first] for f in flags.values()
    ):
        shown = "\n".join(f"  {name}: {refs[name]} rolled back {flags[name]}" for name in answers)
        raise RuntimeError(
            f"{ENV}/{app}: the answers differ, {expected} entries expected:\n{shown}"
        )


@dataclass
class Site:
    """One repository with its index and its API, while they are measured."""

    figures: SizeFigures
    store: Store
    repo: GitopsRepository
    git: pygit2.Repository
    client: httpx.Client
    #: A copy of the remote that CI's deploy step (the write baseline) pushes to, and the
    #: environment its git commands run in (`e2e.git_environment`).
    baseline_remote: Path
    baseline_env: dict[str, str]

    @property
    def queried(self) -> list[str]:
        """app-0 and the app of the newest commit (once when they are the same)."""
        releases, apps = self.figures.releases, self.figures.apps
        return [app_name(i) for i in dict.fromkeys([0, (releases - 1) % apps])]

    def expected(self, app: str) -> int:
        """How many entries the history of `app` has: LIMIT, or its releases when fewer."""
        index = int(app.removeprefix("app-"))
        return min(LIMIT, len(range(index, self.figures.releases, self.figures.apps)))


def measure_queries(sites: Sequence[Site], options: Options) -> None:
    """Each queried app's history through the API, `Store.history` and the baselines.

    The API and `Store.history` are timed on both repositories in turns, so that
    a change in the machine's load falls on both sizes alike; the baselines one
    repository after the other.
    """
    for apps in zip(*(site.queried for site in sites), strict=False):
        pairs = list(zip(sites, apps, strict=True))
        for site, app in pairs:
            check_same(
                app,
                site.expected(app),
                {
                    "gimletd": api_history(site.client, app),
                    "baseline": baseline_history(site.git, ENV, app, LIMIT),
                    "baseline, stopping early": baseline_history(
                        site.git, ENV, app, LIMIT, stop=True
                    ),
                },
            )
        api = in_turns(
            [functools.partial(api_history, site.client, app) for site, app in pairs],
            options.repeat,
        )
        queries = [HistoryFilter(site.repo.url, ENV, app, limit=LIMIT) for site, app in pairs]
        in_process = in_turns(
            [
                functools.partial(site.store.history, query)
                for (site, _), query in zip(pairs, queries, strict=True)
            ],
            options.repeat,
        )
        for (site, app), api_timing, store_timing in zip(pairs, api, in_process, strict=True):
            baselines = [
                timed_baseline(
                    functools.partial(baseline_history, site.git, ENV, app, LIMIT, stop=stop),
                    options,
                )
                for stop in (False, True)
            ]
            site.figures.queries.append(
                AppFigures(app, site.expected(app), api_timing, store_timing, *baselines)
            )


def timed_baseline(run: Callable[[], object], options: Options) -> Timing:
    """--baseline-repeat timed runs after a warm-up run; --repeat when a run is cheap."""
    started = time.perf_counter()
    run()
    cheap = time.perf_counter() - started < CHEAP_RUN
    count = options.repeat if cheap else options.baseline_repeat
    return in_turns([run], count, WARM_UP if cheap else 0)[0]


def write_once(site: Site, n: int) -> None:
    """Policy deploy number `n` of app-0, timed into `site.figures`.

    It is stored and planned untimed; `apply_queue` commits it to the remote and
    `sync_index` reads the new commit into the index, as the worker does.
    """
    store, repo, app = site.store, site.repo, app_name(0)
    version = {
        "repositoryName": f"acme/{app}",
        "sha": f"{n + 1:040x}",
        "branch": BRANCH,
        "event": "push",
    }
    stored, event = store.create_artifact(
        Artifact.model_validate({"version": version}), triggered_by="bench"
    )
    release = Release(
        app=app,
        env=ENV,
        artifact_id=stored.id,
        triggered_by=POLICY_TRIGGER,
        event_id=event.id,
        gitops_repo=repo.url,
    )
    files = {f"deployment-{app}.yaml": f"kind: Deployment\nimage: bench-{n}\n".encode()}
    store.plan_event(
        event.id, writes=[PlannedWrite(repo.url, ENV, app, files, release)], failures=[]
    )
    started = time.perf_counter()
    result = apply_queue(store, repo, ENV, push_attempts=3, max_attempts=3)
    applied = time.perf_counter()
    sync_index(store, repo, repo.known_head())
    done = time.perf_counter()
    statuses = [r.status.value for r in result.reports]
    if statuses != ["success"]:
        raise RuntimeError(f"write {n} of {ENV}/{app}: {statuses}: {result.reports}")
    site.figures.write.runs.append(done - started)
    site.figures.write_apply.runs.append(applied - started)
    site.figures.write_index.runs.append(done - applied)
    baseline_write_once(site, n, files, release.to_json_text().encode())


def baseline_write_once(site: Site, n: int, files: dict[str, bytes], release: bytes) -> None:
    """The same release as CI's deploy step writes it, timed into `site.figures`.

    `git clone` of the remote (a local path: git's fastest case, hard links and no
    network), the app's files and `release.json` written, `git commit`, `git push`,
    onto a copy of the remote so that GimletD's index never sees these commits.
    """
    env = site.baseline_env
    app = app_name(0)
    with tempfile.TemporaryDirectory(prefix="ci-job-") as job:
        started = time.perf_counter()
        clone = Path(job) / "gitops"
        git("clone", "-q", str(site.baseline_remote), str(clone), env=env)
        directory = clone / ENV / app
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, content in files.items():
            (directory / name).write_bytes(content)
        (directory / "release.json").write_bytes(release)
        git("-C", str(clone), "add", "-A", env=env)
        git("-C", str(clone), "commit", "-q", "-m", f"[GimletD release] {ENV}/{app} {n}",
                env=env)  # fmt: skip
        git("-C", str(clone), "push", "-q", "origin", f"HEAD:{BRANCH}", env=env)
        site.figures.baseline_write.runs.append(time.perf_counter() - started)


def measure_writes(sites: Sequence[Site], count: int) -> None:
    """`count` release writes on each repository, in turns as `in_turns` takes them."""
    gc.collect()
    for n in range(count):
        for site in sites if n % 2 == 0 else reversed(sites):
            write_once(site, n)


def open_site(stack: contextlib.ExitStack, work: Path, releases: int, apps: int) -> Site:
    """Build a repository of `releases` over `apps`, index it (timed) and serve its API."""
    base = work / f"releases-{releases}"
    base.mkdir()
    remote = base / "gitops.git"
    import_s = build_remote(remote, releases, apps)
    db_path = base / "gimletd.sqlite"
    store = Store(f"sqlite:///{db_path}")
    stack.callback(store.close)
    store.migrate()
    repo = GitopsRepository(str(remote), cache_dir=base / "cache", clone_name="bench")
    stack.callback(repo.close)
    started = time.perf_counter()
    entries = sync_index(store, repo, repo.fetch())
    figures = SizeFigures(releases, apps, import_s, time.perf_counter() - started, entries)
    git_repo = pygit2.Repository(str(remote))
    stack.callback(git_repo.free)
    client = stack.enter_context(serve_api(base, remote, db_path))
    baseline_remote, baseline_home = base / "ci-gitops.git", base / "ci-home"
    baseline_home.mkdir()
    baseline_env = git_environment(baseline_home)
    git("clone", "-q", "--bare", str(remote), str(baseline_remote), env=baseline_env)
    return Site(figures, store, repo, git_repo, client, baseline_remote, baseline_env)


def measure(work: Path, options: Options) -> list[SizeFigures]:
    """Both repositories, built and indexed, then measured side by side."""
    with contextlib.ExitStack() as stack:
        sites = []
        for releases in (options.small, options.releases):
            apps = apps_for(releases, options.apps)
            print(f"{releases} releases over {apps} apps: build and index", flush=True)
            sites.append(open_site(stack, work, releases, apps))
        print("history requests and baselines", flush=True)
        measure_queries(sites, options)
        print("release writes", flush=True)
        measure_writes(sites, options.writes)
        return [site.figures for site in sites]


# -- reporting --------------------------------------------------------------------------------


def goals(small: SizeFigures, large: SizeFigures) -> dict[str, dict[str, Any]]:
    """The issue's goals on app-0 (the first app queried) and the write, with their values."""
    q_small, q_large = small.queries[0], large.queries[0]
    checks = {
        "api_speedup_over_baseline": (
            ratio(q_large.baseline.median_ms, q_large.api.median_ms),
            GOAL_SPEEDUP,
            True,
        ),
        "api_speedup_over_baseline_stopping_early": (
            ratio(q_large.baseline_stopping.median_ms, q_large.api.median_ms),
            GOAL_SPEEDUP,
            True,
        ),
        "api_growth": (ratio(q_large.api.median_ms, q_small.api.median_ms), GOAL_GROWTH, False),
        "write_growth": (ratio(large.write.median_ms, small.write.median_ms), GOAL_GROWTH, False),
    }
    return {
        name: {
            "value": value,
            "goal": f">= {goal:g}x" if at_least else f"< {goal:g}x",
            "met": value >= goal if at_least else value < goal,
        }
        for name, (value, goal, at_least) in checks.items()
    }


def report(
    options: Options, small: SizeFigures, large: SizeFigures, load: list[float]
) -> dict[str, Any]:
    """Print the table and return everything as one JSON-ready dict."""
    s, n = small.releases, large.releases
    print()
    print(
        f"{'median of the timed runs':<46} {f'{s} releases':>14} {f'{n} releases':>14} "
        f"{f'{n}/{s}':>9}"
    )

    def row(label: str, a: float, b: float, unit: str = "ms", note: str = "") -> None:
        print(
            f"{label:<46} {a:>11.2f} {unit:<2} {b:>11.2f} {unit:<2} {ratio(b, a):>8.2f}x "
            f"{note}".rstrip()
        )

    for q_small, q_large in zip(small.queries, large.queries, strict=True):
        apps = q_large.app if q_small.app == q_large.app else f"{q_small.app}, {q_large.app}"
        print(f"{ENV}/{apps}, limit {LIMIT}: {q_small.entries} and {q_large.entries} entries")
        row("  gimletd: GET /api/releases over HTTP", q_small.api.median_ms, q_large.api.median_ms)
        row("  gimletd: Store.history in process", q_small.store.median_ms, q_large.store.median_ms)
        row(
            "  baseline: the original's git walks",
            q_small.baseline.median_ms,
            q_large.baseline.median_ms,
        )
        row(
            "  baseline, stopping early",
            q_small.baseline_stopping.median_ms,
            q_large.baseline_stopping.median_ms,
        )
        for label, pick in (
            ("  baseline / GET /api/releases", lambda q: q.baseline),
            ("  baseline, stopping early / GET", lambda q: q.baseline_stopping),
        ):
            faster = [ratio(pick(q).median_ms, q.api.median_ms) for q in (q_small, q_large)]
            print(f"{label:<46} {faster[0]:>13.1f}x {faster[1]:>13.1f}x")
    row(
        "one release write (apply_queue + sync_index)", small.write.median_ms, large.write.median_ms
    )
    row("  apply_queue", small.write_apply.median_ms, large.write_apply.median_ms)
    row("  sync_index of the new commit", small.write_index.median_ms, large.write_index.median_ms)
    row(
        "baseline: CI's clone, commit and push",
        small.baseline_write.median_ms,
        large.baseline_write.median_ms,
    )
    row(
        "initial index build (sync_index)",
        small.index_build_s,
        large.index_build_s,
        "s",
        f"({small.index_entries} and {large.index_entries} entries)",
    )
    row("repository made with git fast-import", small.fast_import_s, large.fast_import_s, "s")
    print(
        f"apps: {small.apps} at {s} releases, {large.apps} at {n}; runs: "
        f"{len(small.queries[0].api.runs)} requests per app and size, baseline "
        f"{len(small.queries[0].baseline.runs)} at {s} and {len(large.queries[0].baseline.runs)} "
        f"at {n}, {len(small.write.runs)} writes per size"
    )

    reached = goals(small, large)
    labels = {
        "api_speedup_over_baseline": f"GET /api/releases against the baseline at {n}",
        "api_speedup_over_baseline_stopping_early": "  (against the baseline stopping early)",
        "api_growth": f"GET /api/releases at {n} against {s}",
        "write_growth": f"one release write at {n} against {s}",
    }
    print(f"goals ({ENV}/app-0, medians):")
    for key, goal in reached.items():
        verdict = "met" if goal["met"] else "NOT met"
        print(f"  {labels[key]:<48} {goal['value']:>8.2f}x  goal {goal['goal']:<7} {verdict}")
    machine = machine_info(load)
    print(
        f"source: {machine['source']}; machine: {machine['cpus']} CPUs, Python "
        f"{machine['python']}, SQLite {machine['sqlite']}, libgit2 {machine['libgit2']}; "
        f"1-minute load average {load[0]:.2f} before, {machine['load_average_1m']['after']:.2f} "
        "after"
    )
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "machine": machine,
        "sizes": {str(f.releases): f.summary() for f in (small, large)},
        "goals": reached,
    }


def machine_info(load: list[float]) -> dict[str, Any]:
    return {
        "source": source_version(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "pygit2": pygit2.__version__,
        "libgit2": pygit2.LIBGIT2_VERSION,
        "git": _git_version(),
        "load_average_1m": {"before": load[0], "after": os.getloadavg()[0]},
    }


def _git_version() -> str:
    try:
        return git("--version").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# -- main -------------------------------------------------------------------------------------

DEFAULTS = {"releases": 10_000, "repeat": 30, "baseline_repeat": 5, "writes": 10}
#: --quick: a smoke run of a few seconds; its figures are only indicative.
QUICK = {"releases": 2000, "repeat": 10, "baseline_repeat": 3, "writes": 3}


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def count(name: str, text: str) -> None:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"{text} ({DEFAULTS[name]}; {QUICK[name]} with --quick)",
        )

    count("releases", "releases in the large repository")
    parser.add_argument(
        "--small", type=int, default=100, help="releases in the small repository (100)"
    )
    parser.add_argument(
        "--apps",
        type=int,
        default=100,
        help="apps the releases go to round-robin (100; in a repository with fewer than "
        f"{LIMIT} releases per app, releases // {LIMIT})",
    )
    count("repeat", "timed requests per app and size")
    count("baseline_repeat", "timed baseline runs per app and size when one takes 50 ms or more")
    count("writes", "timed release writes per size")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds: fewer releases and repetitions",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the results (bench/results/history-<timestamp>.json)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if (
        min(args.releases, args.small, args.apps, args.repeat, args.baseline_repeat, args.writes)
        < 1
    ):
        parser.error("every count must be at least 1")
    if args.small >= args.releases:
        parser.error("--small must be smaller than --releases")
    return Options(
        args.releases,
        args.small,
        args.apps,
        args.repeat,
        args.baseline_repeat,
        args.writes,
        args.quick,
        args.keep,
        args.json,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    load = [os.getloadavg()[0]]
    # GimletD logs at INFO (migrations, one line per write): warnings only, so the table stays
    # readable. create_app configures logging only when it is not configured yet.
    configure_logging(development=False, level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="gimletd-bench-history-"))
    try:
        sizes = measure(work, options)
        path = save_result("history", report(options, sizes[0], sizes[1], load), options.json_path)
        print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: removing temporary files", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        if options.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
