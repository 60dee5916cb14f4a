"""``ade shell-profiles`` as an operator runs it: real processes, a SQLite file and the
test Redis. Only an admin (``--as``) saves or deletes; refusals are messages and exit
codes, never tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from conftest import _server_url, forget_domain, run_ade

PROFILE = {
    "command": ["git", "commit", "-am", "{message}"],
    "preview": ["git", "diff", "--stat"],
    "parameters": {"message": {"type": "string"}},
}


async def test_put_list_show_delete_and_refusals(tmp_path: Path, domain: str) -> None:
    redis_url = _server_url()
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path / "data"),
        "ADE_REDIS_URL": redis_url,
        "ADE_LOCK_DOMAIN": domain,
        "ADE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    env.pop("ADE_DATABASE_URL", None)
    good, bad = tmp_path / "commit.json", tmp_path / "bad.json"
    good.write_text(json.dumps(PROFILE))
    bad.write_text(json.dumps(PROFILE | {"command": ["{message}"]}))

    async def ade(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_ade, env, *args)

    try:
        assert (await ade("users", "create", "root-admin", "--role", "admin")).returncode == 0
        assert (await ade("users", "create", "sam", "--role", "submitter")).returncode == 0

        refused = await ade("shell-profiles", "put", "commit", "--as", "sam", "-f", str(good))
        assert refused.returncode == 1
        assert "shell_profile_write" in refused.stderr
        invalid = await ade("shell-profiles", "put", "commit", "--as", "root-admin", "-f", str(bad))
        assert invalid.returncode == 2
        assert "must not be a placeholder" in invalid.stderr
        assert "Traceback" not in invalid.stderr + refused.stderr

        saved = await ade("shell-profiles", "put", "commit", "--as", "root-admin", "-f", str(good))
        assert saved.returncode == 0, saved.stderr
        assert "version 1" in saved.stdout
        listed = await ade("shell-profiles", "list")
        assert "git commit -am {message}" in listed.stdout
        shown = await ade("shell-profiles", "show", "commit")
        document = json.loads(shown.stdout)
        assert document["name"] == "commit"
        assert document["preview"] == ["git", "diff", "--stat"]

        deleted = await ade("shell-profiles", "delete", "commit", "--as", "root-admin")
        assert deleted.returncode == 0, deleted.stderr
        missing = await ade("shell-profiles", "show", "commit")
        assert missing.returncode == 1
        assert "there is no shell profile 'commit'" in missing.stderr
    finally:
        await forget_domain(redis_url, domain)
