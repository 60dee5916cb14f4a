"""Problem documents (RFC 9457) as exceptions, one class per ``type``, from one table.

The server answers every failure with ``{"type", "title", "status", "detail", …}``
(``api/errors.py``); the client raises the class named by ``type`` — ``StalePreview``,
``NotEligible``, ``ValidationFailed``, … — carrying the document's fields as attributes
(``exc.current_digest``, ``exc.errors``). A ``type`` this table does not know raises the
base ``AdeProblem``, so a newer server never breaks an older client.

The classes are made from ``PROBLEM_TYPES`` rather than written out one by one: the
table is the single list of what the server can send (a test checks it against the
server's own codes), and ``from community_ade.client.errors import StalePreview`` works
through the module's ``__getattr__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

M = TypeVar("M", bound=pydantic.BaseModel)


class AdeProblem(Exception):
    """A problem document the server answered with (or the client found before sending).

    Attributes:
        type: the stable code (``stale_preview``); switch on the class or on this.
        status: the HTTP status.
        title, detail: for people.
        fields: every other member of the document (``current_digest``, ``errors``, …),
            also readable as attributes: ``exc.current_digest``.
    """

    code = "problem"

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = dict(document)
        self.type = str(self.document.get("type", self.code))
        self.status = int(self.document.get("status", 0))
        self.title = str(self.document.get("title", ""))
        self.detail = str(self.document.get("detail", ""))
        standard = {"type", "title", "status", "detail"}
        self.fields = {k: v for k, v in self.document.items() if k not in standard}
        super().__init__(f"{self.type} ({self.status}): {self.detail}")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not real attributes: the document's fields.
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (problem_for, (self.document,))


# (type, class name, parent type): every problem type the server sends. A parent makes
# ``except NotEligible`` also catch ``SelfReview``, as in the server's own errors.
PROBLEM_TYPES: tuple[tuple[str, str, str | None], ...] = (
    ("validation_failed", "ValidationFailed", None),
    ("link_refused", "LinkRefused", "validation_failed"),
    ("model_unavailable", "ModelUnavailable", None),
    ("unauthenticated", "Unauthenticated", None),
    ("forbidden", "Forbidden", None),
    ("not_eligible", "NotEligible", None),
    ("self_review", "SelfReview", "not_eligible"),
    ("fresh_auth_required", "FreshAuthRequired", None),
    ("not_found", "NotFound", None),
    ("method_not_allowed", "MethodNotAllowed", None),
    ("conflict", "Conflict", None),
    ("invalid_transition", "InvalidTransition", None),
    ("stale_preview", "StalePreview", None),
    ("already_decided", "AlreadyDecided", None),
    ("lock_error", "LockError", None),
    ("lock_conflict", "LockConflict", "lock_error"),
    ("lock_timeout", "LockTimeout", "lock_error"),
    ("deadlock_detected", "DeadlockDetected", "lock_error"),
    ("lock_lost", "LockLost", "lock_error"),
    ("fence_rejected", "FenceRejected", "lock_error"),
    ("service_unavailable", "ServiceUnavailable", None),
    ("rate_limited", "RateLimited", None),
    ("payload_too_large", "PayloadTooLarge", None),
    ("message_too_big", "MessageTooBig", None),
    ("internal_error", "InternalError", None),
    ("git_failed", "GitFailed", "internal_error"),
    ("http_error", "HttpError", None),
)


def _build() -> dict[str, type[AdeProblem]]:
    classes: dict[str, type[AdeProblem]] = {}
    for code, name, parent in PROBLEM_TYPES:
        base = AdeProblem if parent is None else classes[parent]
        doc = f"The server answered a problem document of type ``{code}``."
        classes[code] = type(name, (base,), {"code": code, "__doc__": doc, "__module__": __name__})
    return classes


BY_TYPE: dict[str, type[AdeProblem]] = _build()
_BY_NAME = {cls.__name__: cls for cls in BY_TYPE.values()}

__all__ = [
    "BY_TYPE",
    "PROBLEM_TYPES",
    "AdeProblem",
    *_BY_NAME,
    "problem_for",
    "request_invalid",
    "validated",
]


def __getattr__(name: str) -> type[AdeProblem]:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_BY_NAME))


def problem_for(document: Mapping[str, Any]) -> AdeProblem:
    """The exception for a problem document: its ``type``'s class, else ``AdeProblem``."""
    return BY_TYPE.get(str(document.get("type")), AdeProblem)(document)


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """A request body checked by the server's own model before it is sent.

    Raises:
        ValidationFailed: as the server would have answered it.
    """
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise request_invalid(exc, "body") from None


def request_invalid(error: pydantic.ValidationError, *where: str) -> AdeProblem:
    """A request the client refused to send, in the shape the server would have answered
    (``422 validation_failed`` with ``errors: [{loc, msg, type}]``); ``where`` starts
    each ``loc`` (``"body"``, or ``"path", "task_id"``)."""
    errors = [
        {"loc": [*where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors()
    ]
    return problem_for(
        {
            "type": "validation_failed",
            "title": "Unprocessable content",
            "status": 422,
            "detail": "the request is not valid",
            "errors": errors,
        }
    )
