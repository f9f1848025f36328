"""A smart-HTTP git remote that wants a token, as GitHub does: `git http-backend` behind a server.

The server answers 401 with a Basic challenge unless the request carries user
`x-access-token` and the test's token, then hands the request to git's own CGI
program, which runs upload-pack and receive-pack with their usual checks.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gimletd.gitops.repository import init_bare
from tests.support.gitdaemon import Remote

TOKEN = "test-gitops-token"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def _handler(root: Path) -> type[BaseHTTPRequestHandler]:
    class GitHandler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            """Quiet: the test reads the repository, not the access log."""

        def _authorized(self) -> bool:
            expected = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
            return self.headers.get("Authorization", "") == f"Basic {expected}"

        def _body(self) -> bytes:
            """The request body, also when libgit2 streams a push in chunks."""
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        def _serve(self) -> None:
            if not self._authorized():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="gitops"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self._body()
            env = {
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": "x-access-token",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            result = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return GitHandler


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[Remote]:
    """A bare repository served over smart HTTP that requires TOKEN."""
    root = tmp_path / "http-served"
    bare = root / "gitops.git"
    init_bare(bare)
    subprocess.run(
        ["git", "--git-dir", str(bare), "config", "http.receivepack", "true"], check=True
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Remote(f"http://127.0.0.1:{server.server_address[1]}/gitops.git", bare, TOKEN)
    server.shutdown()
    server.server_close()
