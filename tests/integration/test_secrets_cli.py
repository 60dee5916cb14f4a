"""``ade secrets`` as an operator runs it: real processes, a SQLite file and the test
Redis. The value comes from a pipe or a file, never an argument, and is never printed;
refusals are messages and exit codes, never tracebacks."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from conftest import _server_url, delete_domain_keys, run_ade
from sqlalchemy import select

from community_ade.infra.redis_client import open_redis
from community_ade.secrets.keys import KEY_FILE, SecretCipher
from community_ade.settings import parse_secrets_keys
from community_ade.storage import db
from community_ade.storage.models import Secret

VALUE = "cli-secret-value-5e1f"


async def sealed(tmp_path: Path) -> bytes:
    engine = db.create_engine(db.default_url(tmp_path))
    try:
        async with db.sessionmaker(engine)() as session:
            row = await session.scalar(select(Secret).where(Secret.name == "deploy-token"))
            assert row is not None
            return bytes(row.ciphertext)
    finally:
        await engine.dispose()


async def test_set_list_rekey_delete_and_refusals(tmp_path: Path, domain: str) -> None:
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path),
        "ADE_REDIS_URL": _server_url(),
        "ADE_LOCK_DOMAIN": domain,
        "ADE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    for name in ("ADE_DATABASE_URL", "ADE_SECRETS_KEY"):
        env.pop(name, None)

    async def ade(
        *args: str, input: str | None = "", extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        answer = await asyncio.to_thread(run_ade, env | (extra or {}), *args, input=input)
        assert "Traceback" not in answer.stderr
        assert VALUE not in answer.stdout + answer.stderr
        return answer

    try:
        assert (await ade("users", "create", "root", "--role", "admin")).returncode == 0
        assert (await ade("users", "create", "ann", "--role", "submitter")).returncode == 0

        stored = await ade("secrets", "set", "deploy-token", "--as", "root",
                           "--description", "deploy hook", input=VALUE + "\n")  # fmt: skip
        assert stored.returncode == 0, stored.stderr
        assert "stored secret deploy-token" in stored.stdout
        value_file = tmp_path / "value.txt"
        value_file.write_text(VALUE + "\n")
        replaced = await ade("secrets", "set", "deploy-token", "--as", "root",
                             "--from-file", str(value_file))  # fmt: skip
        assert replaced.returncode == 0, replaced.stderr
        assert "replaced secret deploy-token" in replaced.stdout

        not_admin = await ade("secrets", "set", "other", "--as", "ann", input=VALUE)
        assert not_admin.returncode == 1
        assert "secret_write" in not_admin.stderr
        bad_name = await ade("secrets", "set", "Bad Name", "--as", "root", input=VALUE)
        assert bad_name.returncode == 2
        assert "must be 1-64 characters" in bad_name.stderr
        short = await ade("secrets", "set", "short", "--as", "root", input="1234")
        assert short.returncode == 2
        assert "8-16384 characters" in short.stderr

        listed = await ade("secrets", "list")
        assert listed.returncode == 0, listed.stderr
        assert "deploy-token" in listed.stdout
        assert "deploy hook" in listed.stdout  # kept: the replacement named none

        # Rotation: the new key first, the old one after it; rekey; then the new one alone.
        old = (tmp_path / KEY_FILE).read_text().strip()
        new = (await ade("secrets", "new-key")).stdout.strip()
        assert len(parse_secrets_keys(new, source="test")) == 1
        rekeyed = await ade("secrets", "rekey", "--as", "root",
                            extra={"ADE_SECRETS_KEY": f"{new},{old}"})  # fmt: skip
        assert rekeyed.returncode == 0, rekeyed.stderr
        assert "sealed 1 secret(s)" in rekeyed.stdout
        ciphertext = await sealed(tmp_path)
        assert (
            SecretCipher(parse_secrets_keys(new, source="t")).open("deploy-token", ciphertext)
            == VALUE
        )
        wrong = await ade("secrets", "rekey", "--as", "root", extra={"ADE_SECRETS_KEY": old})
        assert wrong.returncode == 3  # the old key alone no longer opens it: said, not a traceback
        assert "opens with none of the configured keys" in wrong.stderr

        audit = await ade("audit", "list")
        assert "secret:stored" in audit.stdout

        deleted = await ade("secrets", "delete", "deploy-token", "--as", "root")
        assert deleted.returncode == 0, deleted.stderr
        assert "deploy-token" not in (await ade("secrets", "list")).stdout
        again = await ade("secrets", "delete", "deploy-token", "--as", "root")
        assert again.returncode == 1
        assert "no secret 'deploy-token'" in again.stderr
    finally:
        client = await open_redis(_server_url())
        await delete_domain_keys(client, domain)
        await client.aclose()
