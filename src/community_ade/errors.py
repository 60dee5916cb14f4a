"""Domain errors. They carry a stable ``code`` and no HTTP knowledge; ``api/`` maps codes
to status codes, the CLI prints the message."""

from __future__ import annotations

from typing import Any


class AdeError(Exception):
    """Base of every error Community ADE raises on purpose."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(AdeError):
    """The caller asked for something malformed; nothing was done."""

    code = "validation_failed"


class NotFound(AdeError):
    code = "not_found"


class Unauthenticated(AdeError):
    """No valid credentials (missing, unknown, expired or revoked token; wrong password)."""

    code = "unauthenticated"


class Forbidden(AdeError):
    """Authenticated, but the role lacks the permission for this action."""

    code = "forbidden"


class Conflict(AdeError):
    """The request clashes with the current state (a duplicate name, a concurrent edit)."""

    code = "conflict"


class InvalidTransition(AdeError):
    """A task was asked to move along an edge its lifecycle does not have."""

    code = "invalid_transition"


class StalePreview(AdeError):
    """A decision named a preview digest that is no longer the task's current one."""

    code = "stale_preview"


class AlreadyDecided(AdeError):
    """The task is decided, or this reviewer already decided otherwise on this preview."""

    code = "already_decided"


class NotEligible(AdeError):
    """The actor may not take this decision (not a required reviewer, out of scope)."""

    code = "not_eligible"


class SelfReview(NotEligible):
    """Separation of duties: a submitter (or the owner of the submitting agent) may not
    approve its own task, directly or through delegation."""

    code = "self_review"


class FreshAuthRequired(AdeError):
    """Step-up: this decision needs a more recent login than the caller's (``max_age``
    seconds, a detail); the dashboard sends the person through the identity provider."""

    code = "fresh_auth_required"


class ServiceUnavailable(AdeError):
    """A backing service (Redis, the database) could not be reached or started."""

    code = "service_unavailable"


class LockError(AdeError):
    """Base of the lock manager's errors."""

    code = "lock_error"


class LockTimeout(LockError):
    """The request was not granted within its timeout; it left every queue."""

    code = "lock_timeout"


class DeadlockDetected(LockError):
    """This request was chosen as the victim of a waits-for cycle and left every queue."""

    code = "deadlock_detected"

    def __init__(self, message: str, cycle: list[dict[str, Any]]) -> None:
        super().__init__(message, cycle=cycle)
        self.cycle = cycle


class LockLost(LockError):
    """The grant ended while its holder still believed it held it (lease expired,
    force release): work under it must stop."""

    code = "lock_lost"


class FenceRejected(LockError):
    """A write carried a fencing token older than one the target has already seen."""

    code = "fence_rejected"

    def __init__(self, message: str, fence: int, newest: int) -> None:
        super().__init__(message, fence=fence, newest=newest)
        self.fence = fence
        self.newest = newest


class RateLimited(AdeError):
    """Too many attempts or calls: wait ``retry_after`` seconds (a detail) and retry."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after
