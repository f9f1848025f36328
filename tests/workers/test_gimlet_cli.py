"""The `gimlet` command against a live API (a real HTTP server) and a real worker.

create → add → push --wait lands a commit in the bare GitOps remote; release
list shows it; rollback and delete go through the command line too; `-o json`
parses; a wrong token and an unreachable server give exit code 1 and one line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result
from flask import Flask
from pytest_httpserver import HTTPServer
from werkzeug.serving import make_server
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from gimlet.main import main
from gimletd.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support import gitops
from tests.support.processes import Process

StartWorkers = Callable[..., list[Process]]
SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
#: CI markers removed, so the commands see no CI wherever the suite runs.
NO_CI = dict.fromkeys(("GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "DRONE", "JENKINS_URL"))


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The API on a real HTTP server on a free port, as the command line reaches it."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()


@pytest.fixture
def gimlet(server: str) -> Callable[..., Result]:
    runner = CliRunner(env={"GIMLET_SERVER": server, "GIMLET_TOKEN": ADMIN_TOKEN, **NO_CI})

    def run(*arguments: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, list(arguments), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def worker(settings: Settings, start_workers: StartWorkers) -> Process:
    [started] = start_workers(settings)
    return started


@pytest.mark.slow
def test_ci_steps_then_people_steps(
    gimlet: Callable[..., Result],
    artifact: dict[str, Any],
    worker: Process,
    gitops_remote: Path,
    tmp_path: Path,
) -> None:
    file = tmp_path / "artifact.json"
    created = gimlet(
        "artifact", "create", "--repository", "mycompany/frontend", "--sha", SHA,
        "--branch", "main", "--event", "push", "--authorName", "Laszlo Fogas",
        "--message", "Add the checkout page", "-o", str(file),
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    staging = next(e for e in artifact["environments"] if e["env"] == "staging")
    env_file = tmp_path / ".gimlet" / "staging.yaml"
    env_file.parent.mkdir()
    env_file.write_text(yaml.safe_dump(staging))
    vars_file = tmp_path / "vars.env"
    vars_file.write_text("# from the build\nexport IMAGE_TAG=abc123\n")
    context = {k: v for k, v in artifact["context"].items()}
    added = gimlet(
        "artifact", "add", "-f", str(file), "--envFile", str(env_file),
        "--field", "name=image", "--field", "url=registry/frontend:abc123",
        "--varsFile", str(vars_file), *[f"--var={k}={v}" for k, v in context.items()],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    built = json.loads(file.read_text())
    assert built["items"] == [{"name": "image", "url": "registry/frontend:abc123"}]
    assert built["context"]["IMAGE_TAG"] == "abc123"
    assert [e["env"] for e in built["environments"]] == ["staging"]

    pushed = gimlet("artifact", "push", "-f", str(file), "--wait", "-o", "json")
    assert pushed.exit_code == 0, pushed.output + worker.log()[-2000:]
    artifact_id, event_json = pushed.output.split("\n", 1)
    event = json.loads(event_json)
    assert event["status"] == "processed" and event["results"][0]["status"] == "success"
    commit = event["results"][0]["hash"]
    assert gitops.commits(gitops_remote)[0].sha == commit

    listed = gimlet("release", "list", "--env", "staging", "-o", "json")
    assert listed.exit_code == 0
    assert [(r["artifactId"], r["gitopsRef"]) for r in json.loads(listed.output)] == [
        (artifact_id, commit)
    ]
    table = gimlet("release", "status", "--env", "staging")
    assert "frontend" in table.output and artifact_id[:20] in table.output

    # A second release, then back to the first, then gone.
    second = gimlet("release", "make", "--env", "staging", "--artifact", artifact_id, "--wait")
    assert second.exit_code == 0, second.output
    assert "processed" in second.output  # already released: unchanged, still a success
    back = gimlet("release", "rollback", "--env", "staging", "--app", "frontend",
                  "--to", commit, "--wait", "-o", "json")  # fmt: skip
    assert back.exit_code == 0, back.output
    assert json.loads(back.output)["results"][0]["status"] in ("success", "unchanged")
    gone = gimlet("release", "delete", "--env", "staging", "--app", "frontend", "--wait")
    assert gone.exit_code == 0, gone.output
    assert gitops.commits(gitops_remote)[0].message.startswith("[GimletD delete] staging/frontend")
    tracked = gimlet("artifact", "track", artifact_id, "-o", "json")
    assert tracked.exit_code == 0 and json.loads(tracked.output)["status"] == "processed"


def test_a_wrong_token_and_an_unreachable_server_are_one_line_and_exit_1(
    gimlet: Callable[..., Result],
) -> None:
    refused = gimlet("release", "list", "--env", "staging", env={"GIMLET_TOKEN": "wrong"})
    assert refused.exit_code == 1
    assert "401: the token is not valid" in refused.output
    down = gimlet("artifact", "list", env={"GIMLET_SERVER": "http://127.0.0.1:9"})
    assert down.exit_code == 1
    assert "could not reach http://127.0.0.1:9" in down.output
    missing = gimlet("artifact", "push", "-f", "/nonexistent.json")
    assert missing.exit_code == 2


def test_locks_and_holds_from_the_command_line(gimlet: Callable[..., Result]) -> None:
    locked = gimlet("env", "lock", "--env", "production", "--reason", "release freeze")
    assert locked.exit_code == 0 and "locked production" in locked.output
    again = gimlet("env", "lock", "--env", "production", "--reason", "x")
    assert again.exit_code == 1 and "409" in again.output
    assert gimlet("env", "unlock", "--env", "production").exit_code == 0
    holds = gimlet("hold", "list", "-o", "json")
    assert holds.exit_code == 0 and json.loads(holds.output) == []
    assert gimlet("hold", "release", "--env", "production", "--app", "web").exit_code == 1


def test_an_environment_config_renders_locally(
    gimlet: Callable[..., Result], artifact: dict[str, Any], tmp_path: Path
) -> None:
    staging = next(e for e in artifact["environments"] if e["env"] == "staging")
    config = tmp_path / "staging.yaml"
    config.write_text(yaml.safe_dump(staging))
    artifact_file = tmp_path / "artifact.json"
    artifact_file.write_text(json.dumps(artifact))
    rendered = gimlet("manifest", "template", "-f", str(config), "--artifact", str(artifact_file))
    assert rendered.exit_code == 0, rendered.output
    documents = [d for d in yaml.safe_load_all(rendered.output) if d]
    assert documents and all("kind" in d for d in documents)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**staging, "app": "{{ .MISSING }}"}))
    failed = gimlet("manifest", "template", "-f", str(broken))
    assert failed.exit_code == 1 and "MISSING" in failed.output


class LossyFront:
    """A proxy before the API that passes each push on but answers some as the network might.

    `failures` lists, in order, what the client gets instead of the API's answer
    to its first pushes (the API has stored them all the same): a status.
    """

    def __init__(self, api: str, failures: list[int]) -> None:
        self.api = api
        self.failures = failures
        self.keys: list[str | None] = []

    def __call__(self, request: WerkzeugRequest) -> WerkzeugResponse:
        self.keys.append(request.headers.get("Idempotency-Key"))
        answer = httpx.post(
            f"{self.api}/api/artifact",
            content=request.get_data(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        if self.failures:
            status = self.failures.pop(0)
            headers = {"Retry-After": "0", "Content-Type": "application/json"}
            return WerkzeugResponse('{"message": "unavailable"}', status, headers)
        return WerkzeugResponse(answer.content, answer.status_code,
                                {"Content-Type": "application/json"})  # fmt: skip


def test_a_push_whose_answer_was_lost_is_retried_and_stored_once(
    gimlet: Callable[..., Result],
    server: str,
    httpserver: HTTPServer,
    artifact: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The API stored the push each time, but the client saw a 503 and then a 502:
    the third try, with the same key, answers the first push."""
    front = LossyFront(server, failures=[503, 502])
    httpserver.expect_request("/api/artifact", method="POST").respond_with_handler(front)
    file = tmp_path / "artifact.json"
    file.write_text(json.dumps(artifact))
    pushed = gimlet(
        "artifact", "push", "-f", str(file), env={"GIMLET_SERVER": httpserver.url_for("")}
    )
    assert pushed.exit_code == 0, pushed.output
    listed = json.loads(gimlet("artifact", "list", "-o", "json").output)
    assert [a["id"] for a in listed] == [pushed.output.strip()]
    assert len(front.keys) == 3 and front.keys[0] and len(set(front.keys)) == 1


def test_a_refused_push_is_not_retried_and_a_busy_server_only_so_often(
    gimlet: Callable[..., Result],
    server: str,
    httpserver: HTTPServer,
    artifact: dict[str, Any],
    tmp_path: Path,
) -> None:
    file = tmp_path / "artifact.json"
    file.write_text(json.dumps({**artifact, "environments": [{"env": "../etc", "app": "x"}]}))
    refused_front = LossyFront(server, failures=[])
    httpserver.expect_request("/api/artifact", method="POST").respond_with_handler(refused_front)
    front_url = {"GIMLET_SERVER": httpserver.url_for("")}
    refused = gimlet("artifact", "push", "-f", str(file), env=front_url)
    assert refused.exit_code == 1 and "422" in refused.output
    assert len(refused_front.keys) == 1
    httpserver.clear()
    file.write_text(json.dumps(artifact))
    busy_front = LossyFront(server, failures=[503] * 10)
    httpserver.expect_request("/api/artifact", method="POST").respond_with_handler(busy_front)
    busy = gimlet("artifact", "push", "-f", str(file), "--attempts", "3", env=front_url)
    assert busy.exit_code == 1 and "503" in busy.output
    assert len(busy_front.keys) == 3
