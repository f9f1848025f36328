"""The layers stay apart: the core imports neither Flask nor Celery, api and workers never meet."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PURE_MODULES = [
    "gimletd/durations.py",
    "gimletd/models.py",
    "gimletd/policy.py",
    "gimletd/templating.py",
    "gimletd/variables.py",
    "gimletd/webhooks.py",
    "gimletd/yamlsafe.py",
    "gimletd/gitops/layout.py",
]
IO_MODULES = ("gimletd.store", "gimletd.gitops.repository", "gimletd.charts", "gimletd.release")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imports_of(package: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): imported_modules(path)
        for path in (ROOT / package).rglob("*.py")
    }


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def test_the_core_imports_neither_flask_nor_celery_nor_the_edges() -> None:
    for path, modules in imports_of("gimletd").items():
        forbidden = top_level(modules) & {"flask", "celery", "kombu", "api", "workers"}
        assert not forbidden, f"{path} imports {forbidden}"


def test_api_and_workers_never_import_each_other() -> None:
    for path, modules in imports_of("api").items():
        assert "workers" not in top_level(modules), path
    for path, modules in imports_of("workers").items():
        assert "api" not in top_level(modules), path
        assert "flask" not in top_level(modules), path


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module: str) -> None:
    modules = imported_modules(ROOT / module)
    assert not {m for m in modules if m.startswith(IO_MODULES)}, module
    assert not top_level(modules) & {"pygit2", "sqlalchemy", "httpx", "redis", "helm_python"}


def test_every_task_the_api_sends_is_registered_by_the_workers_and_routed_to_them() -> None:
    from api.enqueue import TASK_NAMES, Enqueuer
    from workers.celery import RELEASE_QUEUE, app

    app.loader.import_default_modules()
    sent_by_api = Enqueuer("redis://127.0.0.1:1/0")._celery.amqp.router
    assert TASK_NAMES
    for name in TASK_NAMES:
        assert name in app.tasks, name
        assert sent_by_api.route({}, name)["queue"].name == RELEASE_QUEUE, name
        assert app.amqp.router.route({}, name)["queue"].name == RELEASE_QUEUE, name
    notify = app.amqp.router.route({}, "gimletd.notify.deliver")["queue"].name
    assert notify == "notifications"


def test_compose_file_parses_and_has_every_service_the_readme_lists() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = set(compose["services"])
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.MULTILINE))
    assert listed == services
    for name in ("api", "worker", "beat"):
        assert "healthcheck" in compose["services"][name], name
    assert compose["services"]["postgres"]["profiles"] == ["postgres"]
