"""Every error GimletD raises on purpose, split by what the caller does next.

    GimletdError
    ├── InputError              the caller sent something invalid: answer 4xx, change nothing
    │   ├── NotFound            the thing named does not exist (404)
    │   ├── TemplateError       a `{{ }}` template cannot be parsed or evaluated
    │   ├── PolicyError         a deploy or cleanup policy is malformed
    │   ├── RenderError         an environment config cannot be turned into manifests
    │   └── UnsafeYAML          YAML that is too large, too deep or uses aliases
    ├── Conflict                the request clashes with stored state (409)
    ├── RetryableError          the outside world failed; trying again later may succeed
    │   ├── GitOpsError         the GitOps repository could not be read or written
    │   │   └── PushRejected    the remote moved on; fetch and re-apply
    │   ├── ChartSourceError    a chart could not be fetched from its source
    │   ├── AppRepoError        an application repository's branches could not be listed
    │   ├── StoreUnavailable    the database cannot be reached right now (503)
    │   └── WriteDeferred       a GitOps write failed and waits for its retry delay
    └── LockLost                another worker took over an environment's lock: stop

`RenderError` and `ChartSourceError` are failures of one environment of one
artifact: the worker records them on that environment and goes on with the others.
"""

from __future__ import annotations


class GimletdError(Exception):
    """Base of every error GimletD raises on purpose."""


class InputError(GimletdError):
    """The input is invalid; the message says which field and how to fix it."""

    status_code = 400


class NotFound(InputError):
    """A named artifact, event or user does not exist."""

    status_code = 404


class TemplateError(InputError):
    """A template cannot be parsed, or names a variable or function that does not exist."""

    status_code = 422


class PolicyError(InputError):
    """A deploy or cleanup policy cannot be compiled (for example a bad glob)."""

    status_code = 422


class RenderError(InputError):
    """An environment config cannot be turned into Kubernetes resources."""

    status_code = 422


class UnsafeYAML(InputError):
    """YAML input that exceeds the size, depth or alias limits."""

    status_code = 422


class Conflict(GimletdError):
    """The request clashes with stored state, such as a duplicate id."""

    status_code = 409


class RetryableError(GimletdError):
    """An outside system failed; the same operation may succeed later."""


class GitOpsError(RetryableError):
    """The GitOps repository could not be fetched, read, committed to or pushed."""


class PushRejected(GitOpsError):
    """The remote refused a push because its branch moved on."""


class ChartSourceError(RetryableError):
    """A Helm chart could not be fetched from the source named in the environment config."""


class AppRepoError(RetryableError):
    """The branches of an application repository could not be listed; the next poll retries."""


class StoreUnavailable(RetryableError):
    """The database cannot be reached; callers answer 503 and retry."""

    status_code = 503


class WriteDeferred(RetryableError):
    """A GitOps write failed; it is kept waiting and should be retried after `delay` seconds."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


class LockLost(GimletdError):
    """This worker no longer holds an environment's lock; the new holder carries on."""
