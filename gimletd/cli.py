"""The `gimletd` command: run the API, a worker, the scheduler, or all three locally.

The command starts the API and the workers as processes (gunicorn, celery)
by module name, so this core package never imports Flask or Celery.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import click

from gimletd.durations import parse_duration
from gimletd.errors import Conflict, NotFound
from gimletd.gitops.repository import init_bare
from gimletd.models import LOGIN, AuditEntry, Role, check_dns_label
from gimletd.settings import Settings
from gimletd.store import Store

SHARED_SEED = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SEED_NAME = "seed-artifact-restored.json"


@click.group()
def main() -> None:
    """GimletD, the GitOps release manager."""


@main.command()
@click.option("--host", default=None, help="Address to listen on [HOST, default 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port to listen on [PORT, default 8888].")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def api(host: str | None, port: int | None, workers: int, dev: bool) -> None:
    """Serve the HTTP API (gunicorn outside development)."""
    settings = Settings()
    bind_host, bind_port = host or settings.host, port or settings.port
    _exec(_api_command(bind_host, bind_port, workers=workers, dev=dev or settings.development))


@main.command()
@click.option("--concurrency", default=2, show_default=True, help="Worker processes.")
@click.option("--name", default="gimletd@%h", show_default=True, help="Celery node name.")
@click.option(
    "--queues",
    default="gimletd,notifications",
    show_default=True,
    help="Queues to serve: gimletd (releases, cleanups, sweeps), notifications, or both.",
)
def worker(concurrency: int, name: str, queues: str) -> None:
    """Run a Celery worker: policy matching, GitOps writes, sweeps, notifications."""
    _exec(_worker_command(concurrency, name, queues))


@main.command()
def beat() -> None:
    """Run the scheduler that sends the periodic sweep."""
    _exec(_beat_command(Settings()))


@main.command()
def migrate() -> None:
    """Apply database migrations and exit."""
    settings = Settings()
    store = Store(settings.resolved_database_url)
    store.migrate()
    store.close()
    click.echo("database schema is up to date")


@main.group()
def user() -> None:
    """Manage users and their tokens directly in the database (for bootstrapping)."""


@user.command("create")
@click.argument("login")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.USER.value,
    show_default=True,
    help="admin, ci (push and read) or user (also release).",
)
@click.option("--env", "envs", multiple=True, help="An environment a user may write to (repeat).")
@click.option("--expires-in", default=None, help="Token lifetime such as 90d; never by default.")
def user_create(login: str, role: str, envs: tuple[str, ...], expires_in: str | None) -> None:
    """Create a user and print its token, the only time it is shown."""
    if not LOGIN.match(login):
        raise click.BadParameter(
            "use letters, digits, '.', '_', '-' and '@', starting with a letter or digit",
            param_hint="LOGIN",
        )
    for env in envs:
        try:
            check_dns_label(env, "--env")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--env") from None
    if envs and role != Role.USER.value:
        raise click.UsageError(f"--env limits a user; a {role} token has no such list")
    with _store() as store:
        created, token = store.create_user(
            login,
            role=Role(role),
            envs=list(envs) or None,
            expires_at=_expiry(expires_in),
            audit=_cli_audit("user.create", login),
        )
    click.echo(f"created {created.login} ({created.role.value}); its token, shown once:")
    click.echo(token)


@user.command("list")
def user_list() -> None:
    """List users: login, role, environments, token expiry."""
    with _store() as store:
        for found in store.users():
            envs = ",".join(found.envs) if found.envs is not None else "*"
            expires = "never"
            if found.expires_at is not None:
                expires = time.strftime("%Y-%m-%d", time.gmtime(found.expires_at))
            click.echo(f"{found.login}\t{found.role.value}\t{envs}\texpires {expires}")


@user.command("delete")
@click.argument("login")
def user_delete(login: str) -> None:
    """Delete a user, revoking its token."""
    with _store() as store:
        store.delete_user(login, audit=_cli_audit("user.delete", login))
    click.echo(f"deleted {login}")


@user.command("rotate-token")
@click.argument("login")
@click.option("--expires-in", default=None, help="Token lifetime such as 90d; never by default.")
def user_rotate_token(login: str, expires_in: str | None) -> None:
    """Give a user a new token (the old one stops working) and print it once."""
    with _store() as store:
        _, token = store.rotate_token(
            login, expires_at=_expiry(expires_in), audit=_cli_audit("user.rotate", login)
        )
    click.echo(token)


@contextlib.contextmanager
def _store() -> Iterator[Store]:
    """The store of the configured database, migrated; errors become click's messages."""
    store = Store(Settings().resolved_database_url)
    try:
        store.migrate()
        yield store
    except (NotFound, Conflict) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _expiry(expires_in: str | None) -> int | None:
    if expires_in is None:
        return None
    try:
        return int(time.time() + parse_duration(expires_in))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires-in") from None


def _cli_audit(action: str, target: str) -> AuditEntry:
    """Who ran the command: the operating-system user, on this machine."""
    login = f"cli:{getpass.getuser()}"
    return AuditEntry(at=time.time(), login=login, address="local", action=action, target=target)


