"""The `gimlet` command: artifacts for CI, releases and environments for people.

The commands and flags are the Go original's, so existing pipelines keep
working. Read commands print a table (coloured on a terminal) or, with
`-o json`, the API's JSON. A server error is one line with its HTTP status,
and the exit code is 1; a usage error exits 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from gimlet import artifacts
from gimlet.artifacts import ArtifactFileError
from gimlet.ci import detect
from gimlet.client import ApiError, Client

console = Console()
errors = Console(stderr=True)

#: Tries of `artifact push` (1, 2, 4, 8 s apart unless the server says otherwise).
PUSH_ATTEMPTS = 5
#: What `--wait` polls for, and how often.
POLL_SECONDS = 1.0
APPLIED = "ReconciliationSucceeded"
#: The table columns of a release: (title, field).
RELEASE_COLUMNS = (
    ("APP", "app"),
    ("ARTIFACT", "artifactId"),
    ("BY", "triggeredBy"),
    ("GITOPS", "gitopsRef"),
    ("FLUX", "fluxStatus"),
)

server_option = click.option(
    "--server", envvar="GIMLET_SERVER", required=True, help="GimletD's URL [GIMLET_SERVER]."
)
token_option = click.option(
    "--token", envvar="GIMLET_TOKEN", required=True, help="API token [GIMLET_TOKEN]."
)
output_option = click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--wait`, `--applied` and `--timeout`, for the commands that can follow an event."""
    options = (
        click.option("--wait", is_flag=True, help="Follow it until every GitOps write is done."),
        click.option("--applied", is_flag=True, help="With --wait: until Flux applied it all."),
        click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def connected(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command that talks to the server: `--server`, `--token`, and errors as one line."""

    @server_option
    @token_option
    @click.pass_context
    def wrapper(ctx: click.Context, /, server: str, token: str, **kwargs: Any) -> Any:
        try:
            return ctx.invoke(command, Client(server, token), **kwargs)
        except ApiError as exc:
            errors.print(f"[red]error[/red] {exc}", highlight=False)
            sys.exit(1)

    wrapper.__name__ = command.__name__
    wrapper.__doc__ = command.__doc__
    return wrapper


@click.group()
def main() -> None:
    """Talk to GimletD: push release artifacts, release, roll back, see what runs."""


# -- artifacts -----------------------------------------------------------------------


@main.group()
def artifact() -> None:
    """Create, fill, push and follow release artifacts."""


@artifact.command("create")
@click.option("--repository", help="owner/repo of the source repository.")
@click.option("--sha")
@click.option("--created", type=int, help="Unix time of the commit.")
@click.option("--branch")
@click.option("--event", type=click.Choice(["push", "tag", "pr"]))
@click.option("--sourceBranch", "source_branch")
@click.option("--targetBranch", "target_branch")
@click.option("--tag")
@click.option("--authorName", "author_name")
@click.option("--authorEmail", "author_email")
@click.option("--committerName", "committer_name")
@click.option("--committerEmail", "committer_email")
@click.option("--message")
@click.option("--url")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(path_type=Path),
    required=True,
    help="The artifact file to write.",
)
def artifact_create(output: Path, **flags: Any) -> None:
    """Start an artifact file, from flags and what the CI it runs in tells (GitHub Actions,
    GitLab CI, CircleCI, Jenkins, Drone); CI variables go into `context`."""
    names = {
        "repository": "repositoryName",
        "source_branch": "sourceBranch",
        "target_branch": "targetBranch",
        "author_name": "authorName",
        "author_email": "authorEmail",
        "committer_name": "committerName",
        "committer_email": "committerEmail",
    }
    version = {names.get(key, key): value for key, value in flags.items()}
    ci = detect(os.environ)
    artifacts.write(artifacts.new_artifact(version, ci, now=time.time()), output)
    found = f" from {ci.ci}" if ci else ""
    errors.print(f"wrote {output}{found}", highlight=False)


@artifact.command("add")
@click.option("-f", "--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--field", "fields", multiple=True, help="key=value of one item (repeat).")
@click.option(
    "--envFile",
    "env_files",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="An environment config YAML, such as .gimlet/staging.yaml (repeat).",
)
@click.option("--var", "variables", multiple=True, help="KEY=VALUE for context (repeat).")
@click.option(
    "--varsFile",
    "vars_files",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A file of KEY=VALUE lines.",
)
def artifact_add(
    path: Path,
    fields: tuple[str, ...],
    env_files: tuple[Path, ...],
    variables: tuple[str, ...],
    vars_files: tuple[Path, ...],
) -> None:
    """Add an item (the --field pairs of one call), CI variables and environment configs."""
    try:
        found: dict[str, str] = {}
        for vars_path in vars_files:
            found |= artifacts.vars_file(vars_path)
        found |= artifacts.parse_pairs(variables, "--var")
        changed = artifacts.add(
            artifacts.read(path),
            fields=artifacts.parse_pairs(fields, "--field"),
            variables=found,
            environments=artifacts.env_files(env_files),
        )
    except ArtifactFileError as exc:
        raise click.UsageError(str(exc)) from None
    artifacts.write(changed, path)


@artifact.command("push")
@click.option("-f", "--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option(
    "--attempts",
    type=click.IntRange(min=1),
    default=PUSH_ATTEMPTS,
    show_default=True,
    help="Tries while the server is unreachable or busy (one Idempotency-Key: stored once).",
)
@wait_options
@output_option
@connected
def artifact_push(
    client: Client,
    path: Path,
    attempts: int,
    wait: bool,
    applied: bool,
    timeout: float,
    output: str,
) -> None:
    """Push the artifact; print its id. With --wait, exit 1 unless it was released everywhere."""
    try:
        body = artifacts.read(path)
    except ArtifactFileError as exc:
        raise click.UsageError(str(exc)) from None
    stored = client.post_idempotent("/api/artifact", body, key=str(uuid.uuid4()), attempts=attempts)
    click.echo(stored["id"])
    if wait:
        event = follow(client, stored["eventId"], applied=applied, timeout=timeout)
        show_event(event, output)
        sys.exit(0 if succeeded(event, applied=applied) else 1)


@artifact.command("list")
@click.option("--repository")
@click.option("--branch")
@click.option("--event", type=click.Choice(["push", "tag", "pr"]))
@click.option("--sourceBranch", "source_branch")
@click.option("--sha", multiple=True)
@click.option("--limit", type=int)
@click.option("--offset", type=int)
@click.option("--since", help="RFC 3339 time.")
@click.option("--until", help="RFC 3339 time.")
@output_option
@connected
def artifact_list(
    client: Client, output: str, source_branch: str | None, sha: tuple[str, ...], **filters: Any
) -> None:
    """Artifacts, newest first."""
    found = client.get(
        "/api/artifacts", sourceBranch=source_branch, sha=list(sha) or None, **filters
    )
    show(
        found,
        output,
        ("ID", "id"),
        ("BRANCH", "version.branch"),
        ("EVENT", "version.event"),
        ("SHA", "version.sha"),
        ("MESSAGE", "version.message"),
    )


@artifact.command("track")
@click.argument("artifact_id")
@wait_options
@output_option
@connected
def artifact_track(
    client: Client, artifact_id: str, wait: bool, applied: bool, timeout: float, output: str
) -> None:
    """What became of an artifact's newest event."""
    event = client.get("/api/eventArtifactTrack", id=artifact_id)
    if wait:
        event = follow(client, event["id"], applied=applied, timeout=timeout)
    show_event(event, output)
    sys.exit(0 if event["status"] != "error" else 1)


# -- releases ------------------------------------------------------------------------


@main.group()
def release() -> None:
    """Release, roll back, delete, and see what is deployed."""


@release.command("make")
@click.option("--env", required=True)
@click.option("--artifact", "artifact_id", required=True)
@click.option("--app")
@click.option("--wait", is_flag=True)
@output_option
@connected
def release_make(
    client: Client, env: str, artifact_id: str, app: str | None, wait: bool, output: str
) -> None:
    """Release a stored artifact to an environment."""
    body = {"env": env, "artifactId": artifact_id, **({"app": app} if app else {})}
    accepted(client, client.post("/api/releases", body), wait=wait, output=output)


@release.command("rollback")
@click.option("--env", required=True)
@click.option("--app", required=True)
@click.option("--to", "sha", required=True, help="The release commit (full sha) to go back to.")
@click.option("--wait", is_flag=True)
@output_option
@connected
def release_rollback(client: Client, env: str, app: str, sha: str, wait: bool, output: str) -> None:
    """Roll an app back to an earlier release."""
    accepted(
        client, client.post("/api/rollback", env=env, app=app, sha=sha), wait=wait, output=output
    )


@release.command("delete")
@click.option("--env", required=True)
@click.option("--app", required=True)
@click.option("--wait", is_flag=True)
@output_option
@connected
def release_delete(client: Client, env: str, app: str, wait: bool, output: str) -> None:
    """Delete an app from an environment."""
    accepted(client, client.post("/api/delete", env=env, app=app), wait=wait, output=output)


@release.command("list")
@click.option("--env", required=True)
@click.option("--app")
@click.option("--limit", type=int)
@click.option("--offset", type=int)
@click.option("--since")
@click.option("--until")
@click.option("--reverse", is_flag=True, default=None)
@click.option("--repo", "git_repo", help="Only releases of this source repository.")
@output_option
@connected
def release_list(
    client: Client, output: str, git_repo: str | None, reverse: bool | None, **filters: Any
) -> None:
    """Release history of an environment, newest first."""
    found = client.get(
        "/api/releases", **{"git-repo": git_repo}, reverse="true" if reverse else None, **filters
    )
    show(
        found,
        output,
        *RELEASE_COLUMNS,
        ("CREATED", "created"),
    )


@release.command("status")
@click.option("--env", required=True)
@click.option("--app")
@output_option
@connected
def release_status(client: Client, env: str, app: str | None, output: str) -> None:
    """What each app of an environment runs now."""
    found = client.get("/api/status", env=env, app=app)
    rows = list(found.values()) if isinstance(found, dict) else found
    show(
        rows if output == "table" else found,
        output,
        *RELEASE_COLUMNS,
    )


@release.command("track")
@click.argument("event_id")
@wait_options
@output_option
@connected
def release_track(
    client: Client, event_id: str, wait: bool, applied: bool, timeout: float, output: str
) -> None:
    """What became of a release, rollback or delete event."""
    event = (
        follow(client, event_id, applied=applied, timeout=timeout)
        if wait
        else client.get("/api/event", id=event_id)
    )
    show_event(event, output)
    sys.exit(0 if succeeded(event, applied=applied) or not wait else 1)


# -- environments and holds ----------------------------------------------------------


@main.group()
def env() -> None:
    """Freeze and unfreeze environments."""


@env.command("lock")
@click.option("--env", "name", required=True)
@click.option("--reason", required=True)
@connected
def env_lock(client: Client, name: str, reason: str) -> None:
    """Lock an environment: nothing is written until it is unlocked."""
    lock = client.post("/api/locks", {"env": name, "reason": reason})
    click.echo(f"locked {lock['env']}: {lock['reason']}")


@env.command("unlock")
@click.option("--env", "name", required=True)
@connected
def env_unlock(client: Client, name: str) -> None:
    """Unlock an environment; what waited is applied in order."""
    client.delete("/api/locks", env=name)
    click.echo(f"unlocked {name}")


@main.group()
def hold() -> None:
    """See and lift the holds that keep policy deploys off an app."""


@hold.command("list")
@click.option("--env")
@output_option
@connected
def hold_list(client: Client, env: str | None, output: str) -> None:
    """Holds, with why and by whom."""
    show(
        client.get("/api/holds", env=env),
        output,
        ("ENV", "env"),
        ("APP", "app"),
        ("REASON", "reason"),
        ("BY", "placedBy"),
    )


@hold.command("release")
@click.option("--env", required=True)
@click.option("--app", required=True)
@connected
def hold_release(client: Client, env: str, app: str) -> None:
    """Lift a hold: policy deploys of the app go through again."""
    client.delete("/api/holds", env=env, app=app)
    click.echo(f"lifted the hold on {env}/{app}")


# -- local rendering -----------------------------------------------------------------


@main.group()
def manifest() -> None:
    """Work with environment configs locally."""


@manifest.command("template")
@click.option("-f", "--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option(
    "--vars",
    "vars_path",
    type=click.Path(exists=True, path_type=Path),
    help="A file of KEY=VALUE lines.",
)
@click.option(
    "--artifact",
    "artifact_path",
    type=click.Path(exists=True, path_type=Path),
    help="An artifact file whose variables to use.",
)
def manifest_template(path: Path, vars_path: Path | None, artifact_path: Path | None) -> None:
    """Render an environment config as a release would, and print its manifests."""
    from gimlet.render import render_locally

    try:
        documents = render_locally(path, vars_path=vars_path, artifact_path=artifact_path)
    except (ArtifactFileError, ValueError) as exc:
        errors.print(f"[red]error[/red] {exc}", highlight=False)
        sys.exit(1)
    click.echo(documents, nl=False)


# -- following and showing -----------------------------------------------------------


def accepted(client: Client, event: dict[str, Any], *, wait: bool, output: str) -> None:
    if wait:
        event = follow(client, event["id"], applied=False, timeout=600.0)
    show_event(event, output)
    if wait and not succeeded(event, applied=False):
        sys.exit(1)


def follow(client: Client, event_id: str, *, applied: bool, timeout: float) -> dict[str, Any]:
    """Poll the event until it is done (and, with `applied`, until Flux applied it all)."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the release…") as status:
        for event in _polls(client, event_id, deadline):
            status.update(
                f"{event['status']}: "
                + ", ".join(
                    f"{r['env']}/{r['app']} {r['status']}" for r in event.get("results", [])
                )
            )
            if _done(event, applied=applied):
                return event
    raise ApiError(0, f"timed out after {timeout:.0f}s waiting for event {event_id}")


def _polls(client: Client, event_id: str, deadline: float) -> Iterator[dict[str, Any]]:
    while time.monotonic() < deadline:
        yield client.get("/api/event", id=event_id)
        time.sleep(POLL_SECONDS)


def _done(event: dict[str, Any], *, applied: bool) -> bool:
    if event["status"] == "new":
        return False
    if not applied or event["status"] == "error":
        return True
    statuses = [
        r.get("gitopsCommitStatus", "")
        for r in event.get("results", [])
        if r["status"] == "success"
    ]
    return all(s == APPLIED or "Failed" in s for s in statuses)


def succeeded(event: dict[str, Any], *, applied: bool) -> bool:
    """Processed, no environment failed, and with `applied` every commit applied by Flux."""
    results = event.get("results", [])
    if event["status"] != "processed" or any(r["status"] == "failure" for r in results):
        return False
    return not applied or all(
        r.get("gitopsCommitStatus") == APPLIED for r in results if r["status"] == "success"
    )


def show_event(event: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(event, indent=2))
        return
    colour = {"processed": "green", "error": "red"}.get(event["status"], "yellow")
    console.print(
        f"event {event['id']}: [{colour}]{event['status']}[/{colour}] "
        f"{event.get('statusDesc', '')}",
        highlight=False,
    )
    show(
        event.get("results", []),
        output,
        ("ENV", "env"),
        ("APP", "app"),
        ("STATUS", "status"),
        ("GITOPS", "hash"),
        ("FLUX", "gitopsCommitStatus"),
        ("WHY", "statusDesc"),
    )


def show(rows: Any, output: str, *columns: tuple[str, str]) -> None:
    """`rows` as JSON, or as a table of `columns` (title, dotted path)."""
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for title, _ in columns:
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(*(_text(_at(row, path)) for _, path in columns))
    console.print(table)


def _at(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text.splitlines()[0][:60] if text else ""
