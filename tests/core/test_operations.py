"""Rollbacks, deletes, holds and environment locks through the writer, without Celery."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest

from gimletd.errors import GitOpsError, WriteDeferred
from gimletd.gitops.repository import GitopsRepository
from gimletd.history import sync_index
from gimletd.models import EventType, Hold, Release, ResultStatus, WriteKind
from gimletd.release import apply_queue, plan_operation
from gimletd.store import IndexHead, PlannedWrite, Store, WriteReport
from tests.conftest import migrated
from tests.core.test_release import (
    push_but_do_not_record,
    queue_release,
    retry_delays_pass,
    seed_artifact,
)
from tests.support import gitops

ENV, APP = "staging", "frontend"


@pytest.fixture
def repo(gitops_remote: Path, tmp_path: Path) -> GitopsRepository:
    return GitopsRepository(str(gitops_remote), cache_dir=tmp_path / "cache", clone_name="t")


def queue(
    store: Store,
    repo: GitopsRepository,
    fixtures_dir: Path,
    tag: str,
    *,
    by: str = "policy",
    artifact_id: str | None = None,
    forced: bool = False,
) -> tuple[str, str]:
    """Queue a release of a new artifact (or of `artifact_id`); returns (event, artifact)."""
    if artifact_id is None:
        stored, event = store.create_artifact(seed_artifact(fixtures_dir), triggered_by="ci")
        artifact_id = stored.id
    if by != "policy":
        event = store.create_event(
            EventType.RELEASE, request={"env": ENV}, triggered_by=by, artifact_id=artifact_id
        )
    release = Release(app=APP, env=ENV, artifact_id=artifact_id, triggered_by=by, event_id=event.id)
    files = {f"deployment-{APP}.yaml": f"tag: {tag}\n".encode()}
    write = PlannedWrite(repo.url, ENV, APP, files, release, forced=forced)
    store.plan_event(event.id, writes=[write], failures=[])
    return event.id, artifact_id


def queue_operation(
    store: Store, repo: GitopsRepository, kind: WriteKind, *, sha: str = "", by: str = "bob"
) -> str:
    """Accept a rollback or delete of ENV/APP as the API does, queued as it is stored."""
    event_type = EventType.ROLLBACK if kind is WriteKind.ROLLBACK else EventType.DELETE

    def planned(event_id: str) -> list[PlannedWrite]:
        return [plan_operation(
            kind, gitops_repo=repo.url, env=ENV, app=APP, event_id=event_id, triggered_by=by,
            now=time.time(), target_sha=sha,
        )]  # fmt: skip

    event = store.create_event(
        event_type, request={"env": ENV, "app": APP}, triggered_by=by, plan=planned
    )
    return event.id


def apply(store: Store, repo: GitopsRepository) -> list[ResultStatus]:
    result = apply_queue(store, repo, ENV, push_attempts=3, max_attempts=3)
    sync_index(store, repo, repo.known_head())
    return [r.status for r in result.reports]


def deployed_tag(remote: Path) -> str:
    return gitops.read(remote, f"{ENV}/{APP}/deployment-{APP}.yaml").strip()


def commit_of(store: Store, event_id: str) -> str:
    return store.event(event_id).results[0].hash


def held_by(store: Store, repo: GitopsRepository, event_id: str) -> Hold:
    """The hold on the app, which the write of `event_id` placed."""
    hold = store.hold(repo.url, ENV, APP)
    assert hold is not None, "the app is not held"
    assert hold.event_id == event_id, f"held by {hold.event_id}, not {event_id}"
    return hold


def test_a_rollback_restores_the_files_names_the_reverted_commits_and_holds_the_app(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    one, _ = queue(store, repo, fixtures_dir, "one")
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    two, _ = queue(store, repo, fixtures_dir, "two")
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    three, _ = queue(store, repo, fixtures_dir, "three")
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    target = commit_of(store, one)

    rollback = queue_operation(store, repo, WriteKind.ROLLBACK, sha=target)
    assert apply(store, repo) == [ResultStatus.SUCCESS]

    assert deployed_tag(gitops_remote) == "tag: one"
    [commit, *_] = gitops.commits(gitops_remote)
    assert commit.files == [f"{ENV}/{APP}/deployment-{APP}.yaml", f"{ENV}/{APP}/release.json",
                            f"{ENV}/release.json"]  # fmt: skip
    assert f"This reverts commit {commit_of(store, three)}." in commit.message
    assert f"This reverts commit {commit_of(store, two)}." in commit.message
    assert commit.trailers["Gimlet-Triggered-By"] == "bob"
    assert held_by(store, repo, rollback).commit == target
    # A policy deploy now waits behind the hold; lifting it lets the deploy through.
    four, _ = queue(store, repo, fixtures_dir, "four")
    assert apply(store, repo) == []
    assert deployed_tag(gitops_remote) == "tag: one"
    assert store.event(four).status.value == "new"
    store.lift_hold(repo.url, ENV, APP)
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    assert deployed_tag(gitops_remote) == "tag: four"


def test_rolling_back_to_what_runs_is_nothing_to_do(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    one, _ = queue(store, repo, fixtures_dir, "one")
    apply(store, repo)
    rollback = queue_operation(store, repo, WriteKind.ROLLBACK, sha=commit_of(store, one))
    assert apply(store, repo) == [ResultStatus.UNCHANGED]
    assert "nothing to do" in store.event(rollback).results[0].status_desc
    assert len(gitops.commits(gitops_remote)) == 1


def test_a_release_of_an_older_artifact_holds_the_app_and_a_newer_one_lifts_it(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    _, old = queue(store, repo, fixtures_dir, "old")
    apply(store, repo)
    _, new = queue(store, repo, fixtures_dir, "new")
    apply(store, repo)
    queue(store, repo, fixtures_dir, "old", by="alice", artifact_id=old)
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    hold = store.hold(repo.url, ENV, APP)
    assert hold is not None and "older than" in hold.reason and hold.placed_by == "alice"
    assert hold.commit == gitops.commits(gitops_remote)[0].sha
    queue(store, repo, fixtures_dir, "new", by="carol", artifact_id=new)
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    assert store.hold(repo.url, ENV, APP) is None
    assert deployed_tag(gitops_remote) == "tag: new"


def test_a_delete_removes_the_app_directory_in_one_commit(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    queue(store, repo, fixtures_dir, "one")
    apply(store, repo)
    deleted = queue_operation(store, repo, WriteKind.DELETE, by="dave")
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    [commit, _] = gitops.commits(gitops_remote)
    assert commit.message.startswith(f"[GimletD delete] {ENV}/{APP} deleted by dave")
    assert gitops.git(gitops_remote, "ls-tree", "-r", "--name-only", "main").split() == [
        f"{ENV}/release.json"
    ]
    assert store.live_releases(repo.url, ENV) == []
    again = queue_operation(store, repo, WriteKind.DELETE)
    assert apply(store, repo) == [ResultStatus.UNCHANGED]
    assert "nothing to delete" in store.event(again).results[0].status_desc
    assert store.event(deleted).status.value == "processed"


def test_a_locked_environment_keeps_writes_queued_except_forced_ones(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    store.lock_env(repo.url, ENV, reason="release freeze", locked_by="admin")
    queue(store, repo, fixtures_dir, "one")
    queue(store, repo, fixtures_dir, "two")
    assert apply(store, repo) == []
    assert not gitops.has_branch(gitops_remote)
    forced, _ = queue(store, repo, fixtures_dir, "hotfix", by="admin", forced=True)
    assert apply(store, repo) == [ResultStatus.SUCCESS]
    assert deployed_tag(gitops_remote) == "tag: hotfix"
    store.unlock_env(repo.url, ENV)
    # The policy deploys accepted before the forced release are older than it: superseded.
    assert apply(store, repo) == [ResultStatus.SUPERSEDED, ResultStatus.SUPERSEDED]
    assert deployed_tag(gitops_remote) == "tag: hotfix"
    assert json.loads(gitops.read(gitops_remote, f"{ENV}/{APP}/release.json"))["triggeredBy"] == (
        "admin"
    )
    assert store.event(forced).status.value == "processed"


def index_rows(store: Store) -> list[tuple[object, ...]]:
    with store.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.exec_driver_sql(
                "SELECT gitops_repo, env, app, commit_sha, position, kind, artifact_id, "
                "repository, triggered_by, event_id, created, rolled_back, release "
                "FROM releases ORDER BY position, env, app"
            )
        ]


def test_a_drain_indexes_its_own_pushes_as_a_reading_of_git_would(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, tmp_path: Path
) -> None:
    """The push's record moves the release index too; nothing is read back from git after."""
    sync_index(store, repo, repo.fetch())  # the index stands at the empty branch
    one, _ = queue(store, repo, fixtures_dir, "one")
    queue(store, repo, fixtures_dir, "two", by="alice")  # a person's release: not superseded
    drain = functools.partial(apply_queue, store, repo, ENV, push_attempts=3, max_attempts=3)
    assert [r.status for r in drain().reports] == [ResultStatus.SUCCESS] * 2
    queue_operation(store, repo, WriteKind.ROLLBACK, sha=commit_of(store, one))
    drain()
    store.lift_hold(repo.url, ENV, APP)
    queue_operation(store, repo, WriteKind.DELETE)
    drain()

    head = repo.known_head()
    assert head is not None and store.index_head(repo.url) == IndexHead(head, 4)
    assert sync_index(store, repo, head) == 0
    with migrated(Store(f"sqlite:///{tmp_path / 'from-git.db'}")) as from_git:
        assert sync_index(from_git, repo, head) == 4
        assert index_rows(store) == index_rows(from_git)
    kinds = [row[5] for row in index_rows(store)]
    assert kinds == ["release", "release", "rollback", "delete"]
    assert [row[11] for row in index_rows(store)] == [False, True, False, False], "two reverted"


