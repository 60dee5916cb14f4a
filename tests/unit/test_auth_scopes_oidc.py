"""Pure cores of sign-in and tokens: scope-limited principals, the scopes a token may
make, claims → identity (name, role, groups), and the step-up freshness check."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from community_ade.approvals.policy import (
    Policy,
    PolicyRule,
    check_fresh_auth,
    compute_requirements,
)
from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.service import requirements_document, requirements_from_document
from community_ade.auth.oidc import ClaimMapping, identity_from_claims
from community_ade.auth.principal import (
    HUMAN_ONLY,
    ROLE_PERMISSIONS,
    SCOPE_OF,
    Permission,
    Principal,
    Role,
    TokenScope,
    parse_scopes,
    require,
    scopes_for_new_token,
)
from community_ade.errors import Forbidden, FreshAuthRequired, InvalidInput
from community_ade.settings import Settings

ALL_SCOPE_SETS = [
    frozenset(c)
    for n in range(1, len(TokenScope) + 1)
    for c in itertools.combinations(TokenScope, n)
]
# Written out, not derived: which scope each permission needs.
EXPECTED_SCOPE = {
    "read": {
        "task_read",
        "agent_read",
        "delegation_read",
        "policy_read",
        "audit_read",
        "lock_read",
        "secret_read",
    },
    "submit": {"task_write", "lock_lease", "agent_write"},
    "review": {"review", "delegation_write"},
    "admin": {
        "policy_write",
        "lock_admin",
        "catalogue_write",
        "shell_profile_write",
        "user_admin",
        "secret_write",
        "webhook_admin",
    },
}


def principal(
    role: Role, kind: str = "human", scopes: frozenset[TokenScope] | None = None
) -> Principal:
    owner = uuid.uuid4() if kind == "agent" else None
    return Principal(uuid.uuid4(), kind, "p", role.value, frozenset(), owner, scopes)  # type: ignore[arg-type]


def test_every_permission_has_exactly_the_expected_scope() -> None:
    assert {p.value: s.value for p, s in SCOPE_OF.items()} == {
        p: s for s, ps in EXPECTED_SCOPE.items() for p in ps
    }
    assert set(SCOPE_OF) == set(Permission)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("kind", ["human", "agent"])
@pytest.mark.parametrize("scopes", [None, *ALL_SCOPE_SETS])
def test_a_scope_limited_principal_holds_its_role_within_its_scopes(
    role: Role, kind: str, scopes: frozenset[TokenScope] | None
) -> None:
    p = principal(role, kind, scopes)
    granted = ROLE_PERMISSIONS[role] - (HUMAN_ONLY if kind == "agent" else frozenset())
    for permission in Permission:
        covered = scopes is None or any(permission.value in EXPECTED_SCOPE[s] for s in scopes)
        expected = permission in granted and covered
        assert p.can(permission) is expected
        if expected:
            require(p, permission)
            continue
        with pytest.raises(Forbidden) as refused:
            require(p, permission)
        if permission in granted:  # the role would do: the scope is what is missing
            assert refused.value.details["missing_scope"] == SCOPE_OF[permission].value
            assert f"lacks the scope {SCOPE_OF[permission].value!r}" in refused.value.message
        else:
            assert "missing_scope" not in refused.value.details


def test_scopes_are_parsed_strictly() -> None:
    assert parse_scopes(["read", " review"]) == {TokenScope.READ, TokenScope.REVIEW}
    with pytest.raises(InvalidInput, match="unknown token scope 'write'"):
        parse_scopes(["read", "write"])
    with pytest.raises(InvalidInput, match="at least one scope"):
        parse_scopes([])


READ, REVIEW = frozenset({TokenScope.READ}), frozenset({TokenScope.READ, TokenScope.REVIEW})


@pytest.mark.parametrize(
    ("held", "asked", "made"),
    [
        (None, None, None),  # a full token makes a full one
        (None, READ, READ),
        (REVIEW, None, REVIEW),  # a limited one passes on its limits
        (REVIEW, READ, READ),
        (REVIEW, REVIEW, REVIEW),
    ],
)
def test_a_new_token_is_never_wider_than_the_one_asking(
    held: frozenset[TokenScope] | None,
    asked: frozenset[TokenScope] | None,
    made: frozenset[TokenScope] | None,
) -> None:
    assert scopes_for_new_token(principal(Role.ADMIN, scopes=held), asked) == made


def test_a_limited_token_cannot_make_a_wider_one() -> None:
    with pytest.raises(Forbidden) as refused:
        scopes_for_new_token(principal(Role.ADMIN, scopes=READ), REVIEW)
    assert refused.value.details["missing_scope"] == "review"


# -- claims → identity ---------------------------------------------------------------------

ISS = "https://idp.example.com"
MAPPING = ClaimMapping(
    group_map={"okta-dba": "db-owners", "okta-sre": "sre"},
    role_map={"ade-reviewers": "reviewer", "ade-admins": "admin", "ade-users": "submitter"},
)


def claims(**extra: object) -> dict[str, object]:
    return {"iss": ISS, "sub": "00u1", **extra}


@pytest.mark.parametrize(
    ("given", "username"),
    [
        ({"preferred_username": "Dana.Scully"}, "dana.scully"),
        ({"preferred_username": "dana@example.com"}, "dana"),
        ({"preferred_username": "ｄａｎａ"}, "dana"),  # fullwidth: NFKC
        ({"email": "Fox@example.com"}, "fox"),  # no username claim: the e-mail's local part
        ({"preferred_username": 7, "email": "fox@example.com"}, "fox"),  # not text: skipped
        ({}, "00u1"),  # nothing else: sub
    ],
)
def test_the_username_comes_from_the_configured_claim_then_email_then_sub(
    given: dict[str, object], username: str
) -> None:
    assert identity_from_claims(claims(**given), MAPPING).username == username


def test_groups_are_mapped_and_the_highest_role_wins() -> None:
    identity = identity_from_claims(
        claims(groups=["okta-dba", "unmapped", "ade-users", "ade-reviewers"], name="Dana"),
        MAPPING,
    )
    assert identity.groups == {"db-owners"}
    assert identity.role is Role.REVIEWER
    assert (identity.issuer, identity.subject, identity.display_name) == (ISS, "00u1", "Dana")


def test_without_a_group_map_valid_provider_names_are_used_as_they_are() -> None:
    identity = identity_from_claims(
        claims(groups=["DB-Owners", "has space", "x", "sre"]), ClaimMapping()
    )
    assert identity.groups == {"db-owners", "sre"}  # "x" too short, "has space" invalid
    assert identity.role is Role.VIEWER  # the default role


def test_a_single_group_string_counts_as_a_list() -> None:
    assert identity_from_claims(claims(groups="okta-sre"), MAPPING).groups == {"sre"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"iss": None}, "'iss' or 'sub'"),
        ({"sub": ""}, "'iss' or 'sub'"),
        ({"groups": {"a": 1}}, "list of at most"),
        ({"groups": [f"g{i}" for i in range(201)]}, "list of at most"),
    ],
)
def test_unusable_claims_are_refused(bad: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        identity_from_claims({**claims(), **bad}, MAPPING)


def test_a_mapping_naming_an_unknown_role_or_a_bad_group_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown role 'root'"):
        ClaimMapping(role_map={"x": "root"})
    with pytest.raises(InvalidInput, match="invalid group"):
        ClaimMapping(group_map={"x": "not a group"})


# -- step-up ------------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def requirements(risk: float, *rules: PolicyRule) -> object:
    return compute_requirements(Policy(version=1, rules=rules), "files.write", [], risk)


def test_fresh_auth_applies_at_or_above_the_rules_risk_and_the_shortest_wins() -> None:
    high = PolicyRule("high", ("*",), risk_min=70, fresh_auth=timedelta(minutes=5))
    any_risk = PolicyRule("any", ("*",), fresh_auth=timedelta(hours=1))
    assert requirements(69.9, high).fresh_auth is None  # type: ignore[attr-defined]
    assert requirements(70, high).fresh_auth == timedelta(minutes=5)  # type: ignore[attr-defined]
    both = requirements(90, high, any_risk)
    assert both.fresh_auth == timedelta(minutes=5)  # type: ignore[attr-defined]
    assert requirements_from_document(requirements_document(both), "files.write") == both  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("age", "fresh"),
    [
        (timedelta(0), True),
        (timedelta(minutes=5), True),  # exactly the limit
        (timedelta(minutes=5, seconds=1), False),
        (None, False),  # an API token: no login at all
    ],
)
def test_a_decision_needs_a_login_no_older_than_fresh_auth(
    age: timedelta | None, fresh: bool
) -> None:
    rule = PolicyRule("r", ("*",), fresh_auth=timedelta(minutes=5))
    req = compute_requirements(Policy(version=1, rules=(rule,)), "t", [], 10)
    auth_time = None if age is None else NOW - age
    if fresh:
        check_fresh_auth(req, auth_time, NOW)
        return
    with pytest.raises(FreshAuthRequired) as refused:
        check_fresh_auth(req, auth_time, NOW)
    assert refused.value.details["max_age"] == 300


def test_no_fresh_auth_rule_means_any_login_will_do() -> None:
    req = compute_requirements(Policy(version=1), "t", [], 99)
    check_fresh_auth(req, None, NOW)


@pytest.mark.parametrize("seconds", [0, -1, 30 * 86_400 + 1, "soon"])
def test_a_policy_with_a_bad_fresh_auth_is_refused(seconds: object) -> None:
    with pytest.raises(ValidationError):
        PolicyDocument.model_validate({"rules": [{"name": "r", "fresh_auth_seconds": seconds}]})
    with pytest.raises(InvalidInput, match="fresh_auth must be a positive duration"):
        PolicyRule("r", ("*",), fresh_auth=timedelta(0))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"oidc_issuer": "https://idp"}, "set ADE_OIDC_CLIENT_ID too"),
        ({"oidc_client_id": "c", "oidc_scopes": "profile email"}, "must include 'openid'"),
        ({"oidc_client_id": "c", "oidc_role_map": {"g": "root"}}, "unknown roles: root"),
    ],
)
def test_a_half_configured_provider_fails_at_start(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{"oidc_issuer": "https://idp", **settings})  # type: ignore[arg-type]
