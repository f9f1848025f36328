"""Group commit of artifact pushes (`api.intake`): one transaction for those that arrive together.

The intake runs against a real SQLite store; a store that holds its first
commit back makes the pushes behind it pile up, so how they are batched does
not depend on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.intake import ArtifactIntake
from gimletd.errors import Conflict, InputError, StoreUnavailable
from gimletd.models import Artifact, Event
from gimletd.settings import Settings
from gimletd.store import ArtifactFilter, ArtifactPush, Store
from tests.api.test_artifacts import seed
from tests.conftest import migrated


class HeldStore(Store):
    """A real store whose first `create_artifacts` once armed waits until the test lets it go on."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.armed = False
        self.entered = threading.Event()
        self.go_on = threading.Event()
        self.batches: list[int] = []

    def create_artifacts(self, pushes: Sequence[ArtifactPush]) -> list[tuple[Artifact, Event]]:
        if self.armed:
            self.batches.append(len(pushes))
            if len(self.batches) == 1:
                self.entered.set()
                assert self.go_on.wait(10)
        return super().create_artifacts(pushes)


@pytest.fixture
def held_store(settings: Settings) -> Iterator[HeldStore]:
    with migrated(HeldStore(settings.resolved_database_url)) as store:
        yield store


class Enqueued:
    """Stands in for the broker client: records each call's event ids."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, event_ids: list[str]) -> bool:
        self.calls.append(list(event_ids))
        return True


def pushes(fixtures_dir: Path, count: int, *, key: str | None = None) -> list[ArtifactPush]:
    made = []
    for n in range(count):
        data = seed(fixtures_dir)
        data["version"]["sha"] = f"{n + 1:040x}"
        made.append(ArtifactPush(Artifact.model_validate(data), "ci", dedupe_key=key))
    return made


def push_behind_a_held_commit(
    intake: ArtifactIntake, store: HeldStore, first: ArtifactPush, rest: list[ArtifactPush]
) -> list[tuple[Artifact, Event] | Exception]:
    """Push `first`, and `rest` while its commit is held back; each push's outcome."""

    def outcome(push: ArtifactPush) -> tuple[Artifact, Event] | Exception:
        try:
            return intake.push(push)
        except Exception as exc:
            return exc

    store.armed = True
    with ThreadPoolExecutor(len(rest) + 1) as pool:
        head = pool.submit(outcome, first)
        assert store.entered.wait(10)
        others = [pool.submit(outcome, push) for push in rest]
        deadline = time.monotonic() + 10
        while intake_backlog(intake) < len(rest):
            assert time.monotonic() < deadline, "the pushes never reached the intake's queue"
            time.sleep(0.01)
        store.go_on.set()
        return [head.result(timeout=30), *(future.result(timeout=30) for future in others)]


def intake_backlog(intake: ArtifactIntake) -> int:
    return intake._queue.qsize()


def test_pushes_that_arrive_together_share_one_transaction(
    held_store: HeldStore, fixtures_dir: Path
) -> None:
    enqueued = Enqueued()
    intake = ArtifactIntake(held_store, enqueued)
    first, *rest = pushes(fixtures_dir, 9)
    try:
        outcomes = push_behind_a_held_commit(intake, held_store, first, rest)
    finally:
        intake.close()
    assert held_store.batches == [1, 8]
    stored = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    assert len(stored) == 9
    # Each push gets its own artifact and event, and its event went to the queue with its batch.
    assert [artifact.version.sha for artifact, _ in stored] == [
        p.artifact.version.sha for p in [first, *rest]
    ]
    assert enqueued.calls == [[stored[0][1].id], [event.id for _, event in stored[1:]]]
    events = [held_store.event(event.id) for _, event in stored]
    assert all(
        event.artifact_id == artifact.id
        for event, (artifact, _) in zip(events, stored, strict=True)
    )


def test_a_reused_key_fails_only_its_own_push(held_store: HeldStore, fixtures_dir: Path) -> None:
    held_store.create_artifact(
        pushes(fixtures_dir, 1)[0].artifact, triggered_by="ci", dedupe_key="used"
    )
    intake = ArtifactIntake(held_store, Enqueued())
    first, *fresh = pushes(fixtures_dir, 4)
    reused = pushes(fixtures_dir, 1, key="used")[0]
    try:
        outcomes = push_behind_a_held_commit(
            intake, held_store, first, [fresh[0], reused, *fresh[1:]]
        )
    finally:
        intake.close()
    assert isinstance(outcomes[2], Conflict)
    assert [isinstance(o, Exception) for o in outcomes] == [False, False, True, False, False]
    # The batch of four failed as a whole, then was stored push by push.
    assert held_store.batches == [1, 4, 1, 1, 1, 1]