def test_a_push_the_index_is_not_at_the_base_of_is_left_to_the_sync(
    store: Store, repo: GitopsRepository, fixtures_dir: Path
) -> None:
    """Never indexed: the drain's push does not start an index that would miss older commits."""
    queue(store, repo, fixtures_dir, "one")
    apply_queue(store, repo, ENV, push_attempts=3, max_attempts=3)
    assert store.index_head(repo.url) is None
    assert sync_index(store, repo, repo.known_head()) == 1


def apply_found(store: Store, repo: GitopsRepository, event_id: str, remote: Path) -> WriteReport:
    """Apply the queue again: the write's own commit is found (I2), not made twice."""
    [pushed, *_] = gitops.commits(remote)
    assert pushed.trailers["Gimlet-Event"] == event_id
    [report] = apply_queue(store, repo, ENV, push_attempts=3, max_attempts=3).reports
    assert (report.status, report.commit) == (ResultStatus.SUCCESS, pushed.sha)
    assert [c.sha for c in gitops.commits(remote)].count(pushed.sha) == 1
    assert commit_of(store, event_id) == pushed.sha
    return report


def release_one_and_two(
    store: Store, repo: GitopsRepository, fixtures_dir: Path
) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two policy deploys applied one after the other: (event, artifact) of each."""
    one = queue(store, repo, fixtures_dir, "one")
    apply(store, repo)
    two = queue(store, repo, fixtures_dir, "two")
    apply(store, repo)
    return one, two


def test_a_rollback_found_pushed_but_not_recorded_still_holds_its_app(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The worker pushed the rollback, then died before recording it.

    Recorded as a bare success, the next policy deploy would undo the rollback.
    """
    (one, _), (two, _) = release_one_and_two(store, repo, fixtures_dir)
    target = commit_of(store, one)
    rollback = queue_operation(store, repo, WriteKind.ROLLBACK, sha=target)
    push_but_do_not_record(store, repo, monkeypatch)
    pushed_at = int(gitops.git(gitops_remote, "log", "-1", "--format=%ct", "main"))

    report = apply_found(store, repo, rollback, gitops_remote)

    assert report.reverted == (commit_of(store, two),)
    hold = held_by(store, repo, rollback)
    assert hold.commit == target
    assert hold.created == pushed_at
    three, _ = queue(store, repo, fixtures_dir, "three")
    assert apply(store, repo) == [], "the policy deploy waits behind the hold"
    assert store.event(three).status.value == "new"
    assert deployed_tag(gitops_remote) == "tag: one"


