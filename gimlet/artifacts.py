"""Building an artifact file step by step, as CI does: create, then add. Pure but for reading files.

The file is the JSON GimletD accepts at `POST /api/artifact`; each step reads
it, changes it and writes it back, so the steps can run in separate CI steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gimlet.ci import CiCommit


class ArtifactFileError(Exception):
    """An artifact, environment config or variables file cannot be used; the message says why."""


def new_artifact(version: dict[str, Any], ci: CiCommit | None, *, now: float) -> dict[str, Any]:
    """A new artifact: the version CI detected, overridden by `version` (the flags given)."""
    detected = dict(ci.version) if ci else {}
    merged = {**detected, **{key: value for key, value in version.items() if value is not None}}
    merged.setdefault("created", int(now))
    return {
        "version": merged,
        "context": dict(ci.context) if ci else {},
        "items": [],
        "environments": [],
    }


def read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactFileError(f"cannot read the artifact {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactFileError(f"{path} is not an artifact: it holds no JSON object")
    return data


def write(artifact: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(artifact, indent=2) + "\n")


def parse_pairs(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    """`key=value` strings as a dict; :raise ArtifactFileError: naming a malformed one."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ArtifactFileError(f"{what} {pair!r} is not key=value")
        parsed[key.strip()] = value
    return parsed


def vars_file(path: Path) -> dict[str, str]:
    """A dotenv-style file of `KEY=VALUE` lines (`#` comments and blank lines skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ArtifactFileError(f"cannot read the variables file {path}: {exc}") from None
    pairs = [line.strip().removeprefix("export ") for line in lines]
    kept = tuple(line for line in pairs if line and not line.startswith("#"))
    return {key: value.strip().strip("\"'") for key, value in parse_pairs(kept, str(path)).items()}


def env_files(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Environment configs from YAML files (`.gimlet/*.yaml`); one file may hold several."""
    configs = []
    for path in paths:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ArtifactFileError(f"cannot read the environment config {path}: {exc}") from None
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict) or "env" not in document or "app" not in document:
                raise ArtifactFileError(f"{path}: an environment config needs env and app")
            configs.append(document)
    return configs


def add(
    artifact: dict[str, Any],
    *,
    fields: dict[str, str],
    variables: dict[str, str],
    environments: list[dict[str, Any]],
) -> dict[str, Any]:
    """The artifact with one item made of `fields`, the variables and environment configs added.

    An environment config for an env/app the artifact already has replaces it.
    """
    changed = dict(artifact)
    if fields:
        changed["items"] = [*artifact.get("items", []), fields]
    changed["context"] = {**artifact.get("context", {}), **variables}
    kept = [
        config
        for config in artifact.get("environments", [])
        if (config.get("env"), config.get("app"))
        not in {(e["env"], e["app"]) for e in environments}
    ]
    changed["environments"] = [*kept, *environments]
    return changed
