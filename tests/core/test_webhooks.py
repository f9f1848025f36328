"""GitHub deliveries read as cleanup reports, and their signatures, with the real payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gimletd.models import CleanupEvent
from gimletd.webhooks import CleanupReport, Ignored, github_cleanup_report, signature_matches


def payload(fixtures_dir: Path, name: str) -> Any:
    return json.loads((fixtures_dir / "payloads" / "github" / name).read_text())


def test_the_documented_test_vector_verifies(fixtures_dir: Path) -> None:
    vector = payload(fixtures_dir, "signature-test-vector.json")
    secret, body = vector["secret"].encode(), vector["payload"].encode()
    assert signature_matches(secret, body, vector["X-Hub-Signature-256"])
    assert signature_matches(
        secret, body, vector["X-Hub-Signature-256"].upper().replace("SHA", "sha")
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "md5=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",
        "sha256=",
        "sha256=ünïcode",
    ],
)
def test_forged_and_malformed_signatures_do_not_verify(
    fixtures_dir: Path, header: str | None
) -> None:
    vector = payload(fixtures_dir, "signature-test-vector.json")
    assert not signature_matches(vector["secret"].encode(), vector["payload"].encode(), header)


def test_a_signature_over_other_bytes_does_not_verify() -> None:
    body = b'{"ref": "main"}'
    signature = "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert signature_matches(b"secret", body, signature)
    assert not signature_matches(b"secret", body + b" ", signature)
    assert not signature_matches(b"other", body, signature)


def test_a_deleted_branch_is_a_branch_deleted_report(fixtures_dir: Path) -> None:
    report = github_cleanup_report(
        "delete", payload(fixtures_dir, "delete-branch.json"), delivery="d1"
    )
    assert report == CleanupReport(
        CleanupEvent.BRANCH_DELETED,
        "Codertocat/Hello-World",
        "changes",
        "github:Codertocat",
        {
            "repository": "Codertocat/Hello-World",
            "branch": "changes",
            "source": "github",
            "delivery": "d1",
            "sender": "Codertocat",
        },
    )


@pytest.mark.parametrize(
    ("name", "merged"),
    [("pull_request-closed.json", False), ("pull_request-closed-merged.json", True)],
)
def test_a_closed_pull_request_is_a_pr_closed_report_merged_or_not(
    fixtures_dir: Path, name: str, merged: bool
) -> None:
    report = github_cleanup_report("pull_request", payload(fixtures_dir, name))
    assert isinstance(report, CleanupReport)
    assert (report.kind, report.repository, report.branch) == (
        CleanupEvent.PR_CLOSED, "Codertocat/Hello-World", "changes",
    )  # fmt: skip
    assert report.detail["merged"] is merged
    assert report.detail["number"] == 2


def test_a_pull_request_from_a_fork_is_ignored(fixtures_dir: Path) -> None:
    """Anyone may open one, naming its branch after one of this repository's previews."""
    closed = payload(fixtures_dir, "pull_request-closed.json")
    closed["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    report = github_cleanup_report("pull_request", closed)
    assert isinstance(report, Ignored)
    assert "from a fork" in report.reason
    closed["pull_request"]["head"]["repo"] = None  # the fork was deleted since
    assert isinstance(github_cleanup_report("pull_request", closed), Ignored)


@pytest.mark.parametrize(
    ("event", "name", "why"),
    [
        ("delete", "delete-tag.json", "tag"),
        ("push", "push-ref-deleted.json", "delete event"),
        ("push", "push.json", "CI sends artifacts"),
        ("issues", "push.json", "issues event is not acted on"),
    ],
)
def test_other_deliveries_are_ignored_with_a_reason(
    fixtures_dir: Path, event: str, name: str, why: str
) -> None:
    report = github_cleanup_report(event, payload(fixtures_dir, name))
    assert isinstance(report, Ignored)
    assert why in report.reason


def test_a_pull_request_not_closed_is_ignored(fixtures_dir: Path) -> None:
    opened = payload(fixtures_dir, "pull_request-closed.json") | {"action": "opened"}
    report = github_cleanup_report("pull_request", opened)
    assert report == Ignored("pull_request opened: only closed pull requests are acted on")


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"ref_type": "branch"},
        {"ref": 7, "ref_type": "branch", "repository": {"full_name": "a/b"}},
        {"ref": "x\x00", "ref_type": "branch", "repository": {"full_name": "a/b"}},
        {"ref": "x", "ref_type": "branch", "repository": {"full_name": "a" * 600}},
    ],
)
def test_a_delete_without_the_fields_it_needs_is_refused(broken: Any) -> None:
    with pytest.raises(ValidationError):
        github_cleanup_report("delete", broken)
