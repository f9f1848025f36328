"""The release use cases against a real store and a bare remote, without Celery."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from gimletd.errors import StoreUnavailable, TemplateError, WriteDeferred
from gimletd.gitops.repository import GitopsRepository
from gimletd.models import Artifact, Manifest, Release, ResultStatus
from gimletd.release import Plan, Renderer, apply_queue, plan_artifact
from gimletd.store import PlannedWrite, Store, WriteReport
from tests.support import gitops


def seed_artifact(fixtures_dir: Path, **version: str) -> Artifact:
    data = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    data["version"].update(version)
    data["id"] = "mycompany/frontend-1"
    return Artifact.model_validate(data)


def fake_render(manifest: Manifest) -> dict[str, bytes]:
    """Stands in for Helm here: the files name what was asked for."""
    image = manifest.values.get("image", {})
    return {f"deployment-{manifest.app}.yaml": f"image: {image}\n".encode()}


def plan_policy_deploys(
    artifact: Artifact, render: Renderer = fake_render, gitops_repo: str = "repo"
) -> Plan:
    """`plan_artifact` as the artifact task calls it, with fixed ids and time."""
    return plan_artifact(
        artifact, event_id="e1", triggered_by="policy", gitops_repo_for=lambda env: gitops_repo,
        render=render, now=0,
    )  # fmt: skip


def test_only_environments_whose_policy_matches_are_planned(fixtures_dir: Path) -> None:
    plan = plan_policy_deploys(seed_artifact(fixtures_dir, branch="main", event="push"))
    assert [(w.env, w.app) for w in plan.writes] == [("staging", "frontend")]
    assert plan.failures == []
    assert plan.writes[0].release.artifact_id == "mycompany/frontend-1"
    assert (
        b"deae5dbaf237766240181fa397e923d3c5253112"
        in plan.writes[0].files["deployment-frontend.yaml"]
    )


def test_a_failing_environment_is_recorded_and_the_others_planned(fixtures_dir: Path) -> None:
    artifact = seed_artifact(fixtures_dir, branch="main", event="push")
    broken = artifact.environments[0].model_copy(
        update={"env": "production", "values": {"image": {"tag": "{{ .NOPE }}"}}}
    )
    artifact.environments.append(broken)
    plan = plan_policy_deploys(artifact)
    assert [w.env for w in plan.writes] == ["staging"]
    [failure] = plan.failures
    assert failure.env == "production"
    assert "NOPE" in failure.reason


def test_template_errors_surface_as_template_errors(fixtures_dir: Path) -> None:
    def failing(manifest: Manifest) -> dict[str, bytes]:
        raise TemplateError("boom")

    plan = plan_policy_deploys(
        seed_artifact(fixtures_dir, branch="main", event="push"), render=failing
    )
    assert plan.failures[0].reason == "boom"
    assert plan.retryable == []


@pytest.fixture
def repo(gitops_remote: Path, tmp_path: Path) -> GitopsRepository:
    return GitopsRepository(str(gitops_remote), cache_dir=tmp_path / "cache", clone_name="t")


def queue_release(
    store: Store,
    fixtures_dir: Path,
    repo: GitopsRepository,
    tag: str,
    env: str = "staging",
    app: str = "frontend",
) -> str:
    """Store an artifact event and plan one policy deploy of it; returns the event id."""
    stored, event = store.create_artifact(seed_artifact(fixtures_dir), triggered_by="ci")
    release = Release(
        app=app, env=env, artifact_id=stored.id, triggered_by="policy", event_id=event.id
    )
    files = {f"deployment-{app}.yaml": f"tag: {tag}\n".encode()}
    store.plan_event(
        event.id,
        writes=[PlannedWrite(repo.url, env, app, files, release)],
        failures=[],
    )
    return event.id


def apply(store: Store, repo: GitopsRepository, env: str = "staging") -> list[ResultStatus]:
    result = apply_queue(store, repo, env, push_attempts=3, max_attempts=3)
    return [r.status for r in result.reports]


def push_but_do_not_record(
    store: Store, repo: GitopsRepository, monkeypatch: pytest.MonkeyPatch, env: str = "staging"
) -> None:
    """Apply the queue as a worker that pushed and lost the database before recording."""

    def database_gone(*args: object, **kwargs: object) -> bool:
        raise StoreUnavailable("the database is unavailable: connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(store, "finish_writes", database_gone)
        with pytest.raises(StoreUnavailable):
            apply(store, repo, env)


def retry_delays_pass(store: Store) -> None:
    """As if every deferred write's retry delay were over."""
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE gitops_writes SET not_before = 0")


