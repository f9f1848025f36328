"""The product's nouns as pydantic models, with the Go original's JSON field names.

An `Artifact` is what CI pushes: the commit's `Version`, CI `context` variables,
`items`, and one `Manifest` (environment config) per environment it may be
released to. A `Release` is what lands in `<env>/<app>/release.json`. An `Event`
is what the API stores and the workers process; its `Result`s say what became of
each environment.

Names that become directories of the GitOps repository (`env`, `app`) must be
DNS-1123 labels. They may be templates (`frontend-{{ .BRANCH | sanitizeDNSName }}`),
in which case they are checked again once resolved, see `check_dns_label`.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63
#: A login: letters, digits, `.`, `_`, `-`, `@`; it appears in commit trailers and messages.
LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
#: Characters git refuses in ref names: controls, space, and ~ ^ : ? * [ \.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
#: The wire names of Version's fields that differ from their Python names.
_ALIASES = {"source_branch": "sourceBranch", "target_branch": "targetBranch"}
#: An abbreviated or full commit sha (SHA-1 or SHA-256 object names).
COMMIT_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
TEMPLATE_MARK = "{{"
#: Flux's status of a GitOps commit, in the names the Go original's clients know: applied,
#: on its way, and the failure given to an error whose reason names none.
FLUX_APPLIED = "ReconciliationSucceeded"
FLUX_PROGRESSING = "Progressing"
FLUX_FAILED = "ReconciliationFailed"
#: `triggeredBy` of a release made by a deploy policy rather than by a person.
POLICY_TRIGGER = "policy"

#: Most CI variables, items or patches an artifact may carry (JSON nesting is limited by
#: the parser, and the whole body by MAX_BODY_BYTES).
MAX_ENTRIES = 1000
#: Most environment configs one artifact may carry.
MAX_ENVIRONMENTS = 200

#: No NUL characters: PostgreSQL cannot store them and no legitimate value has one.
_NO_NUL = r"^[^\x00]*$"
#: Names stored in indexed columns (repository, branch, tag): at most 512 characters.
Name = Annotated[str, StringConstraints(max_length=512, pattern=_NO_NUL)]
#: A commit sha: at most 128 characters (SHA-256 object names are 64).
Sha = Annotated[str, StringConstraints(max_length=128, pattern=_NO_NUL)]
#: A string that must not be absurdly long: emails, URLs, policy globs.
ShortText = Annotated[str, StringConstraints(max_length=4096, pattern=_NO_NUL)]
#: Free text such as commit messages and YAML documents.
LongText = Annotated[str, StringConstraints(max_length=1_048_576, pattern=_NO_NUL)]


def finite_json(value: Any) -> Any:
    """`value`, a JSON value, when every number in it is finite; else ValueError.

    JSON has no NaN or infinity, yet the parser takes `NaN`, `Infinity` and
    `1e400`; stored, such a number would silently come back as null.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"numbers must be finite, not {item}")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


#: Any JSON value, numbers finite (see `finite_json`).
JsonValue = Annotated[Any, AfterValidator(finite_json)]


