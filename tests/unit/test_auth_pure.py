"""The pure side of auth: the role × permission matrix, tokens and the password policy."""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid

import pytest
from argon2 import PasswordHasher

from community_ade.auth import passwords, tokens
from community_ade.auth.principal import (
    HUMAN_ONLY,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
    require,
)
from community_ade.errors import Forbidden, InvalidInput, Unauthenticated
from community_ade.storage.models import ROLES

# -- the matrix, written out independently of the module --------------------------------------

# Columns: viewer, submitter, reviewer, admin, and an agent (which acts as a submitter).
EXPECTED = """
permission        viewer submitter reviewer admin agent
task_read           x       x         x       x     x
agent_read          x       x         x       x     x
delegation_read     x       x         x       x     x
policy_read         x       x         x       x     x
audit_read          x       x         x       x     x
lock_read           x       x         x       x     x
task_write          .       x         x       x     x
lock_lease          .       x         x       x     x
agent_write         .       x         x       x     .
review              .       .         x       x     .
delegation_write    .       .         x       x     .
policy_write        .       .         .       x     .
lock_admin          .       .         .       x     .
catalogue_write     .       .         .       x     .
shell_profile_write .       .         .       x     .
user_admin          .       .         .       x     .
secret_read         .       x         x       x     x
secret_write        .       .         .       x     .
webhook_admin       .       .         .       x     .
"""


def _expected() -> dict[tuple[str, str], bool]:
    header, *rows = EXPECTED.strip().splitlines()
    columns = header.split()[1:]
    table: dict[tuple[str, str], bool] = {}
    for row in rows:
        permission, *marks = row.split()
        assert len(marks) == len(columns), row
        for column, mark in zip(columns, marks, strict=True):
            assert mark in {"x", "."}, row
            table[(column, permission)] = mark == "x"
    return table


TABLE = _expected()
COLUMNS = ("viewer", "submitter", "reviewer", "admin", "agent")
OWNER = uuid.uuid4()


def _principal(column: str) -> Principal:
    if column == "agent":
        return Principal(uuid.uuid4(), "agent", "bot", "submitter", frozenset(), owner_id=OWNER)
    return Principal(uuid.uuid4(), "human", f"a-{column}", column, frozenset({"g"}))


def test_the_expected_table_covers_every_role_and_permission() -> None:
    assert {p for (_, p) in TABLE} == {p.value for p in Permission}
    assert set(COLUMNS) - {"agent"} == {r.value for r in Role} == set(ROLES)
    assert len(TABLE) == len(Permission) * len(COLUMNS)


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("permission", list(Permission))
def test_role_permission_matrix(column: str, permission: Permission) -> None:
    principal = _principal(column)
    allowed = TABLE[(column, permission.value)]
    assert principal.can(permission) is allowed
    assert (permission in principal.permissions) is allowed
    if allowed:
        require(principal, permission)
    else:
        with pytest.raises(Forbidden) as caught:
            require(principal, permission)
        assert permission.value in caught.value.message
        assert principal.role in caught.value.message
        assert caught.value.details["permission"] == permission.value
        assert caught.value.details["role"] == principal.role


def test_roles_are_nested_and_admin_holds_everything() -> None:
    order = [Role.VIEWER, Role.SUBMITTER, Role.REVIEWER, Role.ADMIN]
    for weaker, stronger in itertools.pairwise(order):
        assert ROLE_PERMISSIONS[weaker] < ROLE_PERMISSIONS[stronger]
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


@pytest.mark.parametrize("role", list(Role))
def test_an_agent_never_reviews_whatever_its_role(role: Role) -> None:
    agent = Principal(uuid.uuid4(), "agent", "bot", role.value, frozenset(), owner_id=OWNER)
    assert not agent.permissions & HUMAN_ONLY
    with pytest.raises(Forbidden, match="agents never hold 'review'"):
        require(agent, Permission.REVIEW)


def test_forbidden_message_names_the_actor_role_and_permission() -> None:
    viewer = _principal("viewer")
    with pytest.raises(Forbidden) as caught:
        require(viewer, Permission.TASK_WRITE)
    assert caught.value.message == (
        "human 'a-viewer' (role viewer) may not do this: "
        "role 'viewer' lacks the permission 'task_write'"
    )


def test_principal_invariants_and_accountable_user() -> None:
    human = _principal("reviewer")
    assert human.user_id == human.id
    agent = _principal("agent")
    assert agent.user_id == OWNER != agent.id
    with pytest.raises(ValueError, match="owner"):
        Principal(uuid.uuid4(), "agent", "bot", "submitter", frozenset())
    with pytest.raises(ValueError, match="owner"):
        Principal(uuid.uuid4(), "human", "ann", "viewer", frozenset(), owner_id=OWNER)
    with pytest.raises(ValueError, match="role"):
        Principal(uuid.uuid4(), "human", "ann", "root", frozenset())


