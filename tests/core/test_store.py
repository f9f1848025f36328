"""The store on SQLite and PostgreSQL: artifacts, events, GitOps writes, users, migrations."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gimletd.errors import Conflict, NotFound
from gimletd.models import (
    Artifact,
    DeliveryStatus,
    EventStatus,
    EventType,
    Hold,
    Release,
    ResultStatus,
    WriteKind,
)
from gimletd.notifications.notice import Notice, NoticeKind
from gimletd.store import (
    ArtifactFilter,
    Base,
    EventPlan,
    FailedEnvironment,
    HistoryFilter,
    IndexEntry,
    IndexHead,
    PlannedWrite,
    PushedCommits,
    Store,
    WriteReport,
)


def make_artifact(fixtures_dir: Path, **version: str) -> Artifact:
    data = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    data["version"].update(version)
    return Artifact.model_validate(data)


def planned(env: str, app: str, artifact_id: str = "a") -> PlannedWrite:
    release = Release(app=app, env=env, artifactId=artifact_id, triggeredBy="policy")
    return PlannedWrite("repo", env, app, {"deployment-x.yaml": b"kind: Deployment\n"}, release)


def test_migrations_create_the_schema_of_the_models(any_store: Store) -> None:
    """Alembic's head and the SQLAlchemy models describe the same schema."""
    with any_store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migrating_twice_is_harmless(any_store: Store) -> None:
    any_store.migrate()
    any_store.ping()


def test_an_artifact_gets_an_id_a_created_time_and_an_event(
    any_store: Store, fixtures_dir: Path
) -> None:
    """The id is `<repositoryName>-<uuid4>` as in the original, stored with its event (I1)."""
    stored, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    assert stored.id.startswith("mycompany/frontend-")
    assert len(stored.id) == len("mycompany/frontend-") + 36
    assert abs(stored.created - time.time()) < 5
    assert any_store.artifact(stored.id) == stored
    assert event.status is EventStatus.NEW
    assert event.artifact_id == stored.id
    assert event.repository == "mycompany/frontend"
    assert event.triggered_by == "ci"


def test_artifacts_are_filtered_like_the_original(any_store: Store, fixtures_dir: Path) -> None:
    main, _ = any_store.create_artifact(
        make_artifact(fixtures_dir, branch="main", event="push", sha="1" * 40), triggered_by="ci"
    )
    feature, _ = any_store.create_artifact(
        make_artifact(fixtures_dir, branch="feature", event="pr", sha="2" * 40), triggered_by="ci"
    )
    ids = lambda **kw: [a.id for a in any_store.artifacts(ArtifactFilter(**kw))]  # noqa: E731
    assert set(ids()) == {main.id, feature.id}
    assert ids(branch="main") == [main.id]
    assert ids(event="pr") == [feature.id]
    assert set(ids(shas=["1" * 40, "2" * 40])) == {main.id, feature.id}
    assert ids(repository="other/repo") == []
    assert len(ids(limit=1)) == 1
    assert len(ids(limit=1, offset=1)) == 1
    future = datetime.now(UTC) + timedelta(hours=1)
    assert ids(since=future) == []
    assert set(ids(until=future)) == {main.id, feature.id}


def test_unknown_ids_are_not_found(any_store: Store) -> None:
    with pytest.raises(NotFound):
        any_store.artifact("nope")
    with pytest.raises(NotFound):
        any_store.event("nope")


def test_planning_twice_writes_once(any_store: Store, fixtures_dir: Path) -> None:
    """A redelivered policy task cannot plan a second set of writes (I2)."""
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    first = any_store.plan_event(event.id, writes=[planned("staging", "frontend")], failures=[])
    second = any_store.plan_event(event.id, writes=[planned("staging", "frontend")], failures=[])
    assert first == [("repo", "staging")]
    assert second == []
    assert len(any_store.unfinished_writes("repo", "staging")) == 1