class Model(BaseModel):
    """Base of the wire models: unknown fields are kept, so newer clients are not refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="after")
    def _unknown_fields_are_json(self) -> Model:
        if self.model_extra:
            finite_json(self.model_extra)
        return self

    def to_json(self) -> dict[str, Any]:
        """The JSON form, without fields that were never set or are null."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json_text(self) -> str:
        """`to_json` as text, serialised by pydantic's core: for storing, not for reading."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


def check_dns_label(value: str, what: str) -> str:
    """Return `value` if it is a DNS-1123 label, else raise ValueError naming `what`.

    Labels become directory names in the GitOps repository and Kubernetes object
    names, so `../x`, `a/b`, upper case and empty names are refused here.
    """
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > DNS_LABEL_MAX:
        raise ValueError(f"{what} {value!r} is longer than {DNS_LABEL_MAX} characters")
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} is not a DNS-1123 label: use lower case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_ref_name(value: str) -> str:
    """Return `value` if git accepts it as a branch or tag name, else raise ValueError.

    git's rules (`git check-ref-format`): no control characters, spaces or any of
    `~^:?*[\\`, no `..` or `@{`, no component starting with `.` or ending in
    `.lock`, no leading `-` or `/`, no trailing `/` or `.`, and not `@` alone.
    """
    problem = None
    if _REF_FORBIDDEN.search(value):
        problem = "a control character, a space or one of ~^:?*[\\"
    elif ".." in value or "@{" in value or "//" in value:
        problem = "'..', '@{' or '//'"
    elif value.startswith(("-", "/")) or value.endswith(("/", ".")) or value == "@":
        problem = "a leading '-' or '/', a trailing '/' or '.', or '@' alone"
    elif any(part.startswith(".") or part.endswith(".lock") for part in value.split("/")):
        problem = "a part starting with '.' or ending in '.lock'"
    if problem is not None:
        raise ValueError(f"{value[:80]!r} is not a git branch or tag name: it has {problem}")
    return value


def _label_or_template(value: str, what: str) -> str:
    """A name that is either a DNS-1123 label already or a template checked once resolved."""
    if TEMPLATE_MARK in value:
        return value
    return check_dns_label(value, what)


class GitEvent(enum.StrEnum):
    """The kind of git event a CI run was triggered by."""

    PUSH = "push"
    TAG = "tag"
    PR = "pr"


class CleanupEvent(enum.StrEnum):
    """What makes a preview environment go away."""

    BRANCH_DELETED = "branchDeleted"
    PR_CLOSED = "prClosed"


class Version(Model):
    """The source commit an artifact was built from."""

    repository_name: Name = Field(default="", alias="repositoryName")
    sha: Sha = ""
    created: int | None = None
    branch: Name = ""
    event: GitEvent | None = None
    source_branch: Name = Field(default="", alias="sourceBranch")
    target_branch: Name = Field(default="", alias="targetBranch")
    tag: Name = ""
    author_name: ShortText = Field(default="", alias="authorName")
    author_email: ShortText = Field(default="", alias="authorEmail")
    committer_name: ShortText = Field(default="", alias="committerName")
    committer_email: ShortText = Field(default="", alias="committerEmail")
    message: LongText = ""
    url: ShortText = ""

    def check_refs(self) -> None:
        """Raise ValueError naming the field unless the branches, tag and sha are git's.

        Checked where an artifact is accepted, not when stored ones are read, so
        an artifact accepted by an earlier version stays readable.
        """
        for field in ("branch", "source_branch", "target_branch", "tag"):
            value = getattr(self, field)
            if value:
                try:
                    check_ref_name(value)
                except ValueError as exc:
                    raise ValueError(f"version.{_ALIASES.get(field, field)}: {exc}") from None
        if self.sha and not COMMIT_SHA.match(self.sha):
            raise ValueError(
                f"version.sha: {self.sha[:80]!r} is not a commit sha: 7 to 64 hexadecimal digits"
            )


class DeployPolicy(Model):
    """Which artifacts an environment releases automatically.

    `branch` applies to push and pr events, `tag` to tag events; both are globs
    where a leading `!` negates. `event`, when given, must match too.
    """

    branch: ShortText = ""
    tag: ShortText = ""
    event: GitEvent | None = None


class CleanupPolicy(Model):
    """When a preview app is deleted.

    On `event` (a deleted branch or a closed pull request) for branches matching
    the `branch` glob, the app named by the `app` template (BRANCH is its only
    variable) is deleted. With `ttl` (`72h`, `7d`), the app this environment
    config released is also deleted once it has not been released for that long.
    """

    app: ShortText = ""
    event: CleanupEvent | None = None
    branch: ShortText = ""
    ttl: ShortText | None = None


class Chart(Model):
    """Where a Helm chart comes from: a chart repository, OCI reference, git URL or path."""

    repository: ShortText = ""
    name: ShortText = ""
    version: ShortText = ""


class PatchTarget(Model):
    """The resource a JSON 6902 patch applies to."""

    group: ShortText = ""
    version: ShortText = ""
    kind: ShortText = ""
    name: ShortText = ""


class Json6902Patch(Model):
    """A JSON Patch (RFC 6902), as YAML or JSON text, and the resource it targets."""

    patch: LongText
    target: PatchTarget


class Manifest(Model):
    """An environment config: how one app is released to one environment.

    Called `Manifest` as in the Go original (`.gimlet/*.yaml` files); in prose
    and messages it is the "environment config".
    """

    app: ShortText
    env: ShortText
    namespace: ShortText = ""
    deploy: DeployPolicy | None = None
    cleanup: CleanupPolicy | None = None
    chart: Chart | None = None
    values: dict[str, JsonValue] = Field(default_factory=dict)
    strategic_merge_patches: LongText = Field(default="", alias="strategicMergePatches")
    json6902_patches: list[Json6902Patch] = Field(
        default_factory=list, alias="json6902Patches", max_length=MAX_ENTRIES
    )
    manifests: LongText = ""

    @field_validator("app")
    @classmethod
    def _app_is_label(cls, value: str) -> str:
        return _label_or_template(value, "app")

    @field_validator("env")
    @classmethod
    def _env_is_label(cls, value: str) -> str:
        return _label_or_template(value, "env")

    @field_validator("namespace")
    @classmethod
    def _namespace_is_label(cls, value: str) -> str:
        return value if not value else _label_or_template(value, "namespace")

    def check_resolved_names(self) -> None:
        """Raise ValueError unless `app`, `env` and `namespace` are labels after templating."""
        check_dns_label(self.app, "app")
        check_dns_label(self.env, "env")
        if self.namespace:
            check_dns_label(self.namespace, "namespace")


class Artifact(Model):
    """What CI pushes: the releasable version and everything needed to release it."""

    id: ShortText = ""
    created: int | None = None
    version: Version = Field(default_factory=Version)
    context: dict[ShortText, LongText] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    environments: list[Manifest] = Field(default_factory=list, max_length=MAX_ENVIRONMENTS)
    items: list[dict[str, JsonValue]] = Field(default_factory=list, max_length=MAX_ENTRIES)


class Release(Model):
    """The release record written to `<env>/<app>/release.json`."""

    app: str
    env: str
    artifact_id: str = Field(alias="artifactId")
    triggered_by: str = Field(alias="triggeredBy")
    version: Version | None = None
    gitops_ref: str = Field(default="", alias="gitopsRef")
    gitops_repo: str = Field(default="", alias="gitopsRepo")
    created: int | None = None
    rolled_back: bool = Field(default=False, alias="rolledBack")
    event_id: str = Field(default="", alias="eventId")


class EventType(enum.StrEnum):
    """What an event asks the workers to do."""

    ARTIFACT = "artifact"
    RELEASE = "release"
    ROLLBACK = "rollback"
    DELETE = "delete"
    #: A branch of an application repository was deleted: clean up its preview apps.
    BRANCH_DELETED = "branchDeleted"
    #: A pull request was closed, merged or not: clean up its preview apps.
    PR_CLOSED = "prClosed"
    #: Flux reported on applying a GitOps commit.
    FLUX = "fluxEvent"


class WriteKind(enum.StrEnum):
    """What a GitOps write does to `<env>/<app>/`."""

    RELEASE = "release"  # replace it with rendered files
    ROLLBACK = "rollback"  # restore it as it was at an earlier release commit
    DELETE = "delete"  # remove it


class EventStatus(enum.StrEnum):
    """An event's life: `new` until every environment has an outcome.

    The Go original's clients poll while the status is `new`, so there is no
    separate "processing" status: progress shows in the event's `results`.
    """

    NEW = "new"
    PROCESSED = "processed"
    ERROR = "error"


class ResultStatus(enum.StrEnum):
    """What became of one environment of an event."""

    PENDING = "pending"
    APPLYING = "applying"
    SUCCESS = "success"
    UNCHANGED = "unchanged"
    SUPERSEDED = "superseded"
    FAILURE = "failure"

    @property
    def terminal(self) -> bool:
        return self not in (ResultStatus.PENDING, ResultStatus.APPLYING)


class Result(Model):
    """The outcome of one (event, env, app)."""

    app: str
    env: str
    hash: str = ""
    status: ResultStatus
    status_desc: str = Field(default="", alias="statusDesc")
    #: What Flux said of the commit: `ReconciliationSucceeded`, `...Failed`, `Progressing`.
    gitops_commit_status: str = Field(default="", alias="gitopsCommitStatus")
    gitops_commit_status_desc: str = Field(default="", alias="gitopsCommitStatusDesc")


class GitopsHash(Model):
    """A GitOps commit an event produced, as the original's clients read it.

    `status` is what Flux said of applying it (empty until Flux reports).
    """

    hash: str
    status: str = ""
    status_desc: str = Field(default="", alias="statusDesc")
    env: str = ""
    app: str = ""


class DeliveryStatus(enum.StrEnum):
    """Where the sending of a notice to one target is."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # given up on; `statusDesc` says why
    SKIPPED = "skipped"  # not sent, as it would undo a newer message; `statusDesc` says why