# -- tokens ---------------------------------------------------------------------------------

FORMAT = re.compile(r"ade_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")


@pytest.mark.parametrize(("kind", "mark"), [("user", "u"), ("agent", "a")])
def test_token_format_prefix_and_hash(kind: tokens.TokenKind, mark: str) -> None:
    issued = tokens.new_token(kind)
    assert FORMAT.fullmatch(issued.plaintext), issued.plaintext
    assert len(issued.plaintext) == 56
    assert issued.prefix == issued.plaintext[4:12]
    assert issued.prefix[0] == mark
    assert issued.token_hash == hashlib.sha256(issued.plaintext.encode()).hexdigest()
    assert len(issued.token_hash) == 64
    parsed = tokens.parse_token(issued.plaintext)
    assert (parsed.kind, parsed.prefix, parsed.token_hash) == (
        kind,
        issued.prefix,
        issued.token_hash,
    )
    assert tokens.hash_token(issued.plaintext) == issued.token_hash
    # The secret stays out of reprs (logs, tracebacks).
    assert issued.plaintext not in repr(issued)


def test_tokens_are_unique() -> None:
    issued = [tokens.new_token("user") for _ in range(2000)]
    assert len({t.plaintext for t in issued}) == 2000
    assert len({t.token_hash for t in issued}) == 2000
    assert len({t.prefix for t in issued}) == 2000
    secrets_ = {t.plaintext[13:] for t in issued}
    assert len(secrets_) == 2000


def _malformed() -> list[str]:
    good = tokens.new_token("user").plaintext
    prefix, secret = good[4:12], good[13:]
    return [
        "",
        "ade_",
        "ade__",
        good[:-1],
        good + "A",
        " " + good,
        good + "\n",
        f"Bearer {good}",
        "ADE_" + good[4:],
        f"ade-{prefix}_{secret}",
        f"ade_{prefix}-{secret}",
        f"ade_{prefix.upper()}_{secret}",
        f"ade_x{prefix[1:]}_{secret}",  # unknown kind mark
        f"ade_{prefix[:-1]}_{secret}A",
        f"ade_{prefix}_{secret[:-1]}=",
        f"ade_{prefix}_{secret[:-1]}.",
        f"ade_{prefix}_{secret[:-1]}é",
        f"ade_{prefix[:-1]}é_{secret}",
        good.replace("_", "__", 1)[:56],
        "x" * 10_000,
    ]


MALFORMED = _malformed()


# Indexed ids: the tokens are random, and parallel test runners need the same ids twice.
@pytest.mark.parametrize(
    "plaintext", MALFORMED, ids=[f"malformed{i}" for i in range(len(MALFORMED))]
)
def test_malformed_tokens_are_refused_with_one_message(plaintext: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        tokens.parse_token(plaintext)
    assert caught.value.message == tokens.INVALID_TOKEN
    with pytest.raises(Unauthenticated) as again:
        tokens.hash_token(plaintext)
    assert again.value.message == tokens.INVALID_TOKEN


def test_a_secret_may_contain_underscores_and_dashes() -> None:
    plaintext = "ade_u1234567_" + "_-" * 21 + "A"
    assert tokens.parse_token(plaintext).prefix == "u1234567"


# -- passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "é" * 11])
def test_passwords_shorter_than_twelve_characters_are_refused(password: str) -> None:
    with pytest.raises(InvalidInput, match="at least 12 characters"):
        passwords.hash_password(password)


def test_overlong_passwords_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at most"):
        passwords.hash_password("x" * (passwords.MAX_LENGTH + 1))


def test_hash_verify_and_rehash() -> None:
    password = "correct horse battery"
    hashed = passwords.hash_password("é" * 6 + "x" * 6)
    assert hashed.startswith("$argon2id$")
    assert passwords.verify_password(hashed, "é" * 6 + "x" * 6)
    hashed = passwords.hash_password(password)
    assert password not in hashed
    assert hashed != passwords.hash_password(password)  # salted
    assert passwords.verify_password(hashed, password) is True
    assert passwords.verify_password(hashed, password + "!") is False
    assert passwords.verify_password(hashed, "") is False
    assert passwords.verify_password("not a hash", password) is False
    assert passwords.verify_password(hashed, "x" * (passwords.MAX_LENGTH + 1)) is False
    assert passwords.needs_rehash(hashed) is False
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(password)
    assert passwords.verify_password(weaker, password) is True
    assert passwords.needs_rehash(weaker) is True
    assert passwords.needs_rehash("not a hash") is True
