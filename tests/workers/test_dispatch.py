"""A batch of artifact pushes processed as one, in this process: real store, Helm and charts.

Draining and indexing are left out (`_drain_now` and `index_repository` record
what they were asked instead), so each test sees exactly what the batch
claimed, planned and handed on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_event

from gimletd.errors import ChartSourceError, StoreUnavailable
from gimletd.models import Artifact, EventStatus, Release
from gimletd.release import Plan
from gimletd.settings import Settings
from gimletd.store import ArtifactPush, PlannedWrite, Store
from tests.support import gitops
from tests.workers.conftest import on_branch
from workers import context, events
from workers.gitops import Drained, drain_queue, index_repository


@pytest.fixture
def drained(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Run the tasks on the test's settings; the queues they would drain are collected."""
    context.reset()
    monkeypatch.setattr(context, "settings", lambda: settings)
    queues: list[tuple[str, str]] = []

    def drain_now(gitops_repo: str, env: str, *, index: bool = True) -> None:
        assert not index, "the batch indexes each repository once, after its drains"
        queues.append((gitops_repo, env))

    monkeypatch.setattr(events, "_drain_now", drain_now)
    yield queues
    context.reset()


@pytest.fixture
def indexed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The repositories whose release index the batch reads after its drains."""
    repos: list[str] = []
    monkeypatch.setattr(events, "index_repository", repos.append)
    return repos


@pytest.fixture
def handed_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The events the batch gives a `process` task of their own."""
    ids: list[str] = []
    monkeypatch.setattr(events, "_process_each", ids.extend)
    return ids


def push_events(store: Store, artifact: dict[str, Any], count: int) -> list[str]:
    """Store `count` pushes of `artifact` to main, as the API's intake does; their event ids."""
    pushes = [
        ArtifactPush(
            Artifact.model_validate(on_branch(artifact, "main", "push", sha=f"{n:040x}")),
            triggered_by="ci",
        )
        for n in range(1, count + 1)
    ]
    return [event.id for _, event in store.create_artifacts(pushes)]


def with_qa(artifact: dict[str, Any]) -> dict[str, Any]:
    """The artifact with a second environment that main pushes deploy to."""
    qa = copy.deepcopy(artifact["environments"][0])
    qa["env"] = "qa"
    return {**artifact, "environments": [*artifact["environments"], qa]}


def test_a_batch_is_claimed_in_one_transaction_planned_in_another_and_drained_once_per_queue(
    store: Store, artifact: dict[str, Any], settings: Settings,
    drained: list[tuple[str, str]], handed_on: list[str], indexed: list[str],
) -> None:  # fmt: skip
    ids = push_events(store, with_qa(artifact), 3)
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    engine = context.store().engine
    sqlalchemy_event.listen(engine, "commit", count)
    try:
        events.dispatch(ids)
    finally:
        sqlalchemy_event.remove(engine, "commit", count)
    assert len(commits) == 2, "one claim and one plan transaction for the whole batch"
    repo = settings.gitops_repo_for("staging")
    assert sorted(drained) == [(repo, "qa"), (repo, "staging")]
    assert indexed == [repo], "one index read for the two drains of the repository"
    for env in ("staging", "qa"):
        assert [w.event_id for w in store.unfinished_writes(repo, env)] == ids
    assert handed_on == []
    claims = store.claim_events(ids)
    assert all(c is not None and c.attempts == 2 for c in claims.values()), "the batch counted one"


def test_what_the_batch_does_not_handle_gets_its_own_task(
    store: Store, artifact: dict[str, Any], settings: Settings,
    drained: list[tuple[str, str]], handed_on: list[str],
) -> None:  # fmt: skip
    planned, finished, fresh = push_events(store, artifact, 3)
    repo = settings.gitops_repo_for("staging")
    release = Release(app="frontend", env="staging", artifactId="a", triggeredBy="policy")
    write = PlannedWrite(repo, "staging", "frontend", {"x.yaml": b"x: 1\n"}, release)
    store.plan_event(planned, writes=[write], failures=[])  # a redelivery: planned already
    store.fail_event(finished, "broken")
    events.dispatch([planned, finished, fresh])
    assert handed_on == [planned], "the planned one's drains are the process task's to queue"
    assert [w.event_id for w in store.unfinished_writes(repo, "staging")] == [planned, fresh]
    assert store.event(finished).status is EventStatus.ERROR


