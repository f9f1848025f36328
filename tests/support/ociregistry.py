"""A real OCI registry for chart tests: the distribution registry (Debian's docker-registry).

It listens on plain HTTP on a free loopback port, as an in-cluster registry without
TLS would; GimletD reaches it because the tests list it in CHART_PLAIN_HTTP_REGISTRIES.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.charts import ONECHART_DIR
from tests.support.ports import free_port, listening

REGISTRY_BINARIES = ("docker-registry", "registry")
#: Where ./dev test unpacks the registry when the system has none.
UNPACKED = Path(__file__).resolve().parents[2] / ".venv" / "registry" / "usr" / "bin"


@dataclass(frozen=True)
class OciRegistry:
    host: str  # host:port, as CHART_PLAIN_HTTP_REGISTRIES names it

    @property
    def charts(self) -> str:
        return f"oci://{self.host}/charts"


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A registry holding onechart 0.10.0 under `charts/`, pushed with Helm."""
    search = f"{UNPACKED}:{os.environ.get('PATH', '')}"
    binary = next((b for name in REGISTRY_BINARIES if (b := shutil.which(name, path=search))), None)
    if binary is None:
        pytest.skip("no OCI registry binary: ./dev test unpacks docker-registry on apt systems")
    import helm_python as helm

    work = tmp_path_factory.mktemp("oci")
    port = free_port()
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (work / "registry.log").open("wb")
    registry = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    if not listening(port, registry, timeout=15):
        pytest.fail(f"the OCI registry did not start: {(work / 'registry.log').read_text()}")
    host = f"127.0.0.1:{port}"
    archive = helm.package(str(ONECHART_DIR), destination=str(work))
    helm.push(archive, f"oci://{host}/charts", plain_http=True)
    yield OciRegistry(host)
    registry.terminate()
    registry.wait(timeout=10)
    log.close()
