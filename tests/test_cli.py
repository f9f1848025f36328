"""`gimletd up`, the README's first command, as a user runs it: all processes, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gimletd.settings import without_settings
from tests.support.processes import free_port

STARTUP_TIMEOUT = 90.0


def wait_for_line(output: Path, pattern: str, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        found = re.search(pattern, output.read_text(errors="replace"))
        if found:
            return found
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"gimletd up did not print {pattern!r}:\n{output.read_text()[-3000:]}")
        time.sleep(0.2)


def test_up_runs_everything_and_processes_the_seed_artifacts(
    tmp_path: Path, redis_url: str, fixtures_dir: Path
) -> None:
    port = free_port()
    env = without_settings(os.environ)
    env.update(GIMLETD_DATA_DIR=str(tmp_path / "data"), PORT=str(port), REDIS_URL=redis_url)
    output = tmp_path / "up.log"
    with output.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "gimletd.cli", "up"], env=env, stdout=log, stderr=log
        )
    try:
        token = wait_for_line(output, r"Admin token:\s+(\S+)", up).group(1)
        assert "curl" in output.read_text()
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            events = {}
            for name in ("seed-artifact.json", "seed-artifact-restored.json"):
                body = json.loads((fixtures_dir / name).read_text())
                response = client.post("/api/artifact", json=body)
                assert response.status_code == 201, response.text
                events[name] = response.json()["eventId"]
            final = {name: wait(client, event_id) for name, event_id in events.items()}
        # The brief's artifact has no deploy policy: nothing to release.
        assert final["seed-artifact.json"]["status"] == "processed"
        # The restored one is a pull request for the preview environment, whose chart
        # repository is on the internet, out of reach here: a clear error naming it.
        restored = final["seed-artifact-restored.json"]
        assert restored["status"] == "error"
        assert "preview/frontend-new-feature" in restored["statusDesc"]
        assert "https://chart.onechart.dev" in restored["statusDesc"]
        assert (tmp_path / "data" / "gitops.git" / "HEAD").exists()
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the API stopped with gimletd up"
    # gunicorn's access lines are JSON objects like every other log line.
    pushes = [line for line in output.read_text().splitlines() if "POST /api/artifact" in line]
    assert len(pushes) == 2
    assert {json.loads(line)["logger"] for line in pushes} == {"gunicorn.access"}


def wait(client: httpx.Client, event_id: str) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while True:
        event: dict[str, str] = client.get("/api/event", params={"id": event_id}).json()
        if event["status"] != "new" or time.monotonic() > deadline:
            return event
        time.sleep(0.3)