def test_an_event_whose_planning_raised_is_noted_and_the_others_planned(
    store: Store, artifact: dict[str, Any], settings: Settings,
    drained: list[tuple[str, str]], handed_on: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first, broken, last = push_events(store, artifact, 3)
    plan = events._plan

    def planning_breaks_on_one(claim: Any) -> Plan | None:
        if claim.id == broken:
            raise RuntimeError("a bug in rendering")
        return plan(claim)

    monkeypatch.setattr(events, "_plan", planning_breaks_on_one)
    events.dispatch([first, broken, last])
    repo = settings.gitops_repo_for("staging")
    assert [w.event_id for w in store.unfinished_writes(repo, "staging")] == [first, last]
    stuck = store.event(broken)
    assert stuck.status is EventStatus.NEW, "left to the sweep, as a failed process task leaves it"
    assert stuck.status_desc == "attempt 1 failed: a bug in rendering"
    assert handed_on == []


def test_a_chart_that_could_not_be_fetched_is_retried_on_its_own_with_the_try_counted(
    store: Store, artifact: dict[str, Any],
    drained: list[tuple[str, str]], handed_on: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    [event_id] = push_events(store, artifact, 1)
    monkeypatch.setattr(
        events, "_plan", lambda claim: Plan(retryable=[ChartSourceError("registry timed out")])
    )
    sent: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(
        events.process, "apply_async", lambda args, **options: sent.append((args, options))
    )
    events.dispatch([event_id])
    assert sent == [((event_id,), {"countdown": 2, "retries": 1})]
    assert drained == [] and store.event(event_id).status is EventStatus.NEW


def test_every_event_gets_its_own_task_when_recording_the_plans_fails(
    store: Store, artifact: dict[str, Any],
    drained: list[tuple[str, str]], handed_on: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ids = push_events(store, artifact, 3)

    def database_gone(self: Store, plans: object) -> list[tuple[str, str]]:
        raise StoreUnavailable("the database is unavailable: connection refused")

    monkeypatch.setattr(Store, "plan_events", database_gone)
    events.dispatch(ids)
    assert handed_on == ids and drained == []
    assert {store.event(i).status for i in ids} == {EventStatus.NEW}


def test_an_event_out_of_attempts_ends_in_error_in_the_batch(
    store: Store, artifact: dict[str, Any], settings: Settings,
    drained: list[tuple[str, str]], handed_on: list[str],
) -> None:  # fmt: skip
    tired, fresh = push_events(store, artifact, 2)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE events SET attempts = ? WHERE id = ?", (settings.max_attempts, tired)
        )
    events.dispatch([tired, fresh])
    ended = store.event(tired)
    assert ended.status is EventStatus.ERROR
    assert ended.status_desc.startswith(f"gave up after {settings.max_attempts} attempts")
    assert handed_on == [] and drained == [(settings.gitops_repo_for("staging"), "staging")]


def test_a_drain_asked_not_to_index_leaves_what_it_could_not_index_to_its_caller(
    store: Store, artifact: dict[str, Any], settings: Settings, gitops_remote: Path,
    drained: list[tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    """A drain indexes its own push; a foreign commit before it is read from git by the caller."""
    [event_id] = push_events(store, artifact, 1)
    events.dispatch([event_id])
    repo = settings.gitops_repo_for("staging")
    index_repository(repo)
    before = store.index_head(repo)
    gitops.commit_by_hand(gitops_remote, tmp_path / "hand", {"README.md": "hi\n"}, "by hand")
    assert drain_queue(repo, "staging", index=False) is Drained.DONE
    [commit, _] = gitops.commits(gitops_remote)
    assert store.event(event_id).status is EventStatus.PROCESSED
    assert store.index_head(repo) == before, "not at the push's base: not indexed by the drain"
    index_repository(repo)
    head = store.index_head(repo)
    assert head is not None and head.commit == commit.sha


def test_the_failures_of_a_batch_are_announced_once_their_plans_are_stored(
    store: Store, artifact: dict[str, Any], settings: Settings,
    drained: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    broken = copy.deepcopy(artifact["environments"][0])
    broken["env"] = "production"
    broken["values"]["image"]["tag"] = "{{ .RELEASE_TAG }}"
    [event_id, fine] = push_events(
        store, {**artifact, "environments": [*artifact["environments"], broken]}, 2
    )
    announced: list[Any] = []
    monkeypatch.setattr(events, "send_notices", lambda notices: announced.extend(notices))
    events.dispatch([event_id, fine])
    assert sorted((n.event_id, n.env, n.app) for n, _ in announced) == sorted(
        (e, "production", "frontend") for e in (event_id, fine)
    )
    assert drained == [(settings.gitops_repo_for("staging"), "staging")]