def test_an_older_release_found_pushed_but_not_recorded_still_holds_its_app(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (_, older), _ = release_one_and_two(store, repo, fixtures_dir)
    release, _ = queue(store, repo, fixtures_dir, "one", by="bob", artifact_id=older)
    push_but_do_not_record(store, repo, monkeypatch)

    report = apply_found(store, repo, release, gitops_remote)

    assert held_by(store, repo, release).commit == report.commit
    queue(store, repo, fixtures_dir, "three")
    assert apply(store, repo) == [], "the policy deploy waits behind the hold"


def test_a_delete_found_pushed_but_not_recorded_still_lifts_the_hold(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (one, _), _ = release_one_and_two(store, repo, fixtures_dir)
    queue_operation(store, repo, WriteKind.ROLLBACK, sha=commit_of(store, one))
    apply(store, repo)
    assert store.hold(repo.url, ENV, APP) is not None
    delete = queue_operation(store, repo, WriteKind.DELETE)
    push_but_do_not_record(store, repo, monkeypatch)

    apply_found(store, repo, delete, gitops_remote)

    assert store.hold(repo.url, ENV, APP) is None


def use_up_attempts_but_one(store: Store, repo: GitopsRepository) -> None:
    """As if every write of the queue had failed all its attempts but the last."""
    for write in store.unfinished_writes(repo.url, ENV):
        for _ in range(2):  # `apply` gives a write 3
            store.count_write_attempt(write.id)


def test_a_rollback_pushed_by_its_last_attempt_is_found_not_given_up(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Its worker died between push and record on the last attempt: found, and it holds.

    Also for the policy deploy queued right behind it, in the same drain.
    """
    (one, _), _ = release_one_and_two(store, repo, fixtures_dir)
    rollback = queue_operation(store, repo, WriteKind.ROLLBACK, sha=commit_of(store, one))
    use_up_attempts_but_one(store, repo)
    push_but_do_not_record(store, repo, monkeypatch)
    three, _ = queue(store, repo, fixtures_dir, "three")

    apply_found(store, repo, rollback, gitops_remote)

    held_by(store, repo, rollback)
    assert store.event(three).status.value == "new", "the policy deploy waits behind the hold"
    assert deployed_tag(gitops_remote) == "tag: one"


def test_a_push_that_lands_and_then_fails_on_the_last_attempt_is_found_not_given_up(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The remote took the push and the connection broke before it said so."""
    (one, _), _ = release_one_and_two(store, repo, fixtures_dir)
    rollback = queue_operation(store, repo, WriteKind.ROLLBACK, sha=commit_of(store, one))
    use_up_attempts_but_one(store, repo)
    push = repo.push

    def lands_then_fails(commit: str, *, expected: str | None) -> None:
        push(commit, expected=expected)
        raise GitOpsError("git push: the remote end hung up unexpectedly")

    with monkeypatch.context() as patched:
        patched.setattr(repo, "push", lands_then_fails)
        with pytest.raises(WriteDeferred):
            apply(store, repo)
    assert store.event(rollback).status.value == "new", "not given up: it may have landed"
    retry_delays_pass(store)

    apply_found(store, repo, rollback, gitops_remote)

    held_by(store, repo, rollback)


def test_a_started_write_out_of_attempts_is_failed_when_the_remote_cannot_be_searched(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every event ends (I5): an unreachable remote cannot keep a write waiting forever.

    The remote is tried once for all the writes of a drain, not once per write.
    """
    event, _ = queue(store, repo, fixtures_dir, "one")
    queue_release(store, fixtures_dir, repo, "two", app="backend")  # pushed with it
    use_up_attempts_but_one(store, repo)
    fetches: list[str] = []

    def push_fails(*args: object, **kwargs: object) -> None:
        raise GitOpsError("git push: connection reset by peer")

    def fetch_fails(*args: object, **kwargs: object) -> None:
        fetches.append("fetch")
        raise GitOpsError("git fetch: could not read from remote repository")

    with monkeypatch.context() as patched:
        patched.setattr(repo, "push", push_fails)
        with pytest.raises(WriteDeferred):
            apply(store, repo)
        retry_delays_pass(store)
        patched.setattr(repo, "fetch", fetch_fails)
        assert apply(store, repo) == [ResultStatus.FAILURE, ResultStatus.FAILURE]
    assert fetches == ["fetch"]
    assert store.event(event).results[0].status_desc == (
        "gave up after 3 attempts: git push: connection reset by peer; whether its commit "
        "reached the remote could not be checked: git fetch: could not read from remote "
        "repository"
    )


def test_a_policy_deploy_behind_an_older_release_by_a_person_waits_for_its_hold(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """Queued together, the deploy must see the hold the release places, as in two drains."""
    (_, older), _ = release_one_and_two(store, repo, fixtures_dir)
    release, _ = queue(store, repo, fixtures_dir, "one", by="bob", artifact_id=older)
    deploy, _ = queue(store, repo, fixtures_dir, "three")

    assert apply(store, repo) == [ResultStatus.SUCCESS]

    assert deployed_tag(gitops_remote) == "tag: one"
    held_by(store, repo, release)
    assert store.event(deploy).status.value == "new"


def test_a_rollback_queued_as_it_is_accepted_goes_ahead_of_a_deploy_accepted_after_it(
    store: Store, repo: GitopsRepository, fixtures_dir: Path, gitops_remote: Path
) -> None:
    """As the API stores it: planned in the transaction that accepts it (I3)."""
    (one, _), _ = release_one_and_two(store, repo, fixtures_dir)
    rollback = queue_operation(store, repo, WriteKind.ROLLBACK, sha=commit_of(store, one))
    assert store.queues_of_event(rollback) == [(repo.url, ENV)]
    deploy, _ = queue(store, repo, fixtures_dir, "three")  # accepted after it

    assert apply(store, repo) == [ResultStatus.SUCCESS]

    assert deployed_tag(gitops_remote) == "tag: one"
    held_by(store, repo, rollback)
    assert store.event(deploy).status.value == "new", "the deploy waits behind the hold"
