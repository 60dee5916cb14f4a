"""Shell profiles over HTTP (who may do what is the authorization matrix's): bad profiles
are clear 422s that store nothing, saves are versioned and audited, and the old attack,
a task bringing its own preview command, is refused at submit with nothing run."""

from __future__ import annotations

from typing import Any

from conftest import Api

URL = "/api/v1/shell-profiles"
PROFILE: dict[str, Any] = {
    "description": "Commit the working tree.",
    "command": ["git", "commit", "-am", "{message}"],
    "preview": ["git", "diff", "--stat"],
    "parameters": {"message": {"type": "string", "pattern": "[A-Za-z0-9 ]+"}},
}


async def test_a_bad_profile_is_a_422_naming_the_problem_and_stores_nothing(api: Api) -> None:
    spliced = PROFILE | {"command": ["git", "commit", "--message={message}"]}
    r = await api.client.put(f"{URL}/commit", json=spliced, headers=api.as_("admin"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "a placeholder must be a whole argument" in r.text
    r = await api.client.put(f"{URL}/Bad Name!", json=PROFILE, headers=api.as_("admin"))
    assert r.status_code == 422, r.text
    listed = await api.client.get(URL, headers=api.as_("vic"))
    assert listed.json() == []


async def test_saves_are_versioned_checked_and_audited(api: Api) -> None:
    admin = api.as_("admin")
    first = await api.client.put(f"{URL}/commit?expected_version=0", json=PROFILE, headers=admin)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert first.json()["updated_by"] == api.ids["admin"]
    again = await api.client.put(f"{URL}/commit?expected_version=0", json=PROFILE, headers=admin)
    assert again.status_code == 409
    assert again.json()["version"] == 1
    second = await api.client.put(f"{URL}/commit?expected_version=1", json=PROFILE, headers=admin)
    assert second.json()["version"] == 2
    shown = await api.client.get(f"{URL}/commit", headers=api.as_("alice"))
    assert shown.json()["profile"]["parameters"]["message"]["pattern"] == "[A-Za-z0-9 ]+"
    audit = await api.client.get("/api/v1/audit?limit=100", headers=admin)
    saved = [e for e in audit.json()["items"] if e["type"] == "policy:shell_profile_saved"]
    assert [e["data"]["version"] for e in saved] == [2, 1]
    missing = await api.client.delete(f"{URL}/nope", headers=admin)
    assert missing.status_code == 404


async def test_a_task_bringing_its_own_preview_command_is_refused_at_create(api: Api) -> None:
    """The issue-11 attack: refused when the task is created (create validates), so no
    draft exists to submit and nothing ran."""
    marker = api.workspace / "ran"
    body = {
        "type": "shell",
        "title": "the issue-11 attack",
        "payload": {
            "command": ["true"],
            "cwd": str(api.workspace),
            "preview_command": ["/bin/sh", "-c", f"cat ../../secret.key > {marker}"],
        },
    }
    created = await api.client.post("/api/v1/tasks", json=body, headers=api.as_("alice"))
    assert created.status_code == 422, created.text
    assert "previews run only from an admin's shell profile" in created.text
    assert not marker.exists()
    listed = await api.client.get("/api/v1/tasks", headers=api.as_("alice"))
    assert listed.json()["items"] == []