def test_writes_are_applied_in_acceptance_order(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    first = queue_release(store, fixtures_dir, repo, "one", app="frontend")
    second = queue_release(store, fixtures_dir, repo, "two", app="backend")
    assert apply(store, repo) == [ResultStatus.SUCCESS, ResultStatus.SUCCESS]
    history = gitops.commits(gitops_remote)
    assert [c.trailers["Gimlet-Event"] for c in history] == [second, first]
    assert gitops.read(gitops_remote, "staging/backend/deployment-backend.yaml") == "tag: two\n"
    assert store.event(first).status.value == "processed"


def test_a_policy_deploy_with_a_newer_one_queued_behind_it_is_superseded(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """A backlog of one app's policy deploys commits only the newest (its result says so)."""
    first = queue_release(store, fixtures_dir, repo, "one")
    second = queue_release(store, fixtures_dir, repo, "two")
    assert apply(store, repo) == [ResultStatus.SUPERSEDED, ResultStatus.SUCCESS]
    assert [c.trailers["Gimlet-Event"] for c in gitops.commits(gitops_remote)] == [second]
    assert gitops.read(gitops_remote, "staging/frontend/deployment-frontend.yaml") == "tag: two\n"
    assert "newer policy deploy" in store.event(first).results[0].status_desc


def test_an_older_release_planned_late_is_superseded(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """I3: a release accepted earlier never overwrites one accepted later and applied first."""
    stored, older_event = store.create_artifact(seed_artifact(fixtures_dir), triggered_by="ci")
    older = older_event.id
    newer = queue_release(store, fixtures_dir, repo, "newer")
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    release = Release(app="frontend", env="staging", artifact_id=stored.id, triggered_by="policy")
    store.plan_event(
        older,
        writes=[
            PlannedWrite(repo.url, "staging", "frontend", {"d.yaml": b"tag: older\n"}, release)
        ],
        failures=[],
    )
    assert apply(store, repo) == [ResultStatus.SUPERSEDED]
    assert gitops.read(gitops_remote, "staging/frontend/deployment-frontend.yaml") == "tag: newer\n"
    assert [c.trailers["Gimlet-Event"] for c in gitops.commits(gitops_remote)] == [newer]
    assert "applied to staging/frontend first" in store.event(older).results[0].status_desc


def test_a_redelivered_write_finds_its_commit_instead_of_writing_again(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """I2: the worker pushed, then died before recording it; the retry finds the commit."""
    event_id = queue_release(store, fixtures_dir, repo, "one")
    [write] = store.unfinished_writes(repo.url, "staging")
    head = repo.fetch()
    store.start_writes([write.id], base_sha=head or "")
    from gimletd.gitops import layout
    from gimletd.gitops.repository import AppChange

    trailers = layout.CommitTrailers(event_id, write.release.artifact_id, "policy", "staging",
                                     "frontend")  # fmt: skip
    pushed = repo.write(
        AppChange("staging", "frontend", layout.app_files(write.files, write.release), {}),
        layout.deploy_message("staging", "frontend", "policy", trailers),
        head=head,
    )
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    assert len(gitops.commits(gitops_remote)) == 1
    assert store.event(event_id).results[0].hash == pushed.commit


def test_releasing_what_is_live_makes_no_commit(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    stored, _ = store.create_artifact(seed_artifact(fixtures_dir), triggered_by="ci")
    files = {"deployment-frontend.yaml": b"tag: one\n"}
    outcomes = []
    for _ in range(2):
        _, again = store.create_artifact(seed_artifact(fixtures_dir), triggered_by="ci")
        release = Release(
            app="frontend", env="staging", artifact_id=stored.id, triggered_by="policy"
        )
        store.plan_event(
            again.id,
            writes=[PlannedWrite(repo.url, "staging", "frontend", files, release)],
            failures=[],
        )
        outcomes += apply(store, repo)
    assert outcomes == [ResultStatus.SUCCESS, ResultStatus.UNCHANGED]
    assert len(gitops.commits(gitops_remote)) == 1
    assert "already released" in store.event(again.id).results[0].status_desc


def test_an_unreachable_remote_is_retried_then_fails_the_write(
    store: Store,
    fixtures_dir: Path,
    gitops_remote: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = GitopsRepository(str(gitops_remote), cache_dir=tmp_path / "c", clone_name="t")
    event_id = queue_release(store, fixtures_dir, repo, "one")
    hidden = gitops_remote.with_name("moved.git")
    gitops_remote.rename(hidden)
    for _ in range(2):
        with pytest.raises(WriteDeferred, match=r"gitops\.git"):
            apply(store, repo)
        assert len(store.unfinished_writes(repo.url, "staging")) == 1
        assert store.stale_queues(older_than=time.time() + 60) == [], "deferred, not stale"
        # Drains that come before the delay is over (a new artifact, a redelivery) wait.
        with pytest.raises(WriteDeferred, match="waits for its retry"):
            apply(store, repo)
        retry_delays_pass(store)
    assert store.unfinished_writes(repo.url, "staging")[0].attempts == 2
    assert store.event(event_id).status.value == "new"
    assert apply(store, repo) == [ResultStatus.FAILURE]
    event = store.event(event_id)
    assert event.status.value == "error"
    assert "gitops.git" in event.status_desc
    # Each attempt is in the release's trail: its lines name the event, env and app.
    lines = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and getattr(r, "event_id", None) == event_id
    ]
    assert {(getattr(r, "env", None), getattr(r, "app", None)) for r in lines} == {
        ("staging", "frontend")
    }
    assert [
        next(part for part in ("retrying in 2s", "retrying in 4s", "out of attempts")
             if part in r.getMessage())
        for r in lines
    ] == ["retrying in 2s", "retrying in 4s", "out of attempts"]  # fmt: skip


def test_a_render_failure_names_the_resolved_app(fixtures_dir: Path) -> None:
    """The preview app is reported as `frontend-feature-x`, not as its template."""
    from gimletd.errors import ChartSourceError

    def unreachable(manifest: Manifest) -> dict[str, bytes]:
        raise ChartSourceError(f"{manifest.env}/{manifest.app}: chart source unreachable")

    artifact = seed_artifact(fixtures_dir, branch="feature/x", event="pr")
    artifact.context["BRANCH"] = "feature/x"
    plan = plan_policy_deploys(artifact, render=unreachable)
    [failure] = plan.failures
    assert (failure.env, failure.app) == ("preview", "frontend-feature-x")
    assert len(plan.retryable) == 1


def test_duplicate_environments_release_the_first_and_report_the_second(
    fixtures_dir: Path,
) -> None:
    artifact = seed_artifact(fixtures_dir, branch="main", event="push")
    artifact.environments.append(artifact.environments[0].model_copy())
    plan = plan_policy_deploys(artifact)
    assert [(w.env, w.app) for w in plan.writes] == [("staging", "frontend")]
    [failure] = plan.failures
    assert (failure.env, failure.app) == ("staging", "frontend#2")
    assert "resolve to staging/frontend" in failure.reason


def test_any_failure_of_a_write_counts_against_its_budget(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug or a full disk must not block the environment forever: the write ends failed."""
    event_id = queue_release(store, fixtures_dir, repo, "one")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repo, "push", broken)
    for _ in range(2):
        with pytest.raises(WriteDeferred, match="No space left"):
            apply(store, repo)
        retry_delays_pass(store)
    # A write queued meanwhile is pushed with it, and fails with it.
    later = queue_release(store, fixtures_dir, repo, "two", app="backend")
    with pytest.raises(WriteDeferred):  # the third failure uses up the first's attempts
        apply(store, repo)
    assert store.event(event_id).status.value == "new", "its push may have landed"
    retry_delays_pass(store)
    with pytest.raises(WriteDeferred):  # the next drain gives it up, not having found it
        apply(store, repo)
    assert store.event(event_id).status.value == "error"
    assert "gave up after 3 attempts: [Errno 28] No space left" in store.event(event_id).status_desc
    assert store.unfinished_writes(repo.url, "staging")[0].attempts == 2
    monkeypatch.undo()
    retry_delays_pass(store)
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    assert store.event(later).status.value == "processed"


def test_releases_queued_together_are_committed_one_by_one_and_pushed_once(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    events = [queue_release(store, fixtures_dir, repo, "v1", app=app) for app in ("a", "b", "c")]
    pushes = []
    push = repo.push
    monkeypatch.setattr(
        repo, "push", lambda commit, **kw: pushes.append(commit) or push(commit, **kw)
    )
    assert apply(store, repo) == [ResultStatus.SUCCESS] * 3
    history = gitops.commits(gitops_remote)
    assert len(pushes) == 1 and pushes[0] == history[0].sha
    assert [c.trailers["Gimlet-Event"] for c in history] == events[::-1]
    assert [store.event(e).results[0].hash for e in events] == [c.sha for c in history[::-1]]
    assert all(len({f.split("/")[1] for f in c.files if f.count("/") == 2}) == 1 for c in history)


def test_a_push_and_the_writes_it_supersedes_are_recorded_in_one_transaction(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """A drain pays a database commit to start its push and one to record it, not two a write."""
    from sqlalchemy import event

    superseded = [queue_release(store, fixtures_dir, repo, f"v{n}", app="a") for n in (1, 2)]
    pushed = [queue_release(store, fixtures_dir, repo, "v3", app=app) for app in ("a", "b", "c")]
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(store.engine, "commit", count)
    try:
        statuses = apply(store, repo)
    finally:
        event.remove(store.engine, "commit", count)
    assert statuses == [ResultStatus.SUPERSEDED] * 2 + [ResultStatus.SUCCESS] * 3
    assert len(commits) == 2, "start_writes and finish_writes, once each"
    assert [store.event(e).status.value for e in superseded + pushed] == ["processed"] * 5
    assert [c.trailers["Gimlet-Event"] for c in gitops.commits(gitops_remote)] == pushed[::-1]


def test_a_rejected_push_is_redone_on_the_new_head_without_touching_the_database(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The writes are started once, before the first fetch; nothing is written to the
    database between a fetch and its push, where it would give another writer time to win."""
    from sqlalchemy import event

    seed = gitops.commit_by_hand(gitops_remote, tmp_path / "other", {"x/y": "0\n"}, "seed")
    first = queue_release(store, fixtures_dir, repo, "one", app="a")
    second = queue_release(store, fixtures_dir, repo, "one", app="b")
    fetch, statements = repo.fetch, []
    races = iter([True, False])

    def fetch_then_another_writer_pushes() -> str | None:
        head = fetch()
        statements.append("fetch")
        if next(races):
            gitops.commit_by_hand(gitops_remote, tmp_path / "other", {"x/y": "z\n"}, "other")
        return head

    def write_statement(connection: object, cursor: object, sql: str, *args: object) -> None:
        if not sql.lstrip().upper().startswith("SELECT"):
            statements.append(sql.split()[0].upper())

    monkeypatch.setattr(repo, "fetch", fetch_then_another_writer_pushes)
    monkeypatch.setattr(repo, "push", lambda commit, push=repo.push, **kw: (
        statements.append("push"), push(commit, **kw))[-1])  # fmt: skip
    event.listen(store.engine, "before_cursor_execute", write_statement)
    try:
        assert apply(store, repo) == [ResultStatus.SUCCESS, ResultStatus.SUCCESS]
    finally:
        event.remove(store.engine, "before_cursor_execute", write_statement)
    assert statements.count("push") == 2, "rejected once, then pushed"
    first_fetch, last_push = statements.index("fetch"), len(statements) - 1
    while statements[last_push] != "push":
        last_push -= 1
    assert statements[:first_fetch] == ["UPDATE"], "started once, before the first fetch"
    assert set(statements[first_fetch:last_push]) == {"fetch", "push"}, "no write in between"
    history = gitops.commits(gitops_remote)
    assert [c.trailers.get("Gimlet-Event") for c in history] == [second, first, None, None]
    assert history[-1].sha == seed
    with store.engine.connect() as connection:
        bases = connection.exec_driver_sql("SELECT DISTINCT base_sha FROM gitops_writes").all()
    assert bases == [(seed,)], "the head before the first fetch, kept after the rejection"


def test_a_write_whose_attempt_pushed_nothing_can_still_be_superseded(
    store: Store, fixtures_dir: Path, gitops_remote: Path, tmp_path: Path
) -> None:
    """Found by review: after an outage the queue must not replay every deploy it holds.

    A write is marked started before the fetch; when the attempt fails before any push,
    it goes back to never started, so a newer policy deploy of its app supersedes it.
    """
    from gimletd.errors import GitOpsError

    gitops.commit_by_hand(gitops_remote, tmp_path / "hand", {"README.md": "hi\n"}, "seed")
    repo = GitopsRepository(str(gitops_remote), cache_dir=tmp_path / "c", clone_name="t")
    first = queue_release(store, fixtures_dir, repo, "one")

    def unreachable() -> str | None:
        raise GitOpsError("cannot fetch: the remote is unreachable")

    fetch, repo.fetch = repo.fetch, unreachable  # type: ignore[method-assign]
    with pytest.raises(WriteDeferred, match="unreachable"):
        apply(store, repo)
    repo.fetch = fetch  # type: ignore[method-assign]
    [deferred] = store.unfinished_writes(repo.url, "staging")
    assert (deferred.base_sha, deferred.attempts) == ("", 1)
    second = queue_release(store, fixtures_dir, repo, "two")
    retry_delays_pass(store)
    assert apply(store, repo) == [ResultStatus.SUPERSEDED, ResultStatus.SUCCESS]
    assert [c.trailers.get("Gimlet-Event") for c in gitops.commits(gitops_remote)] == [second, None]
    assert store.event(first).results[0].status is ResultStatus.SUPERSEDED


def test_a_push_whose_commits_cannot_be_read_back_is_recorded_all_the_same(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Found by review: the index entries are optional; the pushed outcome is not."""
    import gimletd.release

    event_id = queue_release(store, fixtures_dir, repo, "one")

    def broken(*args: object) -> list[object]:
        raise ValueError("a bug in reading back")

    monkeypatch.setattr(gimletd.release, "index_entries", broken)
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    [commit] = gitops.commits(gitops_remote)
    assert store.event(event_id).results[0].hash == commit.sha


def test_a_lost_lock_stops_the_queue_without_touching_the_write(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    from gimletd.errors import LockLost

    queue_release(store, fixtures_dir, repo, "one")

    def lost() -> None:
        raise LockLost("taken over")

    with pytest.raises(LockLost):
        apply_queue(store, repo, "staging", push_attempts=3, max_attempts=3, keep_alive=lost)
    [write] = store.unfinished_writes(repo.url, "staging")
    assert (write.status, write.attempts) == (ResultStatus.PENDING, 0)
    assert gitops.commits(gitops_remote) == []


def test_a_write_whose_workers_keep_dying_ends_failed(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """A write that kills its worker every time (say, out of memory) cannot loop forever (I5)."""
    event_id = queue_release(store, fixtures_dir, repo, "one")
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE gitops_writes SET status = 'applying', attempts = 2")
    assert apply(store, repo) == [ResultStatus.FAILURE]
    event = store.event(event_id)
    assert event.status.value == "error"
    assert "gave up after 3 attempts" in event.status_desc
    assert gitops.commits(gitops_remote) == []


def test_a_write_pushed_by_a_worker_whose_lock_expired_is_not_pushed_again(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """The first worker hung past the lock timeout; the second applied its write meanwhile."""
    first = queue_release(store, fixtures_dir, repo, "one")
    [write] = store.unfinished_writes(repo.url, "staging")
    store.start_writes([write.id], base_sha="")  # the hung worker had started on an empty remote
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    unchanged = WriteReport(write.id, write.env, write.app, ResultStatus.UNCHANGED)
    assert store.finish_writes([unchanged]) == set(), "outcome kept"
    assert store.start_writes([write.id], base_sha="") is False, "a finished write is not restarted"
    assert store.event(first).results[0].status is ResultStatus.SUCCESS
    assert len(gitops.commits(gitops_remote)) == 1


def test_a_write_pushed_on_an_empty_remote_but_not_recorded_is_not_superseded(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Found by the resilience suite: the database went away between the push and its record.

    The write had started on an empty remote, with no head to record as its base. With a
    newer deploy of its app queued behind it, it must still be found pushed (I2), not
    reported superseded while its commit is on the remote.
    """
    first = queue_release(store, fixtures_dir, repo, "one")
    push_but_do_not_record(store, repo, monkeypatch)
    [pushed] = gitops.commits(gitops_remote)
    second = queue_release(store, fixtures_dir, repo, "two")
    assert apply(store, repo) == [ResultStatus.SUCCESS, ResultStatus.SUCCESS]
    assert store.event(first).results[0].hash == pushed.sha
    assert [c.trailers["Gimlet-Event"] for c in gitops.commits(gitops_remote)] == [second, first]


def test_credentials_in_the_repository_url_never_reach_a_release_record(
    fixtures_dir: Path,
) -> None:
    plan = plan_policy_deploys(
        seed_artifact(fixtures_dir, branch="main", event="push"),
        gitops_repo="https://bot:s3cret@git.example.com/acme/gitops.git",
    )
    [write] = plan.writes
    assert write.gitops_repo == "https://bot:s3cret@git.example.com/acme/gitops.git"
    assert write.release.gitops_repo == "https://git.example.com/acme/gitops.git"
