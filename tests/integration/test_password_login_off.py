"""``ADE_PASSWORD_LOGIN=false``: the login page offers no password form and ``POST
/login`` signs nobody in, while API tokens keep working."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Api

from community_ade.auth import service as auth


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"password_login": False}


async def test_password_login_can_be_turned_off(api: Api) -> None:
    async with api.runtime.sessions.begin() as session:
        user = await auth.get_user_by_name(session, "bob")
        await auth.set_password(session, user.id, "correct horse battery staple")
    page = await api.client.get("/login")
    assert page.status_code == 200
    assert 'name="password"' not in page.text
    nonce = page.cookies.get("ade_login_nonce")
    assert nonce is not None
    tried = await api.client.post(
        "/login",
        data={"username": "bob", "password": "correct horse battery staple"},
    )
    assert tried.status_code == 404
    assert "password login is turned off" in tried.text
    assert "ade_session" not in tried.cookies
    assert (await api.client.get("/api/v1/tasks", headers=api.as_("bob"))).status_code == 200