@main.command()
@click.option("--port", default=None, type=int, help="API port [PORT, default 8888].")
def up(port: int | None) -> None:
    """Run API, workers and scheduler on embedded defaults in the data directory.

    SQLite and a bare GitOps repository are created in GIMLETD_DATA_DIR
    (default ./.gimletd) unless DATABASE_URL / GITOPS_REPO say otherwise; a
    redis-server is started there when REDIS_URL is unset and none answers on
    the default port.
    """
    settings = Settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GIMLETD_DATA_DIR=str(data_dir))
    # A local install may render charts from directories on this machine.
    env.setdefault("CHART_ALLOW_LOCAL", "true")
    if port is not None:
        env["PORT"] = str(port)
    api_port = port or settings.port
    if not settings.gitops_repo:
        init_bare(settings.default_gitops_repo_path)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token is None:
        token = _local_admin_token(data_dir)
        env["GIMLETD_ADMIN_TOKEN"] = token
    store = Store(settings.resolved_database_url)
    store.migrate()
    store.close()

    with contextlib.ExitStack() as stack:
        if settings.redis_url is None and not _port_open("127.0.0.1", 6379):
            stack.enter_context(_redis_server(data_dir / "redis", port=6379))
        processes = [
            ("api", _api_command(settings.host, api_port, workers=2, dev=False)),
            ("worker", _worker_command(2, "gimletd@%h", "gimletd")),
            ("notifier", _worker_command(2, "notifier@%h", "notifications")),
            ("beat", _beat_command(settings)),
        ]
        children = [stack.enter_context(_child(name, cmd, env)) for name, cmd in processes]
        _wait_for_api(settings.host, api_port, children)
        _print_welcome(settings, api_port, token)
        _supervise(children)


#: gunicorn's default access log line, with the path in place of the whole request line:
#: a query string may hold a token (Flux's `?access_token=`).
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def gunicorn_command(host: str, port: int, *, workers: int) -> list[str]:
    """The API under gunicorn with its settings (`api/gunicorn_conf.py`), as everything starts it.

    The settings are given as a file, not as the module `python:api.gunicorn_conf`:
    importing that would import the `api` package (Flask, Redis, SQLAlchemy, ssl) in
    gunicorn's master, before gevent patches the standard library in the workers.
    """
    return [sys.executable, "-m", "gunicorn", "-c", str(_gunicorn_settings()), "api.wsgi:app",
            "--bind", f"{host}:{port}", "--workers", str(workers)]  # fmt: skip


def _gunicorn_settings() -> Path:
    """`api/gunicorn_conf.py`, found without importing the `api` package."""
    spec = importlib.util.find_spec("api")
    if spec is None or spec.origin is None:
        raise click.ClickException("the api package is not installed beside gimletd")
    return Path(spec.origin).parent / "gunicorn_conf.py"


def _api_command(host: str, port: int, *, workers: int, dev: bool) -> list[str]:
    if dev:
        return [sys.executable, "-m", "flask", "--app", "api:create_app", "run",
                "--host", host, "--port", str(port)]  # fmt: skip
    return [*gunicorn_command(host, port, workers=workers),
            "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT]  # fmt: skip


def _worker_command(concurrency: int, name: str, queues: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "-n", name, "-Q", queues]  # fmt: skip


def _beat_command(settings: Settings) -> list[str]:
    schedule = settings.data_dir.resolve() / "celerybeat-schedule"
    return [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
            "-s", str(schedule)]  # fmt: skip


def _exec(command: Sequence[str]) -> None:
    os.execv(command[0], list(command))


def _local_admin_token(data_dir: Path) -> str:
    """The admin token of a local install, made once and kept (0600) in the data directory."""
    path = data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def _redis_server(directory: Path, *, port: int) -> Iterator[None]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise click.ClickException(
            "no Redis answers on 127.0.0.1:6379 and redis-server is not installed: install it "
            "(apt-get install redis-server, brew install redis) or set REDIS_URL"
        )
    directory.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
               "--appendonly", "yes", "--save", "",
               "--logfile", str(directory / "redis.log")]  # fmt: skip
    with _child("redis", command, dict(os.environ)):
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise click.ClickException("redis-server did not start within 10 seconds")
            time.sleep(0.1)
        yield


@contextlib.contextmanager
def _child(
    name: str, command: Sequence[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    click.echo(f"starting {name}: {' '.join(command)}", err=True)
    process = subprocess.Popen(command, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_api(host: str, port: int, children: Sequence[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while not _port_open(host, port):
        if any(child.poll() is not None for child in children):
            raise click.ClickException(
                "a GimletD process exited during start-up; see its log above"
            )
        if time.monotonic() > deadline:
            raise click.ClickException(f"the API did not listen on {host}:{port} within 60 s")
        time.sleep(0.2)


def _print_welcome(settings: Settings, port: int, token: str) -> None:
    seed = SHARED_SEED / SEED_NAME
    artifact = str(seed) if seed.exists() else "artifact.json"
    base = f"http://{settings.host}:{port}"
    repo = settings.resolved_gitops_repo
    if urlsplit(repo).scheme in ("", "file"):
        repo_hint = f"git --git-dir {repo} log --stat"
    else:
        repo_hint = repo
    click.echo(
        "\nGimletD is running.\n"
        f"  API:          {base}\n"
        f"  Admin token:  {token}\n"
        f"  GitOps repo:  {repo_hint}\n\n"
        "Push an artifact:\n"
        f"  curl -sS -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
        f"       --data @{artifact} {base}/api/artifact\n"
        "Then follow its event:\n"
        f"  curl -sS -H 'Authorization: Bearer {token}' '{base}/api/event?id=<eventId>'\n",
    )


def _supervise(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """Block until Ctrl-C or until a child dies; the ExitStack stops the rest."""
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
        return
    raise click.ClickException("a GimletD process exited; stopping the others")


if __name__ == "__main__":
    main()