class NotificationStatus(Model):
    """A notification of an event, to one target, and whether it got there."""

    kind: str
    target: str
    env: str
    app: str = ""
    status: DeliveryStatus
    status_desc: str = Field(default="", alias="statusDesc")
    attempts: int = 0


class Event(Model):
    """An accepted request for work, with the artifact's fields denormalised for queries."""

    id: str
    created: int
    type: EventType
    status: EventStatus
    status_desc: str = Field(default="", alias="statusDesc")
    repository: str = ""
    branch: str = ""
    event: str = ""
    source_branch: str = Field(default="", alias="sourceBranch")
    target_branch: str = Field(default="", alias="targetBranch")
    tag: str = ""
    sha: str = ""
    artifact_id: str = Field(default="", alias="artifactID")
    triggered_by: str = Field(default="", alias="triggeredBy")
    gitops_hashes: list[GitopsHash] = Field(default_factory=list, alias="gitopsHashes")
    results: list[Result] = Field(default_factory=list)
    notifications: list[NotificationStatus] = Field(default_factory=list)


class Hold(Model):
    """Keeps policy deploys off an env/app, placed by a rollback or a release of an older artifact.

    `commit` is the release commit whose content the hold protects.
    """

    env: str
    app: str
    reason: str
    placed_by: str = Field(alias="placedBy")
    event_id: str = Field(default="", alias="eventId")
    commit: str = ""
    created: int