def test_an_event_ends_when_its_last_write_ends(any_store: Store, fixtures_dir: Path) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(
        event.id,
        writes=[planned("staging", "frontend"), planned("prod", "frontend")],
        failures=[],
    )
    staging, prod = (any_store.unfinished_writes("repo", env)[0] for env in ("staging", "prod"))
    any_store.finish_writes([WriteReport(staging.id, "", "", ResultStatus.SUCCESS, "a" * 40)])
    assert any_store.event(event.id).status is EventStatus.NEW
    any_store.finish_writes([WriteReport(prod.id, "", "", ResultStatus.SUCCESS, "b" * 40)])
    done = any_store.event(event.id)
    assert done.status is EventStatus.PROCESSED
    assert [h.hash for h in done.gitops_hashes] == ["a" * 40, "b" * 40]
    assert any_store.last_applied_seq("repo", "staging", "frontend") is not None


def test_a_failed_environment_makes_the_event_an_error_naming_it(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(
        event.id,
        writes=[],
        failures=[FailedEnvironment("repo", "preview", "web", "variable BRANCH is not set")],
    )
    done = any_store.event(event.id)
    assert done.status is EventStatus.ERROR
    assert "preview/web: variable BRANCH is not set" in done.status_desc


def test_an_event_without_matching_policies_is_processed(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(event.id, writes=[], failures=[])
    assert any_store.event(event.id).status is EventStatus.PROCESSED


def test_stale_events_and_queues_are_found_for_the_sweep(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, waiting = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    _, planned_event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(planned_event.id, writes=[planned("staging", "x")], failures=[])
    later = time.time() + 60
    assert any_store.stale_events(older_than=later) == [waiting.id]
    assert any_store.stale_queues(older_than=later) == [("repo", "staging")]
    assert any_store.stale_events(older_than=time.time() - 60) == []
    # Handed out once per staleness period, not at every sweep.
    assert any_store.stale_events(older_than=time.time() - 1) == []
    assert any_store.stale_queues(older_than=time.time() - 1) == []
    assert any_store.has_unfinished_writes("repo", "staging")
    assert not any_store.has_unfinished_writes("repo", "prod")


def test_claiming_counts_attempts_and_skips_finished_events(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    claim = any_store.claim_event(event.id)
    assert claim is not None and claim.attempts == 1
    any_store.fail_event(event.id, "broken")
    assert any_store.claim_event(event.id) is None


def test_a_batch_of_events_is_claimed_in_one_go(any_store: Store, fixtures_dir: Path) -> None:
    _, first = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    _, done = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.fail_event(done.id, "broken")
    claims = any_store.claim_events([first.id, done.id])
    assert claims[done.id] is None
    claim = claims[first.id]
    assert claim is not None and claim.attempts == 1 and claim.artifact is not None
    with pytest.raises(NotFound, match="nope"):
        any_store.claim_events([first.id, "nope"])
    again = any_store.claim_event(first.id)
    assert again is not None and again.attempts == 2, "the failed claim counted nothing"


def test_a_batch_of_plans_is_recorded_whole_or_not_at_all(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, first = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    _, second = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    plans = [
        EventPlan(first.id, [planned("staging", "x")], []),
        EventPlan("nope", [planned("prod", "x")], []),
    ]
    with pytest.raises(NotFound, match="nope"):
        any_store.plan_events(plans)
    assert any_store.unfinished_writes("repo", "staging") == []
    plans[1] = EventPlan(
        second.id, [planned("prod", "x")], [FailedEnvironment("repo", "qa", "x", "no")]
    )
    assert any_store.plan_events(plans) == [("repo", "prod"), ("repo", "staging")]
    assert [w.event_id for w in any_store.unfinished_writes("repo", "prod")] == [second.id]
    assert any_store.plan_events(plans) == [], "planned once (I2)"


def test_the_admin_is_created_once_and_tokens_are_stored_hashed(any_store: Store) -> None:
    issued = any_store.ensure_admin(None)
    assert issued is not None
    assert any_store.ensure_admin(None) is None
    user = any_store.user_by_token(issued)
    assert user is not None and user.admin and user.login == "admin"
    assert any_store.user_by_token("wrong") is None
    with any_store.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT token_hash FROM users").scalar_one()
    assert issued not in stored


def test_a_configured_admin_token_replaces_the_old_one(any_store: Store) -> None:
    old = any_store.ensure_admin(None)
    assert any_store.ensure_admin("configured-token") is None
    assert any_store.user_by_token("configured-token") is not None
    assert old is not None and any_store.user_by_token(old) is None


def test_the_sweep_settles_a_planned_event_left_new(any_store: Store, fixtures_dir: Path) -> None:
    """An event whose writes all ended but whose own status was not updated still ends (I5)."""
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(event.id, writes=[planned("staging", "x")], failures=[])
    [write] = any_store.unfinished_writes("repo", "staging")
    with any_store.engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE gitops_writes SET status = 'success', commit_sha = 'abc' WHERE id = {write.id}"
        )
    assert any_store.event(event.id).status is EventStatus.NEW
    assert any_store.settle_events() == 1
    assert any_store.event(event.id).status is EventStatus.PROCESSED
    assert any_store.settle_events() == 0


def test_a_planned_event_is_not_failed_by_the_sweep(any_store: Store, fixtures_dir: Path) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(event.id, writes=[planned("staging", "x")], failures=[])
    any_store.fail_event(event.id, "gave up")
    assert any_store.event(event.id).status is EventStatus.NEW


@pytest.mark.parametrize(
    ("field", "value"),
    [("repositoryName", "r" * 600), ("branch", "b" * 600), ("sha", "s" * 200), ("tag", "a\x00b")],
)
def test_version_fields_that_cannot_be_stored_are_refused(
    fixtures_dir: Path, field: str, value: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        make_artifact(fixtures_dir, **{field: value})


def test_far_future_times_are_fine_on_every_backend(any_store: Store) -> None:
    far = datetime(2999, 1, 1, tzinfo=UTC)
    assert any_store.artifacts(ArtifactFilter(since=far)) == []


def test_writes_of_one_event_finishing_at_once_end_the_event(
    any_store: Store, fixtures_dir: Path
) -> None:
    """Two workers record the last two writes of an event at the same moment (I5)."""
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(10):
        _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
        any_store.plan_event(
            event.id,
            writes=[planned("staging", "x"), planned("prod", "x")],
            failures=[],
        )
        ids = [
            w.id for env in ("staging", "prod") for w in any_store.unfinished_writes("repo", env)
        ]
        with ThreadPoolExecutor(2) as pool:
            done = list(
                pool.map(
                    lambda i: any_store.finish_writes(
                        [WriteReport(i, "", "x", ResultStatus.SUCCESS)]
                    ),
                    ids,
                )
            )
        assert done == [{ids[0]}, {ids[1]}]
        assert any_store.event(event.id).status is EventStatus.PROCESSED


def test_an_outcome_is_recorded_once(any_store: Store, fixtures_dir: Path) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(event.id, writes=[planned("staging", "x")], failures=[])
    [write] = any_store.unfinished_writes("repo", "staging")
    first = WriteReport(write.id, "staging", "x", ResultStatus.SUCCESS, "c" * 40)
    again = WriteReport(write.id, "staging", "x", ResultStatus.UNCHANGED, "d" * 40)
    assert any_store.finish_writes([first]) == {write.id}
    assert any_store.finish_writes([again]) == set()
    assert any_store.event(event.id).gitops_hashes[0].hash == "c" * 40


def test_outcomes_recorded_together_apply_their_holds_in_queue_order(
    any_store: Store, fixtures_dir: Path
) -> None:
    """A push of three writes of one app: the first holds it, the second lifts, the third holds."""
    events = []
    for _ in range(3):
        _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
        any_store.plan_event(event.id, writes=[planned("staging", "x")], failures=[])
        events.append(event.id)
    first, second, third = any_store.unfinished_writes("repo", "staging")

    def hold(reason: str) -> Hold:
        return Hold(env="staging", app="x", reason=reason, placedBy="ann", created=1)

    reports = [
        WriteReport(first.id, "staging", "x", ResultStatus.SUCCESS, "a" * 40, hold=hold("one")),
        WriteReport(second.id, "staging", "x", ResultStatus.SUCCESS, "b" * 40, lift_hold=True),
        WriteReport(third.id, "staging", "x", ResultStatus.SUCCESS, "c" * 40, hold=hold("three")),
    ]
    assert any_store.finish_writes(reports) == {first.id, second.id, third.id}
    kept = any_store.hold("repo", "staging", "x")
    assert kept is not None and kept.reason == "three"
    assert any_store.finish_writes(reports[1:2]) == set(), "recorded once"
    assert any_store.hold("repo", "staging", "x") is not None, "an unrecorded lift lifts nothing"
    assert {any_store.event(e).status for e in events} == {EventStatus.PROCESSED}


def test_writes_are_started_all_or_none(any_store: Store, fixtures_dir: Path) -> None:
    """One of a push's writes finished by another worker: none is marked with this one's base."""
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(
        event.id, writes=[planned("staging", "x"), planned("staging", "y")], failures=[]
    )
    x, y = any_store.unfinished_writes("repo", "staging")
    any_store.finish_writes([WriteReport(y.id, "staging", "y", ResultStatus.SUCCESS, "a" * 40)])
    assert any_store.start_writes([x.id, y.id], base_sha="b" * 40) is False
    [still] = any_store.unfinished_writes("repo", "staging")
    assert still.id == x.id and still.status is ResultStatus.PENDING and still.base_sha == ""
    assert any_store.start_writes([x.id], base_sha="b" * 40) is True
    [started] = any_store.unfinished_writes("repo", "staging")
    assert started.status is ResultStatus.APPLYING and started.base_sha == "b" * 40
    assert any_store.start_writes([x.id], base_sha="c" * 40) is True
    [again] = any_store.unfinished_writes("repo", "staging")
    assert again.base_sha == "b" * 40, "the oldest head it may have been pushed onto"


def test_a_failed_event_is_not_planned_by_a_late_delivery(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.fail_event(event.id, "gave up")
    queues = any_store.plan_event(event.id, writes=[planned("staging", "x")], failures=[])
    assert queues == []
    assert any_store.unfinished_writes("repo", "staging") == []


def index_entry(commit: str, position: int, app: str = "web") -> IndexEntry:
    release = Release(app=app, env="prod", artifact_id=f"a-{position}", triggered_by="policy")
    return IndexEntry("prod", app, commit, position, WriteKind.RELEASE, release, created=position)


def test_the_release_index_is_recorded_once_and_moves_only_from_its_base(any_store: Store) -> None:
    first, second = "1" * 40, "2" * 40
    assert any_store.record_index(
        "repo", base=None, head=IndexHead(first, 1), entries=[index_entry(first, 1)]
    )
    entries = [index_entry(second, 2)]
    assert any_store.record_index(
        "repo", base=IndexHead(first, 1), head=IndexHead(second, 2), entries=entries
    )
    # A second reader that started from the same base records nothing twice and moves nothing.
    assert not any_store.record_index(
        "repo", base=IndexHead(first, 1), head=IndexHead(second, 2), entries=entries
    )
    assert any_store.index_head("repo") == IndexHead(second, 2)
    report = {"commit": second, "reported_at": 1.0}
    any_store.record_flux_statuses("repo", "prod", status="Progressing", desc="", **report)
    any_store.record_flux_statuses(
        "repo", "prod", status="ReconciliationSucceeded", desc="finished in 2s", **report
    )
    history = any_store.history(HistoryFilter(gitops_repo="repo", env="prod"))
    assert [(e.gitops_ref, e.flux_status) for e in history] == [
        (second, "ReconciliationSucceeded"),
        (first, None),
    ]
    assert history[0].to_json()["fluxStatusDesc"] == "finished in 2s"


def test_an_environment_is_locked_once(any_store: Store) -> None:
    any_store.lock_env("repo", "prod", reason="freeze", locked_by="alice")
    with pytest.raises(Conflict):
        any_store.lock_env("repo", "prod", reason="again", locked_by="bob")
    assert [lock.reason for lock in any_store.env_locks("repo")] == ["freeze"]
    assert any_store.unlock_env("repo", "prod") is not None
    assert any_store.env_lock("repo", "prod") is None


def test_processes_starting_at_once_create_one_admin(any_store: Store) -> None:
    """gunicorn's workers start together: the one that loses the race must still boot."""
    import threading

    results: list[str | None] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        results.append(any_store.ensure_admin("the-token"))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [None] * 4
    user = any_store.user_by_token("the-token")
    assert user is not None and user.admin


def test_a_delivery_is_sent_by_one_worker_at_a_time_and_not_before_its_delay(
    any_store: Store,
) -> None:
    event = any_store.create_event(EventType.RELEASE, request={}, triggered_by="jane")
    notice = Notice(kind=NoticeKind.FAILED, created=1, env="prod", app="web", event_id=event.id)
    failure = FailedEnvironment("repo", "prod", "web", "no chart")
    any_store.plan_event(event.id, writes=[], failures=[failure],
                         notices=[(notice, ["slack", "github"])])  # fmt: skip
    taken = any_store.start_delivery(notice.id, "slack", lease=30)
    assert taken is not None and (taken.notice, taken.attempts) == (notice, 1)
    # While one worker sends it, a second task for it (the sweep's) does nothing.
    assert any_store.start_delivery(notice.id, "slack", lease=30) is None
    any_store.defer_delivery(notice.id, "slack", until=time.time() + 60, problem="429")
    assert any_store.start_delivery(notice.id, "slack", lease=30) is None  # not due yet
    later = time.time() + 120
    assert any_store.stale_deliveries(older_than=later) == [(notice.id, "github")]
    any_store.defer_delivery(notice.id, "slack", until=0, problem="500")
    again = any_store.start_delivery(notice.id, "slack", lease=30)
    assert again is not None and again.attempts == 2
    any_store.finish_delivery(notice.id, "slack", DeliveryStatus.SENT, "sent in 2 attempts")
    assert any_store.start_delivery(notice.id, "slack", lease=30) is None
    [slack, github] = any_store.event(event.id).notifications
    assert (slack.target, slack.status, slack.attempts) == ("slack", DeliveryStatus.SENT, 2)
    assert (github.target, github.status, github.attempts) == ("github", "pending", 0)


def test_the_metrics_snapshot_names_every_queue_that_had_a_write(any_store: Store) -> None:
    """Found by skipping along the index, on both backends; an emptied queue reads 0."""
    for repo, env in (("b-repo", "prod"), ("a-repo", "staging"), ("a-repo", "prod")):
        event = any_store.create_event(EventType.DELETE, request={}, triggered_by="jane")
        release = Release(app="web", env=env, artifact_id="", triggered_by="jane")
        write = PlannedWrite(repo, env, "web", {}, release, kind=WriteKind.DELETE)
        any_store.plan_event(event.id, writes=[write], failures=[])
    done = any_store.unfinished_writes("a-repo", "staging")[0]
    any_store.finish_writes([WriteReport(done.id, done.env, done.app, ResultStatus.SUCCESS)])
    queues = any_store.metrics_snapshot(now=time.time() + 10).queues
    assert {key: count for key, (count, _) in queues.items()} == {
        ("a-repo", "prod"): 1,
        ("a-repo", "staging"): 0,
        ("b-repo", "prod"): 1,
    }
    assert queues[("a-repo", "staging")][1] == 0 and queues[("b-repo", "prod")][1] >= 10


def test_a_rebuild_of_the_release_index_and_a_reading_beside_it_do_not_deadlock(
    any_store: Store,
) -> None:
    """Found by review: a rebuild took the entries before the head, a reading the head first.

    The rebuild pauses after its first statement; on PostgreSQL the other reading (with a
    rollback, which marks the entry it reverts) then waits for it, and must not deadlock.
    """
    from sqlalchemy import event

    release = Release(app="a", env="e", artifact_id="x", triggered_by="t")
    first, base, after = "1" * 40, "2" * 40, "3" * 40
    entry = IndexEntry("e", "a", first, 1, WriteKind.RELEASE, release, 1)
    any_store.record_index("repo", base=None, head=IndexHead(base, 2), entries=[entry])
    other = Store(any_store.engine.url.render_as_string(hide_password=False))
    paused = threading.Event()

    def pause_after_the_first_delete(connection: object, cursor: object, sql: str,
                                     *args: object) -> None:  # fmt: skip
        if sql.startswith("DELETE") and not paused.is_set():
            paused.set()
            time.sleep(0.5)

    event.listen(any_store.engine, "after_cursor_execute", pause_after_the_first_delete)
    errors: list[Exception] = []

    def rebuild() -> None:
        try:
            any_store.record_index("repo", base=None, head=IndexHead(base, 2), entries=[entry])
        except Exception as exc:
            errors.append(exc)

    rebuilding = threading.Thread(target=rebuild)
    rebuilding.start()
    try:
        assert paused.wait(5)
        rollback = IndexEntry("e", "a", after, 3, WriteKind.ROLLBACK, release, 2, reverts=(first,))
        moved = other.record_index(
            "repo", base=IndexHead(base, 2), head=IndexHead(after, 3), entries=[rollback]
        )
    finally:
        rebuilding.join()
        event.remove(any_store.engine, "after_cursor_execute", pause_after_the_first_delete)
        other.close()
    assert errors == []
    # SQLite runs the reading after the rebuild; PostgreSQL finds the head it waited for
    # replaced, and leaves the commit to the next sync. Either way, all or nothing.
    rows = any_store.history(HistoryFilter("repo", "e", kinds=list(WriteKind)))
    if moved:
        assert any_store.index_head("repo") == IndexHead(after, 3)
        assert [(r.kind, r.rolled_back) for r in rows] == [
            (WriteKind.ROLLBACK, False),
            (WriteKind.RELEASE, True),
        ]
    else:
        assert any_store.index_head("repo") == IndexHead(base, 2)
        assert [(r.kind, r.rolled_back) for r in rows] == [(WriteKind.RELEASE, False)]


def test_a_push_is_indexed_with_its_record_only_where_the_index_stands(
    any_store: Store, fixtures_dir: Path
) -> None:
    _, event = any_store.create_artifact(make_artifact(fixtures_dir), triggered_by="ci")
    any_store.plan_event(event.id, writes=[planned("e", "a"), planned("e", "b")], failures=[])
    a, b = any_store.unfinished_writes("repo", "e")
    any_store.record_index("repo", base=None, head=IndexHead("", 0), entries=[])
    release = Release(app="a", env="e", artifact_id="x", triggered_by="t")

    def pushed(base: str, head: str, app: str) -> PushedCommits:
        entry = IndexEntry("e", app, head, 1, WriteKind.RELEASE, release, 1)
        return PushedCommits("repo", base, head, 1, [entry])

    report = WriteReport(a.id, "e", "a", ResultStatus.SUCCESS, "1" * 40)
    any_store.finish_writes([report], pushed=pushed("", "1" * 40, "a"))
    assert any_store.index_head("repo") == IndexHead("1" * 40, 1)
    elsewhere = WriteReport(b.id, "e", "b", ResultStatus.SUCCESS, "3" * 40)
    any_store.finish_writes([elsewhere], pushed=pushed("2" * 40, "3" * 40, "b"))
    assert any_store.index_head("repo") == IndexHead("1" * 40, 1), "not at its base: left"
    history = any_store.history(HistoryFilter("repo", "e", kinds=list(WriteKind)))
    assert [(row.app, row.gitops_ref) for row in history] == [("a", "1" * 40)]
    assert any_store.event(event.id).status is EventStatus.PROCESSED