def test_every_push_of_a_batch_hears_that_the_database_is_away(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'never-migrated.sqlite'}")  # no tables: every write fails
    intake = ArtifactIntake(store, Enqueued())
    try:
        with ThreadPoolExecutor(4) as pool:
            failures = list(pool.map(lambda p: _raised(intake, p), pushes(fixtures_dir, 4)))
        # Each push hears the database's own error, not merely that the intake gave up.
        assert all(isinstance(f, StoreUnavailable) for f in failures), failures
        assert all("no such table" in str(f) for f in failures), failures
        # The writer thread outlives the failure: a push after it is answered too.
        after = _raised(intake, pushes(fixtures_dir, 1)[0])
        assert isinstance(after, StoreUnavailable)
        assert "no such table" in str(after)
    finally:
        intake.close()
        store.close()


def test_a_forked_process_writes_with_a_thread_of_its_own(store: Store, fixtures_dir: Path) -> None:
    intake = ArtifactIntake(store, Enqueued())
    parent, child = pushes(fixtures_dir, 2)
    intake.push(parent)  # the parent's writer thread runs now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not here, so it must start its own
        signal.alarm(20)  # a child left waiting for a thread it does not have dies, and fails
        try:
            store.engine.dispose(close=False)  # the parent's connections stay the parent's
            intake.push(child)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    intake.close()
    assert os.waitstatus_to_exitcode(status) == 0
    shas = [parent.artifact.version.sha, child.artifact.version.sha]
    stored = store.artifacts(ArtifactFilter(shas=shas))
    assert sorted(a.version.sha for a in stored) == sorted(shas)


def test_a_push_after_close_is_answered_not_left_waiting(store: Store, fixtures_dir: Path) -> None:
    intake = ArtifactIntake(store, Enqueued())
    first, second = pushes(fixtures_dir, 2)
    intake.push(first)
    intake.close()
    assert isinstance(_raised(intake, second), StoreUnavailable)


def test_a_value_too_long_fails_only_its_own_push(postgres_url: str, fixtures_dir: Path) -> None:
    # PostgreSQL, unlike SQLite, refuses a repository name longer than its column.
    first, fine, also_fine, too_long = pushes(fixtures_dir, 4)
    too_long.artifact.version.repository_name = "r" * 600
    with migrated(HeldStore(postgres_url)) as store:
        intake = ArtifactIntake(store, Enqueued())
        try:
            outcomes = push_behind_a_held_commit(intake, store, first, [fine, too_long, also_fine])
        finally:
            intake.close()
    assert [type(o).__name__ for o in outcomes if isinstance(o, Exception)] == ["InputError"]
    assert isinstance(outcomes[2], InputError)
    assert store.batches == [1, 3, 1, 1, 1]


def _raised(intake: ArtifactIntake, push: ArtifactPush) -> Exception | None:
    try:
        intake.push(push)
    except Exception as exc:
        return exc
    return None


GEVENT_PUSHES = """
from gevent import monkey

monkey.patch_all()

import json, sys

import gevent

import api.intake
from api.intake import ArtifactIntake
from gimletd.models import Artifact
from gimletd.store import ArtifactPush, Store

store = Store(sys.argv[1])
store.migrate()
artifact = Artifact.model_validate_json(sys.argv[2])
batches = []
if sys.argv[3] == "without":
    api.intake._gather_ready_pushes = lambda: lambda: None
else:  # a bound long enough that a busy machine cannot end the wait before the loop idles
    api.intake.MAX_GATHER = 5
intake = ArtifactIntake(store, lambda ids: batches.append(len(ids)) or True)


def request(n):
    gevent.sleep(0)  # a request reads its body: it waits once before it pushes
    intake.push(ArtifactPush(artifact.model_copy(update={"id": str(n)}), "ci"))


gevent.joinall([gevent.spawn(request, n) for n in range(8)], raise_error=True)
print(json.dumps(batches))
"""


@pytest.mark.parametrize("gather", ["with", "without"])
def test_under_gevent_a_batch_takes_every_push_that_is_ready(
    gather: str, tmp_path: Path, fixtures_dir: Path
) -> None:
    """The writer waits until the loop is idle, so ready requests join the first batch."""
    artifact = Artifact.model_validate(seed(fixtures_dir)).model_dump_json(by_alias=True)
    url = f"sqlite:///{tmp_path / 'gevent.sqlite'}"
    ran = subprocess.run(
        [sys.executable, "-c", GEVENT_PUSHES, url, artifact, gather],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    batches = json.loads(ran.stdout)
    assert sum(batches) == 8
    if gather == "with":
        assert batches == [8]
    else:  # the writer wakes at the first push and takes it alone: what the wait is for
        assert batches[0] < 8