class EnvLock(Model):
    """A freeze of an environment: no writes until it is lifted (forced ones excepted)."""

    env: str
    reason: str
    locked_by: str = Field(alias="lockedBy")
    created: int


class HistoryEntry(Release):
    """A release in the history: the release record of one GitOps commit and what became of it."""

    kind: WriteKind = WriteKind.RELEASE
    hold: Hold | None = None
    flux_status: str | None = Field(default=None, alias="fluxStatus")
    flux_status_desc: str | None = Field(default=None, alias="fluxStatusDesc")


class Role(enum.StrEnum):
    """What a token may do.

    `ci` pushes artifacts, reports deleted branches and reads: what a pipeline
    gets. `user` may also release, roll back, delete, lock and lift holds, in
    the environments of its allow-list (all of them without one). `admin` may
    do everything, manage users, read the audit trail and force through locks.
    """

    ADMIN = "admin"
    CI = "ci"
    USER = "user"


class UserInfo(Model):
    """A user as the API shows it: never its token, only when the token was issued."""

    login: str
    role: Role
    #: The environments a `user` may write to; None for every one.
    envs: list[str] | None = None
    created: int
    token_issued: int = Field(alias="tokenIssued")
    #: When the token stops working (Unix seconds); None for never.
    expires_at: int | None = Field(default=None, alias="expiresAt")

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_write(self, env: str) -> bool:
        """Whether the user may release, roll back, delete, lock or lift holds in `env`."""
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.USER and (self.envs is None or env in self.envs)


class AuditEntry(Model):
    """One write someone made through the API: who, when, from where, and what."""

    id: int = 0
    at: float
    login: str
    address: str = ""
    action: str
    target: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)
    event_id: str = Field(default="", alias="eventId")
