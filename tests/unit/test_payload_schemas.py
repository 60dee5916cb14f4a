"""Every task type publishes the JSON Schema of its payload, and the schema says what the
executor's ``validate`` accepts: a payload ``validate`` accepts is valid against the
schema, and a payload of the wrong shape (wrong type, unknown key, out of range) is
refused by both, both naming the field. What a schema cannot say (Unicode categories,
byte lengths, duplicate paths, inline credentials) only ``validate`` checks.

Pure: no filesystem, no network.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticError

from community_ade.execution.executors import (
    field_errors,
    field_path,
    load_executors,
    payload_schema_of,
)
from community_ade.execution.executors import files_write as fw
from community_ade.execution.executors import git_patch as gp
from community_ade.execution.executors import http_request as hr
from community_ade.execution.executors import shell as sh
from community_ade.execution.executors import shell_profile as sp
from community_ade.execution.executors.base import self_contained
from community_ade.mcp_gateway.tools import change_tool

BUILT_IN = ("agent.call", "files.write", "git.patch", "http.request", "shell")
ROOT = "/srv/workspaces/project"
PATCH = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"
URL = "https://hooks.example.com/a"


def files(*changes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"root": ROOT, "changes": list(changes) or [{"path": "a", "action": "delete"}]} | extra


def git(**overrides: Any) -> dict[str, Any]:
    return {
        "repo": "/srv/repos/app",
        "branch": "main",
        "patch": PATCH,
        "message": "Fix",
    } | overrides


def http(**overrides: Any) -> dict[str, Any]:
    return {"method": "POST", "url": URL} | overrides


def profile(**overrides: Any) -> dict[str, Any]:
    return {"profile": "deploy", "params": {"env": "eu"}, "cwd": "/srv/w"} | overrides


def command(**overrides: Any) -> dict[str, Any]:
    return {"command": ["make", "deploy"], "cwd": "/srv/w"} | overrides


GOOD: dict[str, list[dict[str, Any]]] = {
    "agent.call": [
        {"function": "deploy_service", "arguments": {"service": "api", "n": [1, None]}},
        {"function": "tools.lint"},
    ],
    "files.write": [
        files(
            {"path": "a.txt", "action": "write", "content": "x\n"},
            {"path": "dir/b.txt", "action": "write", "content": ""},
            {"path": "old/c.txt", "action": "delete"},
            {"path": "d", "action": "delete", "content": None},
        ),
        files(*({"path": p, "action": "write", "content": "é"} for p in ("...", "a..b", "é/ü"))),
        files(*({"path": f"f{i}", "action": "delete"} for i in range(fw.MAX_CHANGES))),
        files({"path": ".hidden/x", "action": "write", "content": "x"}),
    ],
    "git.patch": [
        git(),
        git(branch="release/1.2.3", patch=PATCH.replace("\n", "\r\n"), message="m" * 100),
        git(branch="user_a/fix+b", patch="x" * gp.MAX_PATCH_BYTES),
    ],
    "http.request": [
        http(),
        http(
            method="DELETE",
            url="HTTP://127.0.0.1:8080/x?env=prod",
            headers={"Authorization": {"secret": "hook-token", "prefix": "Bearer "}, "X-A": "\t"},
            query={"api_key": {"secret": "hook-key"}, "region": "eu west"},
            body=[1, {"b": 2, "a": None}],
            timeout_seconds=hr.MAX_TIMEOUT_SECONDS,
            rollback={"method": "PUT", "url": URL, "body": "text", "headers": {}},
        ),
        http(timeout_seconds=0.5, body={"secret": "a body is data, not a reference"}),
        http(rollback=None),
    ],
    "shell": [
        profile(),
        profile(params={}, timeout_seconds=sp.MAX_TIMEOUT_SECONDS),
        profile(params={"n": 3, "name_2": "x" * sp.MAX_VALUE_LENGTH}, timeout_seconds=None),
        {"profile": "p", "cwd": "/"},
        command(),
        command(rollback_command=["make", "undo"], timeout_seconds=10),
        command(rollback_command=None),
    ],
}

BAD: dict[str, list[tuple[dict[str, Any], str]]] = {
    "agent.call": [
        ({"function": "1bad"}, "function"),
        ({"function": "f", "arguments": []}, "arguments"),
        ({"function": "f", "extra": 1}, "extra"),
        ({"arguments": {}}, "function"),
    ],
    "files.write": [
        (files(extra=1), "extra"),
        ({"changes": files()["changes"]}, "root"),
        ({"root": 3, "changes": files()["changes"]}, "root"),
        ({"root": "relative", "changes": files()["changes"]}, "root"),
        ({"root": ROOT, "changes": []}, "changes"),
        ({"root": ROOT, "changes": "a.txt"}, "changes"),
        ({"root": ROOT, "changes": [3]}, "changes[0]"),
        (
            files(*({"path": f"f{i}", "action": "delete"} for i in range(fw.MAX_CHANGES + 1))),
            "changes",
        ),
        (files({"path": "a", "action": "chmod"}), "changes[0].action"),
        (files({"path": "a"}), "changes[0].action"),
        (files({"path": "a", "action": "write"}), "changes[0].content"),
        (files({"path": "a", "action": "write", "content": 3}), "changes[0].content"),
        (files({"path": "a", "action": "delete", "content": "x"}), "changes[0].content"),
        (files({"path": "a", "action": "delete", "mode": 7}), "changes[0].mode"),
        # (every other path: test_files_write_paths_agree_but_for_characters_and_bytes)
        *(
            (files({"path": path, "action": "delete"}), "changes[0].path")
            for path in ("", "/etc", "a/../x", "./a", "a//b", "a/", "a\\b", "sub/.ade", 3, None)
        ),
        (files({"path": "a/" * 2100, "action": "delete"}), "changes[0].path"),
    ],
    "git.patch": [
        *((git(**{field: None}), field) for field in ("repo", "branch", "patch", "message")),
        (git(repo="relative/repo"), "repo"),
        (git(force=True), "force"),
        (git(patch=""), "patch"),
        (git(patch=" \n\t\n"), "patch"),
        (git(patch="--- a\x00"), "patch"),
        (git(patch="x" * (gp.MAX_PATCH_BYTES + 1)), "patch"),
        (git(message="   \n"), "message"),
        (git(message=42), "message"),
        (git(message="m" * (gp.MAX_MESSAGE_CHARS + 1)), "message"),
        # (every other branch name: test_git_branch_names_agree_exactly)
        *((git(branch=b), "branch") for b in ("", "HEAD", "-main", "a..b", "a.lock", "x" * 201)),
    ],
    "http.request": [
        (http(method="post"), "method"),
        (http(method="CONNECT"), "method"),
        ({"url": URL}, "method"),
        (http(url="ftp://x/"), "url"),
        (http(url="https:///nohost"), "url"),
        (http(url="https://x/a b"), "url"),
        (http(url="https://x/#frag"), "url"),
        (http(url=None), "url"),
        (http(url="https://x/" + "a" * 8192), "url"),
        (http(headers=["a"]), "headers"),
        (http(headers={"Bad Name": "v"}), "headers.Bad Name"),
        (http(headers={"X-A": "line\r\nInjected: 1"}), "headers.X-A"),
        (http(headers={"X-A": 1}), "headers.X-A"),
        (http(headers={"X-A": None}), "headers.X-A"),
        (http(headers={"X-A": "v" * (hr.MAX_HEADER_VALUE_CHARS + 1)}), "headers.X-A"),
        (http(headers={f"X-{i}": "v" for i in range(hr.MAX_HEADERS + 1)}), "headers"),
        (http(query={"": "v"}), "query."),
        (http(query={"a": {"b": 1}}), "query.a"),
        (http(query={f"q{i}": "v" for i in range(hr.MAX_QUERY_PARAMETERS + 1)}), "query"),
        (http(headers={"Authorization": {"secret": "Bad Name"}}), "headers.Authorization.secret"),
        (
            http(headers={"Authorization": {"secret": "t", "prefix": "x" * 65}}),
            "headers.Authorization.prefix",
        ),
        (
            http(headers={"Authorization": {"secret": "t", "prefix": "a\nb"}}),
            "headers.Authorization.prefix",
        ),
        (
            http(headers={"Authorization": {"secret": "t", "value": "v"}}),
            "headers.Authorization.value",
        ),
        (http(timeout_seconds=0), "timeout_seconds"),
        (http(timeout_seconds=hr.MAX_TIMEOUT_SECONDS + 1), "timeout_seconds"),
        (http(timeout_seconds=True), "timeout_seconds"),
        (http(timeout_seconds=None), "timeout_seconds"),
        (http(rollback="DELETE x"), "rollback"),
        (http(rollback={"method": "DELETE"}), "rollback.url"),
        (
            http(rollback={"method": "DELETE", "url": URL, "timeout_seconds": 1}),
            "rollback.timeout_seconds",
        ),
        (http(extra=1), "extra"),
    ],
    "shell": [
        (profile(command=["make"]), "command"),
        (profile(preview_command=["ls"]), "preview_command"),
        (profile(profile="Deploy!"), "profile"),
        (profile(profile=3), "profile"),
        (profile(profile=None), "profile"),
        (profile(params=["eu"]), "params"),
        (profile(params={f"p{i}": 1 for i in range(sp.MAX_PARAMETERS + 1)}), "params"),
        (profile(params={"env": True}), "params.env"),
        (profile(params={"env": 1.5}), "params.env"),
        (profile(params={"env": {"nested": 1}}), "params.env"),
        (profile(params={"env": "x" * (sp.MAX_VALUE_LENGTH + 1)}), "params.env"),
        (profile(params={"Bad-Name": "x"}), "params.Bad-Name"),
        (profile(cwd="relative"), "cwd"),
        (profile(cwd=None), "cwd"),
        ({"profile": "deploy"}, "cwd"),
        (profile(timeout_seconds=0), "timeout_seconds"),
        (profile(timeout_seconds=sp.MAX_TIMEOUT_SECONDS + 1), "timeout_seconds"),
        (profile(timeout_seconds=True), "timeout_seconds"),
        (profile(timeout_seconds="60"), "timeout_seconds"),
        (command(command="make deploy"), "command"),
        (command(command=[]), "command"),
        (command(command=["ok", 3]), "command"),
        (command(command=["x"] * (sp.MAX_ARGS + 1)), "command"),
        (command(command=None), "command"),
        ({"cwd": "/srv/w"}, "command"),
        (command(preview_command=["make", "-n"]), "preview_command"),
        (command(rollback_command=[]), "rollback_command"),
        (command(params={}), "params"),
        (command(shell=True), "shell"),
    ],
}


def executor(task_type: str) -> Any:
    return load_executors()[task_type]


def schema_of(task_type: str) -> dict[str, Any]:
    schema = payload_schema_of(executor(task_type))
    assert schema is not None, f"{task_type} publishes no payload schema"
    return schema


def _child(parent: str, key: object) -> str:
    return f"{parent}.{key}" if parent else str(key)


def named_by(error: ValidationError) -> set[str]:
    """The fields one schema error (and the errors under an anyOf/oneOf) names: its location,
    or for an unknown, missing or badly named key the key itself."""
    where = field_path(error.absolute_path)
    names = {where}
    instance: Any = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        names |= {_child(where, key) for key in instance if key not in known}
    elif error.validator == "required" and isinstance(instance, dict):
        names |= {_child(where, key) for key in error.validator_value if key not in instance}
    elif "propertyNames" in error.relative_schema_path:  # the instance is the key
        names.add(_child(where, instance))
    for sub in error.context or ():
        names |= named_by(sub)
    return names


def schema_errors(task_type: str, payload: Any) -> set[str]:
    validator = Draft202012Validator(schema_of(task_type))
    found: set[str] = set()
    for error in validator.iter_errors(payload):
        found |= named_by(error)
    return found


def validate_errors(task_type: str, payload: Any) -> list[str]:
    return [e.path for e in executor(task_type).validate(payload).errors]


@pytest.mark.parametrize("task_type", BUILT_IN)
def test_every_built_in_type_publishes_a_valid_json_schema(task_type: str) -> None:
    schema = schema_of(task_type)
    Draft202012Validator.check_schema(schema)
    assert schema.get("description"), "the schema says what the payload is"


def test_every_installed_type_with_a_schema_publishes_a_valid_one() -> None:
    """Plugins too: whatever ``payload_model`` they set must yield a valid JSON Schema."""
    for task_type, installed in load_executors().items():
        schema = payload_schema_of(installed)
        if schema is not None:
            Draft202012Validator.check_schema(schema)
        else:
            assert task_type not in BUILT_IN


@pytest.mark.parametrize(
    ("task_type", "payload"),
    [(t, p) for t, payloads in GOOD.items() for p in payloads],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_known_good_payloads_pass_both(task_type: str, payload: dict[str, Any]) -> None:
    assert validate_errors(task_type, payload) == []
    assert schema_errors(task_type, payload) == set()


@pytest.mark.parametrize(
    ("task_type", "payload", "field"),
    [(t, p, f) for t, cases in BAD.items() for p, f in cases],
    ids=lambda v: repr(v)[:40] if not isinstance(v, dict) else "",
)
def test_known_bad_payloads_are_refused_by_both_naming_the_field(
    task_type: str, payload: dict[str, Any], field: str
) -> None:
    assert field in validate_errors(task_type, payload)
    assert field in schema_errors(task_type, payload)


def test_the_schema_offers_exactly_the_methods_validate_accepts() -> None:
    assert set(get_args(hr.HttpCall.model_fields["method"].annotation)) == hr.METHODS


def test_shell_publishes_both_forms() -> None:
    forms = schema_of("shell")["anyOf"]
    assert [form["title"] for form in forms] == ["ShellProfileTask", "ShellCommandTask"]


class _Tree(BaseModel):
    name: str
    children: list[_Tree] = []


def test_published_schemas_are_self_contained_unless_recursive() -> None:
    for task_type in BUILT_IN:
        assert "$defs" not in json.dumps(schema_of(task_type))
    recursive = _Tree.model_json_schema()
    assert self_contained(recursive) == recursive  # left with its $defs: still correct


# A schema cannot say everything, so validate may refuse more than the schema; never less.
_PIECES = st.sampled_from(["a", "b.txt", ".", "..", "", "/", "\\", " ", "\x00", "~", ".ade", "é"])
_paths = st.one_of(st.text(max_size=30), st.lists(_PIECES, max_size=8).map("".join))
_BEYOND_A_SCHEMA = ("control, format or separator characters", "bytes")


@given(path=_paths)
@example(path="a/.ade")
@example(path=".ade.x/y")
@example(path="a\nb")
def test_files_write_paths_agree_but_for_characters_and_bytes(path: str) -> None:
    problem = fw.path_problem(path)
    schema_refuses = "changes[0].path" in schema_errors(
        "files.write", files({"path": path, "action": "write", "content": ""})
    )
    if problem is None or schema_refuses:
        assert schema_refuses == (problem is not None)
    else:
        assert any(reason in problem for reason in _BEYOND_A_SCHEMA), problem


@given(branch=st.text(alphabet="ab9_./-+@{}~^: \\*.lockHED\x00é", max_size=20))
@example(branch="HEAD")
@example(branch="HEADS")
def test_git_branch_names_agree_exactly(branch: str) -> None:
    schema_refuses = "branch" in schema_errors("git.patch", git(branch=branch))
    assert schema_refuses == (gp.branch_problem(branch) is not None)


@given(branch=st.text(max_size=20))
def test_a_branch_validate_accepts_the_schema_accepts(branch: str) -> None:
    if gp.branch_problem(branch) is None:
        assert schema_errors("git.patch", git(branch=branch)) == set()


@given(
    cwd=st.one_of(st.text(max_size=10), st.just("/srv/w")),
    timeout=st.one_of(st.none(), st.booleans(), st.integers(-5, 4000), st.floats(allow_nan=False)),
)
def test_shell_cwd_and_timeout_agree(cwd: str, timeout: Any) -> None:
    payload = profile(cwd=cwd, timeout_seconds=timeout)
    schema_found = schema_errors("shell", payload)
    assert ("timeout_seconds" in schema_found) == (
        timeout is not None and sh.timeout_problem(timeout) is not None
    )
    if sh.cwd_problem(cwd) is None:
        assert "cwd" not in schema_found


def test_a_payload_models_errors_are_located_as_executors_write_them() -> None:
    with pytest.raises(PydanticError) as caught:
        sh.ShellCommandTask.model_validate(command(command=["ok", 3], cwd=None))
    assert [e.path for e in field_errors(caught.value)] == ["command[1]", "cwd"]
    with pytest.raises(PydanticError) as caught:
        hr.HttpRequestPayload.model_validate(http(rollback={"method": "GET"}))
    assert [e.path for e in field_errors(caught.value)] == ["rollback.url"]


@pytest.mark.parametrize("task_type", BUILT_IN)
def test_the_schema_works_embedded_in_an_mcp_tool(task_type: str) -> None:
    """The MCP change tool nests the schema under ``payload``: it must hold no reference
    into a root it no longer has (``#/$defs/...``)."""
    tool = change_tool(task_type, "", schema_of(task_type))
    Draft202012Validator.check_schema(tool.input_schema)
    validator = Draft202012Validator(tool.input_schema)
    for payload in GOOD[task_type]:
        assert list(validator.iter_errors({"title": "t", "payload": payload})) == []
    for payload, _ in BAD[task_type]:
        assert not validator.is_valid({"title": "t", "payload": payload})


class _Nothing(BaseModel):
    model_config = ConfigDict(extra="forbid")


@pytest.mark.parametrize(
    ("task_type", "module", "model"),
    [
        ("files.write", fw, "FilesWritePayload"),
        ("git.patch", gp, "GitPatchPayload"),
        ("http.request", hr, "HttpRequestPayload"),
        ("shell", sh, "ShellPayload"),
    ],
)
def test_validate_never_accepts_what_the_payload_model_refuses(
    task_type: str, module: Any, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model runs after the executor's own checks: were it stricter than they are (a
    model refusing every key, here), validate would refuse too, naming the model's fields."""
    payload = GOOD[task_type][0]
    assert validate_errors(task_type, payload) == []
    monkeypatch.setattr(module, model, _Nothing)
    assert sorted(validate_errors(task_type, payload)) == sorted(payload)
