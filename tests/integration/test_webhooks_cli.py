"""``ade webhooks`` as an operator runs it (real processes, a SQLite file): create prints
the secret once, list never does, a URL off the allowlist and a non-admin are plain
refusals (no traceback), rotate prints a new secret, the delivery log and redelivery."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import run_ade

from community_ade.storage import db
from community_ade.storage.models import WebhookDelivery

HOOK = "http://127.0.0.1:9/hooks"


async def add_delivery(tmp_path: Path, webhook_id: str) -> str:
    engine = db.create_engine(db.default_url(tmp_path))
    delivery_id = f"msg_{uuid.uuid4().hex}"
    try:
        async with db.sessionmaker(engine).begin() as session:
            session.add(
                WebhookDelivery(
                    id=delivery_id,
                    subscription_id=uuid.UUID(webhook_id),
                    event_seq=7,
                    event_type="task:created",
                    subject="task:x",
                    payload='{"type":"task:created"}',
                    status="failed",
                    attempts=8,
                )
            )
    finally:
        await engine.dispose()
    return delivery_id


# Each command is a Python process that opens the database: slow on a loaded machine.
@pytest.mark.timeout(600)
async def test_create_list_rotate_deliveries_redeliver_and_refusals(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path),
        "ADE_HTTP_ALLOWLIST": json.dumps([HOOK]),
        "ADE_LOG_LEVEL": "WARNING",
        "COLUMNS": "250",
    }
    for name in ("ADE_DATABASE_URL", "ADE_SECRETS_KEY", "ADE_REDIS_URL"):
        env.pop(name, None)

    async def ade(*args: str) -> subprocess.CompletedProcess[str]:
        answer = await asyncio.to_thread(run_ade, env, *args)
        assert "Traceback" not in answer.stderr + answer.stdout
        return answer

    assert (await ade("users", "create", "root", "--role", "admin")).returncode == 0
    assert (await ade("users", "create", "rita", "--role", "reviewer")).returncode == 0

    made = await ade("webhooks", "create", HOOK, "--as", "root", "--event", "task:*",
                     "--description", "ci hook")  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", made.stdout)
    assert secret is not None, made.stdout
    webhook_id = re.search(r"webhook ([0-9a-f-]{36})", made.stdout)
    assert webhook_id is not None
    hook = webhook_id.group(1)

    listed = await ade("webhooks", "list")
    assert hook in listed.stdout
    assert "task:*" in listed.stdout
    assert secret.group(0) not in listed.stdout

    outside = await ade("webhooks", "create", "https://example.com/x", "--as", "root")
    assert outside.returncode != 0
    assert "ADE_HTTP_ALLOWLIST" in outside.stderr
    not_admin = await ade("webhooks", "create", HOOK, "--as", "rita")
    assert not_admin.returncode != 0
    assert "webhook_admin" in not_admin.stderr

    rotated = await ade("webhooks", "rotate-secret", hook, "--as", "root", "--overlap-hours", "2")
    assert rotated.returncode == 0, rotated.stderr
    new = re.search(r"whsec_[A-Za-z0-9+/=]+", rotated.stdout)
    assert new is not None
    assert new.group(0) != secret.group(0)

    delivery = await add_delivery(tmp_path, hook)
    log = await ade("webhooks", "deliveries", hook, "--status", "failed")
    assert delivery in log.stdout
    again = await ade("webhooks", "redeliver", delivery, "--as", "root")
    assert again.returncode == 0, again.stderr
    shown = await ade("webhooks", "show-delivery", delivery)
    assert "pending" in shown.stdout
    assert '"type": "task:created"' in shown.stdout

    disabled = await ade("webhooks", "update", hook, "--as", "root", "--disable")
    assert "disabled" in disabled.stdout
    assert (await ade("webhooks", "delete", hook, "--as", "root")).returncode == 0
    assert hook not in (await ade("webhooks", "list")).stdout
    gone = await ade("webhooks", "delete", hook, "--as", "root")
    assert gone.returncode != 0
    assert "no webhook subscription" in gone.stderr
