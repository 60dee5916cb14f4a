"""The approval view's Receipts section (issue 16): it lists a receipt for what was
submitted, each decision and the apply, and every download is a file that ``ade audit
verify-receipt`` accepts offline, in a process that knows no server, database or Redis.
Downloads need a session and read access to the task, and serve only that task's entries."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from conftest import Api, run_ade
from test_dashboard_pages import Visitor, is_page, submitted

from community_ade.execution.worker import Worker

ROW = re.compile(
    r'<tr data-receipt="(\d+)"><td>(\d+)</td><td>(\d+)</td><td>([\w:]+)</td>'
    r'<td>size (\d+)</td><td><a href="([^"]+)" download>'
)
ALL = re.compile(r'<a href="([^"]+)" download data-receipts-all>')


def verify(tmp_path: Path, name: str, body: bytes, vkey: str) -> str:
    file = tmp_path / name
    file.write_bytes(body)
    bare_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    checked = run_ade(bare_env, "audit", "verify-receipt", str(file), "--key", vkey)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout


async def test_the_approval_view_lists_receipts_that_verify_offline(
    api: Api, tmp_path: Path
) -> None:
    vkey = (await api.client.get("/.well-known/ade-audit-key")).text.strip()
    task_id, digest = await submitted(api)
    bob = Visitor(api, "bob")
    decided = await bob.post(f"/tasks/{task_id}/decide", {"action": "approve", "digest": digest})
    assert decided.status_code == 303, decided.text
    await asyncio.wait_for(Worker(api.runtime, burst=True).run(), 60)

    vic = Visitor(api, "vic")  # a viewer: reads tasks, decides nothing
    page = await vic.get(f"/tasks/{task_id}")
    is_page(page, 200)
    rows = ROW.findall(page.text)
    types = [kind for _, _, _, kind, _, _ in rows]
    assert types[0] == "task:submitted", types
    assert "approval:approved" in types, types
    assert "approval:decision" in types, types
    assert "<span data-surface>(dashboard)</span>" in page.text  # bob decided on this page
    assert types[-1] == "task:completed", types
    api_receipts = (
        await api.client.get(f"/api/v1/tasks/{task_id}/receipts", headers=api.as_("vic"))
    ).json()
    assert [int(seq) for seq, *_ in rows] == [r["entry"]["seq"] for r in api_receipts]
    [size] = {int(size) for *_, size, _ in rows}  # one checkpoint covers them all
    assert size >= max(int(seq) for seq, *_ in rows)

    for seq, shown_seq, index, kind, _, href in rows:
        assert int(index) == int(seq) - 1
        assert shown_seq == seq
        download = await vic.get(href)
        assert download.status_code == 200, download.text
        assert download.headers["content-type"] == "application/json"
        assert download.headers["content-disposition"] == (
            f'attachment; filename="receipt-{task_id}-{seq}.json"'
        )
        receipt = download.json()
        assert receipt["index"] == int(index)
        assert receipt["entry"]["type"] == kind
        assert receipt["checkpoint"]["size"] == size
        if kind == "approval:decision":  # where bob decided, under the signed root
            assert receipt["entry"]["data"]["surface"] == "dashboard"
        said = verify(tmp_path, f"{seq}.json", download.content, vkey)
        assert f"valid entry {seq} ({kind}): in " in said
        assert f"at size {size}" in said

    [all_href] = ALL.findall(page.text)
    everything = await vic.get(all_href)
    assert everything.headers["content-disposition"].startswith("attachment;")
    said = verify(tmp_path, "all.json", everything.content, vkey)
    assert said.count("valid entry") == len(rows)

    # The log grows: the links still serve the receipts under the checkpoint shown.
    await submitted(api, "another task")
    await api.client.post("/api/v1/audit/checkpoint", headers=api.as_("vic"))
    again = await vic.get(rows[-1][5])
    assert again.json()["checkpoint"]["size"] == size


async def test_receipt_downloads_are_bounded_to_the_task_and_its_readers(api: Api) -> None:
    other_id, _ = await submitted(api, "someone else's task")
    made = await api.client.post("/api/v1/audit/checkpoint", headers=api.as_("vic"))
    older = made.json()["size"]
    task_id, _ = await submitted(api)
    vic = Visitor(api, "vic")
    other_rows = ROW.findall((await vic.get(f"/tasks/{other_id}")).text)
    [(other_seq, *_)] = other_rows  # submitted only: one receipt
    page = await vic.get(f"/tasks/{task_id}")
    [(seq, *_, href)] = ROW.findall(page.text)

    # Another task's entry is not served through this task, nor is any other entry.
    is_page(await vic.get(f"/tasks/{task_id}/receipts/{other_seq}"), 404)
    is_page(await vic.get(f"/tasks/{task_id}/receipts/1"), 404)
    # A size that is no checkpoint, or one below the entry, is a clear 404; bad input 422.
    is_page(await vic.get(f"/tasks/{task_id}/receipts/{seq}?size=999999"), 404)
    is_page(await vic.get(f"/tasks/{task_id}/receipts/{seq}?size={older}"), 404)
    is_page(await vic.get(f"/tasks/{task_id}/receipts/{seq}?size=-1"), 422)
    is_page(await vic.get(f"/tasks/{task_id}/receipts/nope"), 422)
    # No session: the login page, never the file.
    anonymous = await api.client.get(href)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login?next=")
    # A draft has no receipts yet: the section says so, and "all" is an empty list.
    change = {"path": "d.conf", "action": "write", "content": "x\n"}
    payload = {"root": str(api.workspace), "changes": [change]}
    body = {"type": "files.write", "title": "draft", "payload": payload}
    draft = await api.client.post("/api/v1/tasks", json=body, headers=api.as_("alice"))
    draft_id = draft.json()["id"]
    assert "No receipts yet" in (await vic.get(f"/tasks/{draft_id}")).text
    assert (await vic.get(f"/tasks/{draft_id}/receipts")).json() == []
