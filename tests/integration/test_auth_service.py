"""Users, groups, agent identities and API tokens on real SQLite and PostgreSQL, and the
``users`` / ``tokens`` commands in a child process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import typer
from argon2 import PasswordHasher
from conftest import DEFAULT_SERVER_URL, unavailable
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.auth import Permission, passwords, require, service, tokens
from community_ade.cli.users import parse_duration
from community_ade.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from community_ade.storage import db
from community_ade.storage.models import ApiToken, User

Sessions = async_sessionmaker[AsyncSession]
PASSWORD = "correct horse battery"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def _user(sessions: Sessions, name: str, role: str, password: str | None = None) -> User:
    async with sessions.begin() as session:
        return await service.create_user(session, name, role, password=password)


async def _refusal(sessions: Sessions, plaintext: str, now: datetime = T0) -> str:
    async with sessions.begin() as session:
        with pytest.raises(Unauthenticated) as caught:
            await service.authenticate_token(session, plaintext, now=now)
    return caught.value.message


# -- users ----------------------------------------------------------------------------------


async def test_users_are_created_listed_and_found_by_name(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        ann = await service.create_user(session, "ann", "reviewer", display_name="Ann A.")
        await service.create_user(session, "bob.b_1-x", "viewer")
    async with sessions() as session:
        found = await service.get_user_by_name(session, "ann")
        assert (found.id, found.role, found.display_name) == (ann.id, "reviewer", "Ann A.")
        assert found.password_hash is None
        assert [u.username for u in await service.list_users(session)] == ["ann", "bob.b_1-x"]
        with pytest.raises(NotFound):
            await service.get_user_by_name(session, "nobody")


@pytest.mark.parametrize("username", ["ab", "Ann", "ann smith", "ann@x", "a" * 65, "", "änn"])
async def test_invalid_usernames_are_refused(sessions: Sessions, username: str) -> None:
    async with sessions.begin() as session:
        with pytest.raises(InvalidInput, match="username"):
            await service.create_user(session, username, "viewer")


async def test_invalid_roles_and_short_passwords_are_refused(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        with pytest.raises(InvalidInput, match="unknown role 'root'"):
            await service.create_user(session, "ann", "root")
        with pytest.raises(InvalidInput, match="at least 12"):
            await service.create_user(session, "ann", "viewer", password="x" * 11)
    async with sessions() as session:
        assert await service.list_users(session) == []


async def test_duplicate_usernames_conflict(sessions: Sessions) -> None:
    await _user(sessions, "ann", "viewer")
    async with sessions.begin() as session:
        with pytest.raises(Conflict, match="'ann' already exists"):
            await service.create_user(session, "ann", "admin")


async def test_a_concurrent_duplicate_is_a_conflict_too(sessions: Sessions) -> None:
    """Both transactions pass the existence check; the unique index decides, and the loser
    gets Conflict, not a raw database error."""
    async with sessions() as first, sessions() as second:
        await first.begin()
        await second.begin()
        await service.create_user(first, "ann", "viewer")  # flushed, not committed
        racing = asyncio.create_task(service.create_user(second, "ann", "admin"))
        await asyncio.sleep(0.3)  # the second insert now waits on the first's row
        assert not racing.done()
        await first.commit()
        with pytest.raises(Conflict, match="'ann' already exists"):
            await racing
        await second.rollback()


# -- passwords ------------------------------------------------------------------------------


async def test_password_login_gives_the_users_principal(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "reviewer", PASSWORD)
    async with sessions.begin() as session:
        group = await service.create_group(session, "db-owners")
        await service.add_member(session, group.id, ann.id)
    async with sessions.begin() as session:
        principal = await service.authenticate_password(session, "ann", PASSWORD)
    assert (principal.id, principal.kind, principal.name, principal.role) == (
        ann.id,
        "human",
        "ann",
        "reviewer",
    )
    assert principal.groups == frozenset({"db-owners"})
    assert principal.owner_id is None
    require(principal, Permission.REVIEW)


async def test_password_is_stored_as_an_argon2id_hash(sessions: Sessions) -> None:
    await _user(sessions, "ann", "viewer", PASSWORD)
    async with sessions() as session:
        stored = (await session.execute(text("SELECT password_hash FROM users"))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_every_password_refusal_says_the_same(sessions: Sessions) -> None:
    await _user(sessions, "ann", "viewer", PASSWORD)
    await _user(sessions, "tok", "viewer")  # tokens only: no password
    dis = await _user(sessions, "dis", "viewer", PASSWORD)
    async with sessions.begin() as session:
        await service.disable_user(session, dis.id)
    messages = set()
    for username, password in [
        ("ann", PASSWORD + "!"),  # wrong password
        ("ann", ""),
        ("nobody", PASSWORD),  # unknown user
        ("Not A Name", PASSWORD),
        ("tok", PASSWORD),  # no password set
        ("dis", PASSWORD),  # disabled, right password
    ]:
        async with sessions.begin() as session:
            with pytest.raises(Unauthenticated) as caught:
                await service.authenticate_password(session, username, password)
        messages.add(caught.value.message)
    assert messages == {service.INVALID_LOGIN}


async def test_set_password_replaces_the_old_one(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "viewer", PASSWORD)
    async with sessions.begin() as session:
        with pytest.raises(InvalidInput):
            await service.set_password(session, ann.id, "too short")
        await service.set_password(session, ann.id, "another good passphrase")
    async with sessions.begin() as session:
        with pytest.raises(Unauthenticated):
            await service.authenticate_password(session, "ann", PASSWORD)
    async with sessions.begin() as session:
        principal = await service.authenticate_password(session, "ann", "another good passphrase")
    assert principal.id == ann.id


# -- tokens ---------------------------------------------------------------------------------


async def test_user_token_authenticates_and_only_its_hash_is_stored(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "submitter")
    async with sessions.begin() as session:
        plaintext, row = await service.create_token(session, name="laptop", user_id=ann.id)
    assert tokens.parse_token(plaintext).kind == "user"
    assert row.prefix == plaintext[4:12]
    async with sessions.begin() as session:
        principal = await service.authenticate_token(session, plaintext, now=T0)
    assert (principal.id, principal.kind, principal.role, principal.owner_id) == (
        ann.id,
        "human",
        "submitter",
        None,
    )
    # Straight from the table: the sha256 of the token, and the token nowhere.
    async with sessions() as session:
        rows = (await session.execute(text("SELECT * FROM api_tokens"))).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext[13:]
    for value in rows[0].values():
        assert secret not in str(value)


async def test_agent_token_acts_as_submitter_for_its_owner(sessions: Sessions) -> None:
    owner = await _user(sessions, "ann", "admin")
    async with sessions.begin() as session:
        agent = await service.create_agent_identity(session, "release-bot", owner.id)
        plaintext, row = await service.create_token(session, name="ci", agent_id=agent.id)
    assert (row.user_id, row.agent_id) == (None, agent.id)
    assert tokens.parse_token(plaintext).kind == "agent"
    async with sessions.begin() as session:
        principal = await service.authenticate_token(session, plaintext, now=T0)
    assert (principal.id, principal.kind, principal.name) == (agent.id, "agent", "release-bot")
    assert principal.role == "submitter"  # not its owner's admin
    assert principal.owner_id == owner.id
    assert principal.user_id == owner.id
    assert principal.groups == frozenset()
    require(principal, Permission.TASK_WRITE)
    with pytest.raises(Forbidden):
        require(principal, Permission.REVIEW)


async def test_agents_need_an_owner_who_may_submit(sessions: Sessions) -> None:
    viewer = await _user(sessions, "vic", "viewer")
    submitter = await _user(sessions, "sam", "submitter")
    async with sessions.begin() as session:
        with pytest.raises(InvalidInput, match="cannot own an agent"):
            await service.create_agent_identity(session, "bot-1", viewer.id)
        with pytest.raises(NotFound):
            await service.create_agent_identity(session, "bot-1", uuid.uuid4())
        with pytest.raises(InvalidInput, match="agent name"):
            await service.create_agent_identity(session, "ab", submitter.id)
        await service.create_agent_identity(session, "bot-1", submitter.id)
    async with sessions.begin() as session:
        with pytest.raises(Conflict):
            await service.create_agent_identity(session, "bot-1", submitter.id)


async def test_an_agent_never_holds_more_than_its_owner(sessions: Sessions) -> None:
    sam = await _user(sessions, "sam", "submitter")
    async with sessions.begin() as session:
        agent = await service.create_agent_identity(session, "bot-1", sam.id)
        plaintext, _ = await service.create_token(session, name="ci", agent_id=agent.id)
    async with sessions.begin() as session:
        (await session.get(User, sam.id)).role = "viewer"  # type: ignore[union-attr]
    async with sessions.begin() as session:
        principal = await service.authenticate_token(session, plaintext, now=T0)
    assert principal.role == "viewer"
    with pytest.raises(Forbidden):
        require(principal, Permission.TASK_WRITE)


async def test_a_token_has_exactly_one_owner(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "submitter")
    async with sessions.begin() as session:
        agent = await service.create_agent_identity(session, "bot-1", ann.id)
        with pytest.raises(InvalidInput, match="exactly one owner"):
            await service.create_token(session, name="x")
        with pytest.raises(InvalidInput, match="exactly one owner"):
            await service.create_token(session, name="x", user_id=ann.id, agent_id=agent.id)
        with pytest.raises(InvalidInput, match="exactly one owner"):
            await service.list_tokens(session)
        with pytest.raises(NotFound):
            await service.create_token(session, name="x", user_id=uuid.uuid4())
        with pytest.raises(NotFound):
            await service.create_token(session, name="x", agent_id=uuid.uuid4())
        with pytest.raises(InvalidInput, match="token name"):
            await service.create_token(session, name="  ", user_id=ann.id)


async def test_expired_tokens_are_refused(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "viewer")
    expires = datetime.now(UTC) + timedelta(hours=1)
    async with sessions.begin() as session:
        plaintext, _ = await service.create_token(
            session, name="short", user_id=ann.id, expires_at=expires
        )
        with pytest.raises(InvalidInput, match="past"):
            await service.create_token(
                session, name="x", user_id=ann.id, expires_at=expires - timedelta(hours=2)
            )
        with pytest.raises(InvalidInput, match="timezone"):
            await service.create_token(
                session, name="x", user_id=ann.id, expires_at=expires.replace(tzinfo=None)
            )
    async with sessions.begin() as session:
        before = expires - timedelta(seconds=1)
        assert (await service.authenticate_token(session, plaintext, now=before)).id == ann.id
    assert await _refusal(sessions, plaintext, now=expires) == tokens.INVALID_TOKEN
    assert await _refusal(sessions, plaintext, now=expires + timedelta(days=1))


async def test_revoked_tokens_are_refused(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "viewer")
    async with sessions.begin() as session:
        plaintext, row = await service.create_token(session, name="laptop", user_id=ann.id)
        other, _ = await service.create_token(session, name="desktop", user_id=ann.id)
    async with sessions.begin() as session:
        first = await service.revoke_token(session, row.id, now=T0)
        again = await service.revoke_token(session, row.id, now=T0 + timedelta(hours=1))
        with pytest.raises(NotFound):
            await service.revoke_token(session, uuid.uuid4())
    assert first.revoked_at == again.revoked_at == T0
    assert await _refusal(sessions, plaintext) == tokens.INVALID_TOKEN
    async with sessions.begin() as session:  # the other token is untouched
        assert (await service.authenticate_token(session, other, now=T0)).id == ann.id


async def test_tokens_of_a_disabled_user_and_of_its_agents_are_refused(
    sessions: Sessions,
) -> None:
    ann = await _user(sessions, "ann", "submitter")
    async with sessions.begin() as session:
        agent = await service.create_agent_identity(session, "bot-1", ann.id)
        user_token, _ = await service.create_token(session, name="laptop", user_id=ann.id)
        agent_token, _ = await service.create_token(session, name="ci", agent_id=agent.id)
    async with sessions.begin() as session:
        await service.disable_user(session, ann.id)
    assert await _refusal(sessions, user_token) == tokens.INVALID_TOKEN
    assert await _refusal(sessions, agent_token) == tokens.INVALID_TOKEN
    async with sessions.begin() as session:
        with pytest.raises(Conflict, match="disabled"):
            await service.create_token(session, name="new", user_id=ann.id)
        with pytest.raises(Conflict, match="disabled"):
            await service.create_token(session, name="new", agent_id=agent.id)


async def test_unknown_and_malformed_tokens_get_the_same_answer(sessions: Sessions) -> None:
    unknown = tokens.new_token("user").plaintext
    assert await _refusal(sessions, unknown) == tokens.INVALID_TOKEN
    assert await _refusal(sessions, "garbage") == tokens.INVALID_TOKEN
    # A real token's hash with the kind mark flipped is another, unknown token.
    ann = await _user(sessions, "ann", "viewer")
    async with sessions.begin() as session:
        plaintext, _ = await service.create_token(session, name="laptop", user_id=ann.id)
    flipped = "ade_a" + plaintext[5:]
    assert await _refusal(sessions, flipped) == tokens.INVALID_TOKEN


async def test_last_used_is_recorded_at_most_once_a_minute(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "viewer")
    async with sessions.begin() as session:
        plaintext, row = await service.create_token(session, name="laptop", user_id=ann.id)
    assert row.last_used_at is None

    async def use(now: datetime) -> datetime | None:
        async with sessions.begin() as session:
            await service.authenticate_token(session, plaintext, now=now)
        async with sessions() as session:
            stored = await session.get(ApiToken, row.id)
            assert stored is not None
            return stored.last_used_at

    assert await use(T0) == T0
    assert await use(T0 + timedelta(seconds=59)) == T0
    assert await use(T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=60)


async def test_listed_tokens_never_carry_their_hash(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "submitter")
    async with sessions.begin() as session:
        agent = await service.create_agent_identity(session, "bot-1", ann.id)
        _, first = await service.create_token(session, name="one", user_id=ann.id)
        _, second = await service.create_token(session, name="two", user_id=ann.id)
        await service.create_token(session, name="bot", agent_id=agent.id)
    async with sessions.begin() as session:
        await service.revoke_token(session, first.id, now=T0)
    async with sessions() as session:
        listed = await service.list_tokens(session, user_id=ann.id)
        of_agent = await service.list_tokens(session, agent_id=agent.id)
    assert {t.id for t in listed} == {first.id, second.id}
    assert [t.name for t in of_agent] == ["bot"]
    assert of_agent[0].owner_kind == "agent"
    for info in [*listed, *of_agent]:
        assert not hasattr(info, "token_hash")
        assert first.token_hash not in repr(info)
        assert second.token_hash not in repr(info)
    status = {t.name: t.status(T0) for t in listed}
    assert status == {"one": "revoked", "two": "active"}


# -- groups ---------------------------------------------------------------------------------


async def test_groups_and_memberships(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "reviewer")
    bob = await _user(sessions, "bob", "reviewer")
    async with sessions.begin() as session:
        db_owners = await service.create_group(session, "db-owners", "database people")
        sre = await service.create_group(session, "sre")
        assert await service.add_member(session, db_owners.id, ann.id) is True
        assert await service.add_member(session, db_owners.id, ann.id) is False
        assert await service.add_member(session, sre.id, ann.id) is True
        assert await service.add_member(session, db_owners.id, bob.id) is True
        with pytest.raises(NotFound):
            await service.add_member(session, uuid.uuid4(), ann.id)
        with pytest.raises(NotFound):
            await service.add_member(session, sre.id, uuid.uuid4())
        with pytest.raises(InvalidInput, match="group name"):
            await service.create_group(session, "DB Owners")
    async with sessions.begin() as session:
        with pytest.raises(Conflict):
            await service.create_group(session, "sre")
    async with sessions() as session:
        assert await service.groups_of(session, ann.id) == {"db-owners", "sre"}
        assert await service.groups_of(session, bob.id) == {"db-owners"}
        assert await service.groups_of(session, uuid.uuid4()) == frozenset()
        assert (await service.get_group_by_name(session, "sre")).id == sre.id
        listed = {g.name: (g.description, g.members) for g in await service.list_groups(session)}
    assert listed == {"db-owners": ("database people", ("ann", "bob")), "sre": ("", ("ann",))}


async def test_disabling_keeps_the_first_time(sessions: Sessions) -> None:
    ann = await _user(sessions, "ann", "viewer")
    async with sessions.begin() as session:
        await service.disable_user(session, ann.id, now=T0)
        user = await service.disable_user(session, ann.id, now=T0 + timedelta(days=1))
        with pytest.raises(NotFound):
            await service.disable_user(session, uuid.uuid4())
    assert user.disabled_at == T0
    async with sessions() as session:
        stored = (await session.execute(select(User.disabled_at))).scalar_one()
    assert stored == T0


# -- the CLI --------------------------------------------------------------------------------


def _redis_url() -> str:
    url = os.environ.get("ADE_TEST_REDIS_URL") or DEFAULT_SERVER_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        unavailable(f"no Redis server answers at {url} (set ADE_TEST_REDIS_URL)")
    finally:
        client.close()
    return url


# Until `ade users|groups|tokens` is registered in cli/__init__.py, mount the sub-apps the
# same way in a tiny app of our own.
_SHIM = """
import typer
from community_ade.cli import app
from community_ade.cli.users import groups_app, tokens_app, users_app
names = {group.name for group in app.registered_groups}
for name, sub in (("users", users_app), ("groups", groups_app), ("tokens", tokens_app)):
    if name not in names:
        app.add_typer(sub, name=name)
