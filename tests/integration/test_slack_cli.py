"""``ade slack`` as an operator runs it: real processes and a SQLite file. The token and
signing secret come from a pipe and are never printed; refusals are messages and exit
codes, never tracebacks."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_ade

TOKEN = "xoxb-cli-0000000000-token"
SECRET = "clisigningsecret00000000"


# A dozen cold command starts: slow on a loaded machine.
@pytest.mark.timeout(900)
async def test_configure_show_route_link_and_refusals(tmp_path: Path) -> None:
    env = {**os.environ, "ADE_DATA_DIR": str(tmp_path), "ADE_LOG_LEVEL": "WARNING"}
    env |= {"COLUMNS": "200"}
    for name in ("ADE_DATABASE_URL", "ADE_SECRETS_KEY"):
        env.pop(name, None)

    async def ade(*args: str, input: str | None = "") -> subprocess.CompletedProcess[str]:
        answer = await asyncio.to_thread(run_ade, env, *args, input=input)
        assert "Traceback" not in answer.stderr
        assert TOKEN not in answer.stdout + answer.stderr
        assert SECRET not in answer.stdout + answer.stderr
        return answer

    assert (await ade("users", "create", "root", "--role", "admin")).returncode == 0
    made = await ade("users", "create", "carol", "--role", "reviewer", "--email", "C@x.org")
    assert made.returncode == 0, made.stderr
    refused = await ade("slack", "configure", "--as", "carol", input=f"{TOKEN}\n{SECRET}\n")
    assert refused.returncode != 0
    assert "secret_write" in refused.stderr
    bad = await ade("slack", "configure", "--as", "root", input=f"not-a-token\n{SECRET}\n")
    assert bad.returncode == 2
    assert "xoxb" in bad.stderr

    done = await ade(
        "slack", "configure", "--as", "root", "--default-channel", "#reviews",
        "--dm-reviewers", input=f"{TOKEN}\n{SECRET}\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    routed = await ade("slack", "route", "group", "db-owners", "C0DB", "--as", "root")
    assert routed.returncode == 0, routed.stderr
    linked = await ade("slack", "link", "carol", "UCAROL", "--as", "root")
    assert linked.returncode == 0, linked.stderr
    bad_link = await ade("slack", "link", "carol", "carol@x.org", "--as", "root")
    assert bad_link.returncode == 2
    assert "Slack user id" in bad_link.stderr
    shown = await ade("slack", "show")
    assert "default channel: reviews; DMs to reviewers: on" in shown.stdout
    for expected in ("db-owners", "C0DB", "carol", "UCAROL", "admin"):
        assert expected in shown.stdout
    assert (await ade("slack", "remove", "--as", "root")).returncode == 0
    assert "not configured" in (await ade("slack", "show")).stdout
