"""Which artifacts an environment releases automatically, and when a preview app is cleaned up.

Deploy and cleanup policies name branches and tags with globs:

- `*` matches any run of characters except `/`, `**` any run including `/`;
- `?` matches one character except `/`;
- `[abc]`, `[a-z]` match one listed character, `[!a-z]` or `[^a-z]` one character
  that is not listed and not `/`; `]` right after `[` or `[!` is listed literally;
- `\\` makes the next character literal; everything else matches itself;
- one leading `!` negates the whole pattern: `!main` is every branch but `main`.

Globs compile to a list of steps matched by simulating all positions at once,
not to a backtracking regex, so matching takes time proportional to the
pattern times the value whatever the pattern: policies come from CI and must
not be able to stall a worker (`*a*a*a*a*a*a*a*a*a*a*a*b` would with `re`).

Everything here is pure: functions return decisions, they never release anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gimletd.durations import parse_duration
from gimletd.errors import PolicyError, TemplateError
from gimletd.models import CleanupEvent, CleanupPolicy, DeployPolicy, GitEvent, Version
from gimletd.templating import template_variables

__all__ = [
    "BRANCH_EVENTS",
    "CLEANUP_APP_VARIABLES",
    "check_cleanup_policy",
    "check_deploy_policy",
    "cleanup_matches",
    "deploy_matches",
    "glob_matches",
]

#: Events whose artifacts a `branch` policy applies to; `tag` policies apply to `GitEvent.TAG`.
BRANCH_EVENTS = frozenset({GitEvent.PUSH, GitEvent.PR})
#: The only variables a cleanup policy's `app` template may use.
CLEANUP_APP_VARIABLES = frozenset({"BRANCH"})

_NEGATE = "!"
_SEPARATOR = "/"


def glob_matches(pattern: str, value: str) -> bool:
    """Whether `value` matches the glob `pattern` (see the module docstring for the syntax).

    :raise PolicyError: the pattern is malformed, such as an unclosed `[`.
    """
    negated = pattern.startswith(_NEGATE)
    glob = _compile(pattern[1:] if negated else pattern)
    return glob.matches(value) != negated


def deploy_matches(policy: DeployPolicy | None, version: Version) -> bool:
    """Whether an artifact of `version` is released automatically under `policy`.

    No policy means "released only on request". A `branch` glob applies to push
    and pr events (a pr is matched by its branch, or its source branch when the
    branch is empty), a `tag` glob to tag events, and `event`, when given, must
    equal the version's. A policy with only `event` takes every artifact of
    that event; one with neither branch, tag nor event takes none, and so does a
    version without an event or without the branch or tag to compare (even for a
    negated glob: `!main` says which branches, it does not invent one).

    :raise PolicyError: a glob in the policy is malformed.
    """
    event = version.event
    if policy is None or event is None:
        return False
    if policy.event is not None and policy.event != event:
        return False
    if not policy.branch and not policy.tag:
        return policy.event is not None
    if event in BRANCH_EVENTS:
        branch = version.branch or (version.source_branch if event == GitEvent.PR else "")
        return bool(policy.branch and branch) and glob_matches(policy.branch, branch)
    return bool(policy.tag and version.tag) and glob_matches(policy.tag, version.tag)


def cleanup_matches(policy: CleanupPolicy | None, event: CleanupEvent, branch: str) -> bool:
    """Whether `event` on `branch` deletes the preview app of `policy`.

    The event must equal the policy's and the branch must match its glob; a
    negated glob such as `!main` matches every other non-empty branch.

    :raise PolicyError: the branch glob is malformed.
    """
    if policy is None or policy.event != event or not policy.branch or not branch:
        return False
    return glob_matches(policy.branch, branch)


def check_deploy_policy(policy: DeployPolicy | None) -> None:
    """Refuse a deploy policy that cannot be compiled or can never apply.

    :raise PolicyError: a glob is malformed, `branch` is combined with
        `event: tag`, or `tag` with `event: push` or `pr`.
    """
    if policy is None:
        return
    _check_glob(policy.branch, "deploy.branch")
    _check_glob(policy.tag, "deploy.tag")
    if policy.branch and policy.event == GitEvent.TAG:
        raise PolicyError(
            f"deploy.branch {policy.branch!r} never applies with event 'tag': branch policies "
            "match push and pr events; use deploy.tag for tags, or set event to push or pr"
        )
    if policy.tag and policy.event in BRANCH_EVENTS:
        raise PolicyError(
            f"deploy.tag {policy.tag!r} never applies with event '{policy.event}': tag policies "
            "match tag events; use deploy.branch for branches, or set event to tag"
        )


def check_cleanup_policy(policy: CleanupPolicy | None) -> None:
    """Refuse a cleanup policy that cannot be compiled or would never clean anything up.

    A policy with only `ttl` needs neither: it expires the app its environment
    config released.

    :raise PolicyError: the branch glob is malformed, the ttl is not a duration,
        neither `event` nor `ttl` is set, or, with `event`, `branch` is missing or
        `app` is missing, is not a valid template, or uses a variable other than
        BRANCH (the only one known when a branch goes away).
    """
    if policy is None:
        return
    _check_glob(policy.branch, "cleanup.branch")
    if policy.ttl is not None:
        try:
            parse_duration(policy.ttl)
        except ValueError as exc:
            raise PolicyError(f"cleanup.ttl: {exc}") from exc
    if policy.event is None and policy.ttl is None:
        events = " or ".join(event.value for event in CleanupEvent)
        raise PolicyError(f"cleanup.event is missing: set it to {events}, or set a ttl")
    if policy.event is None:
        return
    if not policy.branch:
        raise PolicyError("cleanup.branch is missing: use '*' for every branch")
    if not policy.app:
        raise PolicyError(
            "cleanup.app is missing: name the app to delete, "
            "for example frontend-{{ .BRANCH | sanitizeDNSName }}"
        )
    try:
        names = template_variables(policy.app)
    except TemplateError as exc:
        raise PolicyError(f"cleanup.app is not a valid template: {exc}") from exc
    others = names - CLEANUP_APP_VARIABLES
    if others:
        raise PolicyError(
            f"cleanup.app {policy.app!r} uses {', '.join(sorted(others))}: only BRANCH is "
            "known when a branch is deleted or a pull request closed"
        )


def _check_glob(pattern: str, field: str) -> None:
    try:
        glob_matches(pattern, "")
    except PolicyError as exc:
        raise PolicyError(f"{field}: {exc}") from exc


# --- compiled globs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """One element of a glob: a literal, `?`, a class, `*` (repeat) or `**` (repeat, any)."""

    kind: str  # literal, one, class, star, globstar
    chars: str = ""
    ranges: tuple[tuple[str, str], ...] = ()
    negated: bool = False

    @property
    def repeats(self) -> bool:
        return self.kind in ("star", "globstar")

    def accepts(self, char: str) -> bool:
        if self.kind == "literal":
            return char == self.chars
        if self.kind == "globstar":
            return True
        if self.kind in ("one", "star"):
            return char != _SEPARATOR
        listed = char in self.chars or any(low <= char <= high for low, high in self.ranges)
        if self.negated:
            return not listed and char != _SEPARATOR
        return listed


@dataclass(frozen=True, slots=True)
class _Glob:
    """A compiled glob: `literal` when it has no wildcards, else its steps."""

    literal: str | None
    steps: tuple[_Step, ...]

    def matches(self, value: str) -> bool:
        if self.literal is not None:
            return value == self.literal
        steps = self.steps
        states = _skip_repeats({0}, steps)
        for char in value:
            following: set[int] = set()
            for index in states:
                if index == len(steps):
                    continue
                step = steps[index]
                if step.accepts(char):
                    following.add(index if step.repeats else index + 1)
            if not following:
                return False
            states = _skip_repeats(following, steps)
        return len(steps) in states


def _skip_repeats(states: set[int], steps: tuple[_Step, ...]) -> set[int]:
    """`states` plus every state reachable by letting `*` and `**` match nothing."""
    reachable = set(states)
    for index in states:
        while index < len(steps) and steps[index].repeats:
            index += 1
            reachable.add(index)
    return reachable


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> _Glob:
    if not any(char in pattern for char in "*?[\\"):
        return _Glob(pattern, ())
    steps: list[_Step] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            end = index
            while end < len(pattern) and pattern[end] == "*":
                end += 1
            steps.append(_Step("globstar" if end - index > 1 else "star"))
            index = end
        elif char == "?":
            steps.append(_Step("one"))
            index += 1
        elif char == "[":
            step, index = _compile_class(pattern, index)
            steps.append(step)
        else:
            literal, index = _take(pattern, index)
            steps.append(_Step("literal", literal))
    return _Glob(None, tuple(steps))


def _take(pattern: str, index: int) -> tuple[str, int]:
    """The character at `index`, or the one a `\\` there escapes, and the index after it."""
    if pattern[index] != "\\":
        return pattern[index], index + 1
    if index + 1 >= len(pattern):
        raise PolicyError(
            f"glob {pattern!r} ends with '\\': escape a backslash as '\\\\' or remove it"
        )
    return pattern[index + 1], index + 2


def _compile_class(pattern: str, start: int) -> tuple[_Step, int]:
    """The `[...]` class starting at `start`, and the index after its `]`."""
    index = start + 1
    negated = index < len(pattern) and pattern[index] in "!^"
    if negated:
        index += 1
    chars: list[str] = []
    ranges: list[tuple[str, str]] = []
    first = True
    while True:
        if index >= len(pattern):
            raise PolicyError(
                f"glob {pattern!r}: the '[' at position {start + 1} has no closing ']'; "
                "close the class, or write '\\[' for a literal '['"
            )
        if pattern[index] == "]" and not first:
            return _Step("class", "".join(chars), tuple(ranges), negated), index + 1
        first = False
        low, index = _take(pattern, index)
        if index + 1 < len(pattern) and pattern[index] == "-" and pattern[index + 1] != "]":
            high, index = _take(pattern, index + 1)
            if high < low:
                raise PolicyError(
                    f"glob {pattern!r}: the range {low}-{high} is reversed; write {high}-{low}"
                )
            ranges.append((low, high))
        else:
            chars.append(low)
