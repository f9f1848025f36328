"""Real GimletD processes for end-to-end tests: Celery workers and beat on the test's settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gimletd.cli import gunicorn_command
from gimletd.settings import Settings
from tests.support.ports import free_port

READY_TIMEOUT = 60.0


class Process:
    """A child process whose output goes to a log file the test can read on failure."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log()[-4000:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def start_api(settings: Settings, log_dir: Path, *, workers: int = 2) -> tuple[Process, str]:
    """The API under gunicorn, as production runs it, on a free port; the process and its URL."""
    port = free_port()
    command = gunicorn_command("127.0.0.1", port, workers=workers)
    process = Process("api", command, settings.environment(inherit=os.environ), log_dir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    # One client for every try: making one costs about 45 ms of CPU (its CA certificates).
    with httpx.Client(timeout=2) as client:
        while True:
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            if process.popen.poll() is not None or time.monotonic() > deadline:
                process.stop()
                raise RuntimeError(f"the API did not start:\n{process.log()[-4000:]}")
            time.sleep(0.2)


def start_worker(
    settings: Settings,
    log_dir: Path,
    name: str,
    *,
    concurrency: int = 1,
    queues: str | None = None,
) -> Process:
    """A Celery worker; it serves every queue unless `queues` names some (`-Q`)."""
    command = [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "-n", f"{name}@%h", "--without-gossip",
        "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if queues is not None:
        command += ["-Q", queues]
    process = Process(name, command, settings.environment(inherit=os.environ), log_dir)
    process.wait_for(" ready.")
    return process


def start_beat(settings: Settings, log_dir: Path) -> Process:
    schedule = log_dir / "celerybeat-schedule"
    command = [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
               "-s", str(schedule), "--max-interval", "1"]  # fmt: skip
    process = Process("beat", command, settings.environment(inherit=os.environ), log_dir)
    process.wait_for("beat: Starting")
    return process


@pytest.fixture
def start_workers(
    tmp_path: Path,
) -> Iterator[Callable[..., list[Process]]]:
    """Start `count` worker processes (and beat, when asked) on the given settings."""
    started: list[Process] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)

    def start(
        settings: Settings, count: int = 1, *, beat: bool = False, queues: str | None = None
    ) -> list[Process]:
        processes = [
            start_worker(settings, log_dir, f"w{len(started) + i}", queues=queues)
            for i in range(count)
        ]
        if beat:
            processes.append(start_beat(settings, log_dir))
        started.extend(processes)
        return processes

    yield start
    for process in started:
        process.stop()
