"""The agent page's token form can limit a token to scopes; the list shows them."""

from __future__ import annotations

import re

from conftest import Api

from community_ade.dashboard.security import csrf_token, load_secret


async def test_an_agent_token_made_on_the_page_is_limited_to_the_ticked_scopes(
    api: Api,
) -> None:
    made = await api.client.post(
        "/api/v1/agents", json={"name": "page-bot", "model": "gpt-4o"}, headers=api.as_("alice")
    )
    agent_id = made.json()["id"]
    cookie = {"Cookie": f"ade_session={api.tokens['alice']}"}
    csrf = csrf_token(load_secret(api.runtime.settings), "session", api.tokens["alice"])
    page = await api.client.post(
        f"/agents/{agent_id}/tokens",
        data={"name": "reader", "scopes": ["read"], "csrf_token": csrf},
        headers=cookie,
    )
    assert page.status_code == 201, page.text[:2000]
    match = re.search(r'<code id="new-token">([^<]+)</code>', page.text)
    assert match is not None
    token = {"Authorization": f"Bearer {match.group(1)}"}
    assert (await api.client.get("/api/v1/tasks", headers=token)).status_code == 200
    task = {
        "type": "files.write",
        "title": "t",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "a.conf", "action": "write", "content": "x\n"}],
        },
        "resources": [{"type": "configuration", "id": "a", "actions": ["write"]}],
    }
    refused = await api.client.post("/api/v1/tasks", json=task, headers=token)
    assert refused.status_code == 403
    assert refused.json()["missing_scope"] == "submit"
    listed = await api.client.get(f"/agents/{agent_id}", headers=cookie)
    assert re.search(r"<td>reader</td>.*?<td>read</td>", listed.text, re.S)

    bad = await api.client.post(
        f"/agents/{agent_id}/tokens",
        data={"name": "x", "scopes": ["admin"], "csrf_token": csrf},
        headers=cookie,
    )
    assert bad.status_code == 422
