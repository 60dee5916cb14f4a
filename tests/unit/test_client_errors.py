"""The SDK's exceptions: one per problem type the server can send, in the server's
hierarchy, carrying the document's fields."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import httpx

import community_ade
from community_ade.api.errors import STATUS_BY_CODE
from community_ade.client import errors
from community_ade.client.transport import _problem_document
from community_ade.errors import AdeError


def _domain_errors() -> set[type[AdeError]]:
    """Every AdeError subclass in the package (each module imported once)."""
    for module in pkgutil.walk_packages(community_ade.__path__, "community_ade."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[AdeError]] = set()
    pending = [AdeError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


def test_every_code_the_server_sends_has_its_class() -> None:
    domain = _domain_errors()
    # The API layer's own codes (api/errors.py: 405, a bare HTTP error, a bug).
    sent = (
        {e.code for e in domain}
        | set(STATUS_BY_CODE)
        | {
            "method_not_allowed",
            "http_error",
            "internal_error",
        }
    )
    assert sent <= set(errors.BY_TYPE), sent - set(errors.BY_TYPE)
    for error in domain:  # the server's hierarchy holds: except NotEligible catches SelfReview
        parent = error.__mro__[1]
        if parent is not AdeError and issubclass(parent, AdeError):
            assert issubclass(errors.BY_TYPE[error.code], errors.BY_TYPE[parent.code])


def test_a_document_becomes_its_class_with_its_fields() -> None:
    document = {
        "type": "self_review",
        "title": "Forbidden",
        "status": 403,
        "detail": "you submitted it",
        "actor": "u-1",
    }
    exc = errors.problem_for(document)
    assert type(exc) is errors.SelfReview
    assert isinstance(exc, errors.NotEligible)
    assert (exc.status, exc.detail, exc.actor, exc.fields) == (
        403,
        "you submitted it",
        "u-1",
        {"actor": "u-1"},
    )
    assert str(exc) == "self_review (403): you submitted it"
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is errors.SelfReview
    assert copy.document == document


def test_an_unknown_type_is_still_a_problem() -> None:
    exc = errors.problem_for({"type": "from_the_future", "status": 418, "detail": "?"})
    assert type(exc) is errors.AdeProblem
    assert exc.type == "from_the_future"


def test_an_answer_that_is_not_a_problem_document() -> None:
    html = httpx.Response(502, text="<h1>Bad Gateway</h1>", headers={"content-type": "text/html"})
    assert _problem_document(html)["type"] == "http_error"
    busy = httpx.Response(503, text="busy")
    assert _problem_document(busy)["type"] == "service_unavailable"
    problem = httpx.Response(409, json={"type": "conflict", "status": 409, "detail": "x"})
    assert _problem_document(problem)["type"] == "conflict"