app()
"""


def _ade(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SHIM, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_cli_creates_a_user_and_a_token_the_service_accepts(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path),
        "ADE_REDIS_URL": _redis_url(),
        "ADE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    env.pop("ADE_DATABASE_URL", None)

    async def ade(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(_ade, env, *args, stdin=stdin)

    done = await ade("users", "create", "ann", "--role", "reviewer", "--password-stdin",
                     stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "created user ann (reviewer)" in done.stdout
    short = await ade("users", "create", "bob", "--role", "viewer", "--password-stdin",
                      stdin="short\n")  # fmt: skip
    assert short.returncode == 2
    assert "at least 12 characters" in short.stderr
    dup = await ade("users", "create", "ann", "--role", "viewer")
    assert dup.returncode == 1
    assert "already exists" in dup.stderr
    both = await ade("tokens", "create", "--user", "ann", "--agent", "x", "--name", "n")
    assert both.returncode == 2

    created = await ade("tokens", "create", "--user", "ann", "--name", "laptop",
                        "--expires-days", "7")  # fmt: skip
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    assert "cannot be shown again" in created.stderr
    assert plaintext not in created.stderr

    listed = await ade("tokens", "list", "--user", "ann")
    assert listed.returncode == 0, listed.stderr
    assert plaintext[4:12] in listed.stdout
    assert plaintext[13:] not in listed.stdout

    engine = db.create_engine(db.default_url(tmp_path))
    try:
        sessions = db.sessionmaker(engine)
        async with sessions.begin() as session:
            principal = await service.authenticate_token(session, plaintext, now=datetime.now(UTC))
            assert (principal.name, principal.role, principal.kind) == ("ann", "reviewer", "human")
            by_password = await service.authenticate_password(session, "ann", PASSWORD)
            assert by_password.id == principal.id
            token_id = (await service.list_tokens(session, user_id=principal.id))[0].id
    finally:
        await engine.dispose()

    revoked = await ade("tokens", "revoke", str(token_id))
    assert revoked.returncode == 0, revoked.stderr
    engine = db.create_engine(db.default_url(tmp_path))
    try:
        async with db.sessionmaker(engine).begin() as session:
            with pytest.raises(Unauthenticated):
                await service.authenticate_token(session, plaintext, now=datetime.now(UTC))
    finally:
        await engine.dispose()


async def test_an_outdated_hash_is_upgraded_at_login(sessions: Sessions) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    ann = await _user(sessions, "ann", "viewer")
    legacy = await _user(sessions, "leg", "viewer")
    async with sessions.begin() as session:
        (await service.get_user(session, ann.id)).password_hash = old.hash(PASSWORD)
        # Set before the length policy: still accepted, left as it is.
        (await service.get_user(session, legacy.id)).password_hash = old.hash("short")
    async with sessions.begin() as session:
        await service.authenticate_password(session, "ann", PASSWORD)
        await service.authenticate_password(session, "leg", "short")
    async with sessions() as session:
        upgraded = (await service.get_user(session, ann.id)).password_hash
        kept = (await service.get_user(session, legacy.id)).password_hash
    assert upgraded is not None
    assert not passwords.needs_rehash(upgraded)
    assert kept is not None
    assert passwords.needs_rehash(kept)


async def test_names_are_nfkc_normalised_and_lookalikes_of_existing_ones_refused(
    sessions: Sessions,
) -> None:
    alice = await _user(sessions, "ａｌｉｃｅ", "submitter")  # fullwidth letters
    assert alice.username == "alice"
    async with sessions.begin() as session:
        assert (await service.get_user_by_name(session, "ａｌｉｃｅ")).id == alice.id
        with pytest.raises(Conflict, match="already exists"):
            await service.create_user(session, "ａｌｉｃｅ", "viewer")
        with pytest.raises(Conflict, match="looks like the existing user 'alice'") as caught:
            await service.create_user(session, "a1ice", "viewer")  # 1 for l
        assert caught.value.details["lookalike"] == "alice"
        await service.create_user(session, "alina", "viewer")  # merely similar: fine
        await service.create_group(session, "ops-l")
        with pytest.raises(Conflict, match="looks like the existing group 'ops-l'"):
            await service.create_group(session, "ops-1")
        bot = await service.create_agent_identity(session, "Ｄｅｐｌｏｙ Bot", alice.id)
        assert bot.name == "Deploy Bot"
        # Cyrillic е, a different case, Cyrillic В.
        for lookalike in ("Dеploy Bot", "deploy bot", "Deploy Вot"):
            with pytest.raises(Conflict, match="looks like the existing agent 'Deploy Bot'"):
                await service.create_agent_identity(session, lookalike, alice.id)
        await service.create_agent_identity(session, "Deploy Bot 2", alice.id)


@pytest.mark.timeout(400)  # three CLI processes, each opening the database
async def test_cli_makes_scope_limited_expiring_tokens(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path),
        "ADE_REDIS_URL": _redis_url(),
        "ADE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    env.pop("ADE_DATABASE_URL", None)

    async def ade(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(_ade, env, *args)

    assert (await ade("users", "create", "ann", "--role", "reviewer")).returncode == 0
    created = await ade("tokens", "create", "--user", "ann", "--name", "ci",
                        "--scope", "read", "--scope", "review", "--expires", "12h")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "limited to read, review" in created.stderr
    plaintext = created.stdout.strip()
    refused = await ade("tokens", "create", "--user", "ann", "--name", "x", "--scope", "write")
    assert refused.returncode == 2
    assert "unknown token scope 'write'" in refused.stderr

    engine = db.create_engine(db.default_url(tmp_path))
    try:
        async with db.sessionmaker(engine).begin() as session:
            now = datetime.now(UTC)
            principal = await service.authenticate_token(session, plaintext, now=now)
            assert principal.scopes == {"read", "review"}
            [info] = await service.list_tokens(session, user_id=principal.id)
            assert info.scopes == ("read", "review")
            assert info.expires_at is not None
            assert timedelta(hours=11) < info.expires_at - now <= timedelta(hours=12)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("text", "lifetime"),
    [("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)), ("90d", timedelta(days=90))],
)
def test_token_lifetimes_read_as_durations(text: str, lifetime: timedelta) -> None:
    assert parse_duration(text) == lifetime


@pytest.mark.parametrize("text", ["soon", "0d", "12", "1w", "3651d", "-1h"])
def test_bad_token_lifetimes_are_a_usage_error(text: str) -> None:
    with pytest.raises(typer.Exit) as refused:
        parse_duration(text)
    assert refused.value.exit_code == 2
