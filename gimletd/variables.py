"""The variables an artifact's templates can use.

CI decides what its artifacts carry, so what it sent always wins: the
artifact's `context` entries, then every string-valued field of its `items`
(a later item overrides an earlier one and the context). Built-ins derived from
the artifact's `version` only fill names CI left unset, so pipelines that
already send `BRANCH` keep their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping

from gimletd.models import Artifact, Version

__all__ = ["BUILTIN_VARIABLES", "artifact_variables"]

#: Built-in variable name -> the `Version` attribute it comes from. A built-in is
#: set only when that field is non-empty and CI did not send the name itself.
#:
#: - BRANCH, SHA, TAG: the commit's branch, hash and tag
#: - REPO: the repository name (`owner/name`)
#: - EVENT: `push`, `tag` or `pr`
#: - SOURCE_BRANCH, TARGET_BRANCH: the pull request's branches
#: - AUTHOR, AUTHOR_EMAIL, COMMITTER: who wrote and who committed the change
#: - COMMIT_MESSAGE, COMMIT_URL: the commit message and its web address
BUILTIN_VARIABLES: Mapping[str, str] = {
    "BRANCH": "branch",
    "SHA": "sha",
    "TAG": "tag",
    "REPO": "repository_name",
    "EVENT": "event",
    "SOURCE_BRANCH": "source_branch",
    "TARGET_BRANCH": "target_branch",
    "AUTHOR": "author_name",
    "AUTHOR_EMAIL": "author_email",
    "COMMITTER": "committer_name",
    "COMMIT_MESSAGE": "message",
    "COMMIT_URL": "url",
}


def artifact_variables(artifact: Artifact) -> dict[str, str]:
    """The variables for `artifact`'s templates: CI's context and items, then built-ins.

    Non-string item fields (numbers, lists, objects) are not variables. A name CI
    sent is kept even when its value is empty.
    """
    variables = dict(artifact.context)
    for item in artifact.items:
        variables.update((key, value) for key, value in item.items() if isinstance(value, str))
    for name, value in _builtins(artifact.version).items():
        variables.setdefault(name, value)
    return variables


def _builtins(version: Version) -> dict[str, str]:
    builtins: dict[str, str] = {}
    for name, attribute in BUILTIN_VARIABLES.items():
        value = getattr(version, attribute)
        if value:
            builtins[name] = str(value)
    return builtins
