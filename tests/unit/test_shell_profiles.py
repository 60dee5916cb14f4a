"""Shell profiles and the sandbox's argv, pure: what an admin may define, what a
submitter's parameters may be, and that a value can only ever be one whole argument."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from community_ade.execution.executors.sandbox import (
    SANDBOX_ID,
    HostPath,
    SandboxLimits,
    bwrap_argv,
    sandbox_environment,
)
from community_ade.execution.executors.shell_profile import ShellProfile, render


def profile(**fields: Any) -> ShellProfile:
    document: dict[str, Any] = {"command": ["git", "commit", "-m", "{message}"]}
    document["parameters"] = {"message": {"type": "string"}}
    document.update(fields)
    return ShellProfile.model_validate(document)


def arguments(p: ShellProfile, params: object) -> tuple[dict[str, str], list[str]]:
    values, errors = p.arguments(params)
    return values, [f"{e.path}: {e.message}" for e in errors]


# -- what an admin may define -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"command": ["git", "--message={message}"]}, "must be a whole argument"),
        ({"command": ["{message}", "x"]}, "program (the first argument) must not be a placeholder"),
        ({"command": ["echo", "{other}", "{message}"]}, "undeclared parameters: other"),
        (
            {"parameters": {"message": {"type": "string"}, "unused": {"type": "string"}}},
            "used by no template: unused",
        ),
        ({"command": []}, "at least 1 item"),
        ({"command": ["a\x00b", "{message}"]}, "NUL"),
        ({"parameters": {"message": {"type": "string", "pattern": "("}}}, "not a regular"),
        ({"parameters": {"message": {"type": "string", "default": "-rf"}}}, "default"),
        ({"parameters": {"message": {"type": "integer", "minimum": 5, "maximum": 1}}}, "minimum"),
        ({"parameters": {"message": {"type": "enum", "choices": ["a", "a"]}}}, "distinct"),
        ({"parameters": {"message": {"type": "shell"}}}, "does not match any of the expected"),
        ({"env": {"ADE_FENCE": "1"}}, "set by Community ADE"),
        ({"env": {"bad name": "1"}}, "should match pattern"),
        ({"cwd_roots": ["relative"]}, "absolute path"),
        ({"max_timeout_seconds": 0}, "greater than 0"),
        ({"shell": True}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_profile_is_refused_saying_why(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        profile(**fields)
    assert message in str(caught.value)


def test_a_profile_round_trips_through_its_stored_json() -> None:
    p = profile(
        preview=["git", "diff", "--stat"],
        rollback=["git", "reset", "--hard", "HEAD~1"],
        env={"GIT_AUTHOR_NAME": "ade"},
        cwd_roots=["/srv/repos"],
    )
    assert ShellProfile.model_validate(p.model_dump(mode="json")) == p


# -- what a submitter may fill in ---------------------------------------------------------


def test_string_parameters_refuse_a_leading_dash_unless_allowed() -> None:
    p = profile()
    assert arguments(p, {"message": "fix it"}) == ({"message": "fix it"}, [])
    _, errors = arguments(p, {"message": "--amend"})
    assert errors == ["params.message: must not start with '-' (it would be read as an option)"]
    dashes = profile(parameters={"message": {"type": "string", "allow_leading_dash": True}})
    assert arguments(dashes, {"message": "--amend"})[1] == []


@pytest.mark.parametrize(
    ("spec", "value", "problem"),
    [
        ({"type": "string", "pattern": "[a-z]+"}, "abc1", "must match [a-z]+"),
        ({"type": "string", "max_length": 3}, "abcd", "at most 3 characters"),
        ({"type": "string"}, "a\nb", "control"),
        ({"type": "string"}, "", "must not be empty"),
        ({"type": "string"}, 3, "must be a string"),
        ({"type": "integer", "minimum": 1, "maximum": 9}, 10, "between 1 and 9"),
        ({"type": "integer"}, "3", "whole number"),
        ({"type": "integer"}, True, "whole number"),
        ({"type": "enum", "choices": ["eu", "us"]}, "asia", "one of: eu, us"),
        ({"type": "path"}, "/etc/passwd", "relative"),
        ({"type": "path"}, "../x", "'..'"),
        ({"type": "path"}, "a/../../x", "'..'"),
        ({"type": "path"}, "-rf", "must not start with '-'"),
    ],
)
def test_parameter_values_are_checked_against_their_type(
    spec: dict[str, Any], value: object, problem: str
) -> None:
    p = profile(parameters={"message": spec})
    values, errors = arguments(p, {"message": value})
    assert values == {}
    assert len(errors) == 1
    assert problem in errors[0]


def test_missing_unknown_and_defaulted_parameters() -> None:
    p = profile(
        command=["deploy", "{env}", "{replicas}"],
        parameters={
            "env": {"type": "enum", "choices": ["eu", "us"]},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 9, "default": 2},
        },
    )
    assert arguments(p, {"env": "eu"}) == ({"env": "eu", "replicas": "2"}, [])
    _, errors = arguments(p, {"replicas": 3, "extra": "x"})
    assert errors == [
        "params.extra: unknown parameter; the profile has: env, replicas",
        "params.env: is required",
    ]
    assert arguments(p, "eu")[1] == ["params: must be an object"]


@given(st.text(min_size=1, max_size=50))
def test_a_value_is_always_exactly_one_argument(value: str) -> None:
    # Whatever a submitter types (spaces, quotes, ;, $(...), braces), it is one argv
    # element, in its place, and the literal arguments around it do not change.
    template = ["git", "commit", "-m", "{message}", "--", "{message}"]
    assert render(template, {"message": value}) == ("git", "commit", "-m", value, "--", value)


# -- the sandbox's argv -------------------------------------------------------------------

LAYOUT = (HostPath("/usr"), HostPath("/bin", "usr/bin"), HostPath("/etc/passwd"))
TOOLS = ("/usr/bin/prlimit", "/usr/bin/bwrap")


def test_the_sandbox_argv_isolates_everything_and_limits_resources() -> None:
    limits = SandboxLimits(cpu_seconds=7, memory_bytes=2**20, file_size_bytes=2**10, processes=9)
    cwd = Path("/srv/ws/repo")
    argv = bwrap_argv(
        ["git", "diff", "--stat"],
        tools=TOOLS,
        cwd=cwd,
        hidden=[Path("/srv/ws/repo/.ade"), Path("/srv/data"), Path("/srv/ws/repo")],
        layout=LAYOUT,
        limits=limits,
    )
    limit_part, sandbox = argv[: argv.index("--") + 1], argv[argv.index("--") + 1 :]
    assert limit_part == [
        "/usr/bin/prlimit",
        "--cpu=7",
        f"--as={2**20}",
        f"--fsize={2**10}",
        "--nproc=9",
        "--nofile=256",
        "--core=0",
        "--",
    ]
    assert sandbox[0] == "/usr/bin/bwrap"
    for option in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert option in sandbox
    assert "--share-net" not in sandbox
    assert sandbox[sandbox.index("--uid") + 1] == sandbox[sandbox.index("--gid") + 1] == "65534"
    assert SANDBOX_ID == 65534
    joined = " ".join(sandbox)
    assert "--ro-bind /usr /usr --symlink usr/bin /bin --ro-bind /etc/passwd /etc/passwd" in joined
    assert f"--tmpfs /tmp --ro-bind {cwd} {cwd}" in joined
    # Only what lies strictly inside the working directory needs covering.
    assert "--tmpfs /srv/ws/repo/.ade --remount-ro /srv/ws/repo/.ade" in joined
    assert "/srv/data" not in joined
    assert "--bind" not in sandbox  # nothing writable from the host
    assert sandbox[-6:] == ["--chdir", str(cwd), "--", "git", "diff", "--stat"]


def test_the_sandbox_environment_is_its_own() -> None:
    env = sandbox_environment({"TZ": "UTC"})
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    assert env["TZ"] == "UTC"
    assert set(env) == {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ"}
