"""Ingestion: artifacts the API accepts per second, and their latency, under gunicorn.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 16] [--api-workers 2]
                                     [--database-url URL] [--py-spy]

The API runs as production runs it (gunicorn, SQLite, a private redis-server to
enqueue to; no Celery worker, so only ingestion is measured). The load comes
from a separate process, `bench/ingest.py --generate`, that keeps
`--connections` requests in flight for `--seconds`, each a `POST /api/artifact`
of a distinct artifact, and times each request at the client. It also reports the
CPU time the API's processes spent per answered request (user + system, from
/proc), and the generator's own, since both share the machine's cores.

The baseline, measured in the same run on the same server, is `GET /health`:
the same gunicorn, HTTP parsing and Flask dispatch with no validation, no
database and no queue, so the ratio says what accepting an artifact costs on
top of serving any request at all. It is a measurement: nothing asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e import (  # beside this file
    ADMIN_TOKEN,
    Child,
    _answers,
    artifacts,
    free_port,
    group_cpu_seconds,
    percentile,
    prepare_database,
    raise_on_sigterm,
    start_redis,
)
from pydantic import SecretStr
from reporting import (
    print_profile,
    ratio,
    save_result,
    source_version,
    start_py_spy,
    stop_py_spy,
)

from gimletd.cli import gunicorn_command
from gimletd.settings import Settings

#: Where the API works on a push: its request threads, and the intake's writer thread that
#: stores and enqueues the pushes in batches (api/intake.py).
REQUEST_WORK = ("Flask.wsgi_app", "ArtifactIntake._write_until_closed")
#: Distinct artifacts the generator cycles through (each post is a new event anyway).
BODIES = 2000


def generate(url: str, path: str, seconds: float, connections: int, bodies: Path | None) -> None:
    """The load generator's process: print one JSON line of what it measured.

    One thread drives every connection through `selectors`, with each request's
    bytes encoded beforehand: the generator shares the machine's cores with the
    API, so the less CPU it takes per request, the less it skews what the API
    can do. (A thread per connection with `http.client` cost 0.7 to 1.3 ms per request.)
    """
    host, port = url.removeprefix("http://").split(":")
    payloads = json.loads(bodies.read_text()) if bodies else [None]
    requests = [_request_bytes(host, path, payload) for payload in payloads]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    selector = selectors.DefaultSelector()
    sent = 0
    cpu_before = time.process_time()  # not counting start-up and the encoding of requests
    start = time.perf_counter()
    deadline = start + seconds

    def send(client: _Client) -> None:
        nonlocal sent
        client.begin(requests[sent % len(requests)])
        sent += 1

    for _ in range(connections):
        client = _Client(socket.create_connection((host, int(port)), timeout=30))
        client.sock.setblocking(False)
        selector.register(client.sock, selectors.EVENT_READ, client)
        send(client)
    while selector.get_map():
        for key, _ in selector.select(timeout=30):
            client = key.data
            status = client.receive()
            if status is None:
                continue  # the answer is not complete yet
            latencies.append(time.perf_counter() - client.began)
            statuses[status] += 1
            if status == 0 or time.perf_counter() >= deadline:
                selector.unregister(client.sock)
                client.sock.close()
            else:
                send(client)
    elapsed = time.perf_counter() - start
    ok = statuses[201] + statuses[200]
    print(json.dumps({
        "path": path, "requests": sum(statuses.values()), "ok": ok,
        "statuses": {str(k): v for k, v in statuses.items()},
        "per_second": ok / elapsed, "generator_cpu_s": time.process_time() - cpu_before,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99), "max_ms": 1000 * max(latencies, default=0),
        "latencies_ms": sorted(round(1000 * x, 3) for x in sample(latencies, 2000)),
    }))  # fmt: skip


def _request_bytes(host: str, path: str, payload: Any) -> bytes:
    """An HTTP/1.1 request on a kept-alive connection: a POST of `payload`, or a GET."""
    head = f"{'GET' if payload is None else 'POST'} {path} HTTP/1.1\r\nHost: {host}\r\n" \
        f"Authorization: Bearer {ADMIN_TOKEN}\r\n"  # fmt: skip
    if payload is None:
        return (head + "\r\n").encode()
    body = json.dumps(payload).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _Client:
    """One connection of the generator: a request out, its answer read as it arrives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.began = 0.0
        self._received = b""

    def begin(self, request: bytes) -> None:
        self.began = time.perf_counter()
        self._received = b""
        self.sock.sendall(request)  # small enough for the socket's buffer

    def receive(self) -> int | None:
        """The answer's status once all of it has arrived, 0 when the server closed; else None."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            return 0
        if not chunk:
            return 0
        self._received += chunk
        head, separator, body = self._received.partition(b"\r\n\r\n")
        if not separator:
            return None
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is not None and len(body) < int(length.group(1)):
            return None
        return int(head.split(b" ", 2)[1])


def sample(values: list[float], count: int) -> list[float]:
    """About `count` values spread over `values`, for the latency plot."""
    return values[:: max(1, len(values) // count)]


def run_generator(
    url: str, path: str, options: argparse.Namespace, bodies: Path | None, api: Child | None = None
) -> Any:
    """Run the load generator; with `api`, also the CPU seconds the server used meanwhile."""
    command = [sys.executable, __file__, "--generate", url, "--path", path, "--seconds",
               str(options.seconds), "--connections", str(options.connections)]  # fmt: skip
    if bodies is not None:
        command += ["--bodies", str(bodies)]
    before = group_cpu_seconds(api.popen.pid) if api is not None else 0.0
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if api is not None:
        figures["server_cpu_s"] = group_cpu_seconds(api.popen.pid) - before
    return figures


def measure(options: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gimletd-ingest-"))
    try:
        (work / "logs").mkdir()
        with contextlib.ExitStack() as stack:
            redis_url, _ = start_redis(work, stack)
            database_url = SecretStr(options.database_url) if options.database_url else None
            settings = Settings(data_dir=work / "data", gitops_repo=str(work / "gitops.git"),
                                redis_url=redis_url, admin_token=ADMIN_TOKEN,
                                database_url=database_url)  # fmt: skip
            prepare_database(settings)
            port = free_port()
            command = gunicorn_command("127.0.0.1", port, workers=options.api_workers)
            api = Child("api", command, settings.environment(inherit=os.environ), work / "logs")
            stack.callback(api.stop)
            url = f"http://127.0.0.1:{port}"
            api.wait_until(lambda: _answers(f"{url}/health"), "answering")
            bodies = work / "bodies.json"
            made = artifacts(BODIES, 10, "http://127.0.0.1:1/charts")
            bodies.write_text(json.dumps(made))
            warm = argparse.Namespace(seconds=1.0, connections=options.connections)
            run_generator(url, "/api/artifact", warm, bodies)  # warm-up, not counted
            print(f"baseline: GET /health for {options.seconds:.0f}s", flush=True)
            baseline = run_generator(url, "/health", options, None, api)
            print(f"gimletd: POST /api/artifact for {options.seconds:.0f}s", flush=True)
            raw = work / "py-spy.txt"
            sampler = start_py_spy(api.popen.pid, raw) if options.py_spy else None
            gimletd = run_generator(url, "/api/artifact", options, bodies, api)
            if sampler is not None:
                gimletd["profile"] = stop_py_spy([(sampler, raw)], within=REQUEST_WORK)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"gimletd": gimletd, "baseline": baseline}


def report(options: argparse.Namespace, figures: dict[str, Any]) -> dict[str, Any]:
    gimletd, baseline = figures["gimletd"], figures["baseline"]
    print(f"\n{'run':<24} {'ok':>7} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'cpu ms/req':>11}  other")  # fmt: skip
    for name, run in (("POST /api/artifact", gimletd), ("GET /health (baseline)", baseline)):
        others = {k: v for k, v in run["statuses"].items() if k not in ("200", "201")}
        cpu = 1000 * run.get("server_cpu_s", float("nan")) / max(run["ok"], 1)
        print(f"{name:<24} {run['ok']:>7} {run['per_second']:>8.0f} {run['p50_ms']:>8.1f} "
              f"{run['p99_ms']:>8.1f} {run['max_ms']:>8.1f} {cpu:>11.2f}  "
              f"{others or ''}")  # fmt: skip
    print(
        "(cpu ms/req: the API's processes, user + system, per answered request; the "
        "generator's own: "
        f"{1000 * gimletd['generator_cpu_s'] / max(gimletd['requests'], 1):.2f} ms)"
    )
    if "profile" in gimletd:
        print_profile(gimletd["profile"], "POST /api/artifact")
    met = gimletd["per_second"] >= 1000 and gimletd["p99_ms"] < 50
    print(
        f"goal: >= 1000 artifacts/s with p99 < 50 ms: {'met' if met else 'NOT met'}; "
        f"artifacts/s against /health: {ratio(gimletd['per_second'], baseline['per_second']):.2f}x"
    )
    print(f"source: {source_version()}; machine: {os.cpu_count()} CPUs; gunicorn "
          f"--workers {options.api_workers}; {options.connections} connections from one "
          "generator process")  # fmt: skip
    return {"options": vars(options) | {"json": str(options.json)}, "source": source_version(),
            "cpus": os.cpu_count(), "goal_met": met, **figures}  # fmt: skip


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=16, help="requests in flight (16)")
    parser.add_argument(
        "--api-workers", type=int, default=2, help="gunicorn (gevent) worker processes (2)"
    )
    parser.add_argument(
        "--database-url",
        help="an empty database for GimletD (default: SQLite in a temporary directory)",
    )
    parser.add_argument(
        "--py-spy", action="store_true",
        help="sample the API with py-spy during the artifact run and print where its request "
        "and intake threads spend their time (needs root or ptrace_scope 0)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/api/artifact", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    if options.generate:
        generate(options.generate, options.path, options.seconds, options.connections,
                 options.bodies)  # fmt: skip
        return 0
    raise_on_sigterm()
    try:
        result = report(options, measure(options))
    except KeyboardInterrupt:
        return 130
    path = save_result("ingest", result, options.json)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
