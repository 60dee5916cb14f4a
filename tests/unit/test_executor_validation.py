"""Pure validation of the built-in executors' payloads and the plan value types.

No filesystem and no git here: ``validate`` must decide from the payload alone.
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from community_ade.errors import InvalidInput
from community_ade.execution.executors import (
    ApplyFailed,
    ApplyingExecutor,
    Executor,
    FieldError,
    Plan,
    PlanContext,
    ValidationReport,
    digest_of,
    urls,
)
from community_ade.execution.executors import commands as cm
from community_ade.execution.executors import files_write as fw
from community_ade.execution.executors import git_patch as gp
from community_ade.execution.executors import http_request as hr
from community_ade.execution.executors import shell as sh
from community_ade.execution.executors import shell_profile as sp
from community_ade.secrets.references import (
    SecretRef,
    SecretUse,
    resolve_references,
    scrub,
    secret_bearing_name,
    use_of,
)

FILES = fw.FilesWriteExecutor()
GIT = gp.GitPatchExecutor()
SHELL = sh.ShellExecutor()
HTTP = hr.HttpRequestExecutor()
ROOT = "/srv/workspaces/project"


def files_payload(*changes: dict[str, Any], root: str = ROOT) -> dict[str, Any]:
    return {"root": root, "changes": list(changes)}


def write(path: str, content: str = "x\n") -> dict[str, Any]:
    return {"path": path, "action": "write", "content": content}


def delete(path: str) -> dict[str, Any]:
    return {"path": path, "action": "delete"}


def error_paths(report: ValidationReport) -> list[str]:
    return [e.path for e in report.errors]


# --- value types ------------------------------------------------------------------------


def test_digest_is_the_sha256_of_the_utf8_preview() -> None:
    preview = "--- a/é\n+++ b/é\n"
    assert digest_of(preview) == hashlib.sha256(preview.encode("utf-8")).hexdigest()


def test_plan_build_computes_the_digest_and_a_wrong_digest_is_refused() -> None:
    plan = Plan.build(
        preview="p\n", format="diff", precondition_fingerprint="f", lines_changed=1, summary="s"
    )
    assert plan.digest == digest_of("p\n")
    with pytest.raises(ValueError, match="digest"):
        Plan("p\n", "diff", digest_of("other"), "f", 1, "s")
    with pytest.raises(ValueError, match="negative"):
        Plan("p\n", "diff", digest_of("p\n"), "f", -1, "s")


def test_report_ok_and_raise_if_invalid_carries_every_error() -> None:
    assert ValidationReport().ok
    report = ValidationReport.of(FieldError(f"f{i}", "bad") for i in range(7))
    assert not report.ok
    with pytest.raises(InvalidInput) as caught:
        report.raise_if_invalid("files.write")
    assert caught.value.code == "validation_failed"
    assert "and 2 more" in caught.value.message
    assert caught.value.details["errors"] == [{"path": f"f{i}", "message": "bad"} for i in range(7)]


def test_plan_context_wants_absolute_roots_and_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="absolute"):
        PlanContext(allowed_roots=(Path("relative"),))
    with pytest.raises(ValueError, match="timeout"):
        PlanContext(allowed_roots=(), command_timeout_seconds=0)


def test_builtins_satisfy_the_applying_executor_protocol() -> None:
    for executor in (FILES, GIT, SHELL, HTTP):
        assert isinstance(executor, Executor)
        assert isinstance(executor, ApplyingExecutor)
    assert [e.task_type for e in (FILES, GIT, SHELL, HTTP)] == [
        "files.write",
        "git.patch",
        "shell",
        "http.request",
    ]


# --- files.write ------------------------------------------------------------------------


def test_files_write_accepts_a_well_formed_payload() -> None:
    payload = files_payload(write("a.txt"), write("dir/b.txt", ""), delete("old/c.txt"))
    assert FILES.validate(payload).ok


def test_files_write_delete_may_carry_an_explicit_null_content() -> None:
    assert FILES.validate(files_payload({"path": "a", "action": "delete", "content": None})).ok


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "..",
        "../x",
        "a/../../x",
        "a/..",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        ".",
        "a\x00b",
        "a\\..\\b",
        "a\nb",
        "a\rb",
        "evil\u202etxt.exe",
        "a\u2028b",
        "x" * 256,
        "a/" * 2100,
        ".ade/fences/x",
        "sub/.ade/x",
    ],
)
def test_files_write_refuses_bad_paths(path: str) -> None:
    report = FILES.validate(files_payload(write(path)))
    assert error_paths(report) == ["changes[0].path"]


@pytest.mark.parametrize("path", ["a", "a/b/c.txt", ".hidden", "a..b", "...", "dir/.env", "é/ü"])
def test_files_write_accepts_normal_paths(path: str) -> None:
    assert FILES.validate(files_payload(write(path))).ok


@pytest.mark.parametrize("root", ["relative/root", "", "./x", "/a\x00b", None, 3])
def test_files_write_refuses_a_root_that_is_not_an_absolute_path(root: Any) -> None:
    assert error_paths(FILES.validate(files_payload(write("a"), root=root))) == ["root"]


def test_files_write_content_is_required_for_write_and_forbidden_for_delete() -> None:
    report = FILES.validate(
        files_payload(
            {"path": "a", "action": "write"},
            {"path": "b", "action": "write", "content": 3},
            {"path": "c", "action": "delete", "content": "x"},
            {"path": "d", "action": "write", "content": "\ud800"},
        )
    )
    assert error_paths(report) == [
        "changes[0].content",
        "changes[1].content",
        "changes[2].content",
        "changes[3].content",
    ]


def test_files_write_refuses_duplicates_and_paths_inside_a_written_file() -> None:
    report = FILES.validate(files_payload(write("a"), delete("a"), write("a/b"), write("c/d")))
    assert error_paths(report) == ["changes[1].path", "changes[2].path"]
    assert "duplicates changes[0]" in report.errors[0].message


def test_files_write_refuses_unknown_fields_and_actions() -> None:
    payload = files_payload({"path": "a", "action": "chmod", "mode": 7})
    payload["extra"] = 1
    report = FILES.validate(payload)
    assert sorted(error_paths(report)) == ["changes[0].action", "changes[0].mode", "extra"]


@pytest.mark.parametrize(
    "changes", [[], "a.txt", None, {"path": "a"}, [3], [[write("a")]]], ids=repr
)
def test_files_write_refuses_a_malformed_change_list(changes: Any) -> None:
    report = FILES.validate({"root": ROOT, "changes": changes})
    assert not report.ok
    assert all(path.startswith("changes") for path in error_paths(report))


def test_files_write_bounds_the_number_of_changes_and_the_total_size() -> None:
    too_many = files_payload(*(write(f"f{i}") for i in range(fw.MAX_CHANGES + 1)))
    assert error_paths(FILES.validate(too_many)) == ["changes"]
    at_limit = files_payload(*(write(f"f{i}") for i in range(fw.MAX_CHANGES)))
    assert FILES.validate(at_limit).ok
    half = "é" * (fw.MAX_TOTAL_BYTES // 4)  # 2 bytes each: two halves = the limit exactly
    assert FILES.validate(files_payload(write("a", half), write("b", half))).ok
    assert error_paths(FILES.validate(files_payload(write("a", half), write("b", half + "x")))) == [
        "changes"
    ]


def test_files_write_refuses_a_payload_that_is_not_an_object() -> None:
    assert error_paths(FILES.validate(["root"])) == [""]  # type: ignore[arg-type]


def test_files_write_reports_every_problem_at_once() -> None:
    report = FILES.validate(files_payload(write("../a"), delete("/b"), root="rel"))
    assert error_paths(report) == ["root", "changes[0].path", "changes[1].path"]


async def test_files_write_plan_refuses_an_invalid_payload_before_touching_anything() -> None:
    context = PlanContext(allowed_roots=(Path("/nonexistent-root-for-test"),))
    with pytest.raises(InvalidInput) as caught:
        await FILES.plan(files_payload(write("../escape")), context)
    assert caught.value.details["errors"][0]["path"] == "changes[0].path"


# Arbitrary text, and text built from the pieces that make paths dangerous.
_PIECES = st.sampled_from(["a", "b.txt", ".", "..", "", "/", "\\", " ", "\x00", "~", "\u202e"])
_tricky = st.lists(_PIECES, max_size=8).map("".join)
_segments = st.lists(st.sampled_from(["a", ".", "..", "", "x y", "..."]), min_size=1, max_size=6)


@given(path=st.one_of(st.text(max_size=40), _tricky, _segments.map("/".join)))
@example(path="a/../../b")
@example(path="..")
def test_no_accepted_path_escapes_the_root(path: str) -> None:
    report = FILES.validate(files_payload(write(path)))
    if not report.ok:
        return
    joined = posixpath.normpath(posixpath.join(ROOT, path))
    assert joined.startswith(ROOT + "/")
    assert joined == posixpath.join(ROOT, path)  # already normalised: what you see is it
    assert ".." not in path.split("/")


# --- git.patch --------------------------------------------------------------------------

PATCH = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"
_MISSING = object()


def git_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "repo": "/srv/repos/app",
        "branch": "main",
        "patch": PATCH,
        "message": "Fix f",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not _MISSING}


def test_git_patch_accepts_a_well_formed_payload() -> None:
    assert GIT.validate(git_payload()).ok


@pytest.mark.parametrize("field", ["repo", "branch", "patch", "message"])
def test_git_patch_requires_every_field(field: str) -> None:
    assert error_paths(GIT.validate(git_payload(**{field: _MISSING}))) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repo", "relative/repo"),
        ("repo", "/a\x00b"),
        ("patch", ""),
        ("patch", " \n\t\n"),
        ("patch", "--- a\x00"),
        ("patch", "x" * (gp.MAX_PATCH_BYTES + 1)),
        ("message", ""),
        ("message", "   \n"),
        ("message", "a\x00b"),
        ("message", "m" * (gp.MAX_MESSAGE_CHARS + 1)),
        ("message", 42),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_git_patch_refuses_bad_fields(field: str, value: Any) -> None:
    assert error_paths(GIT.validate(git_payload(**{field: value}))) == [field]


def test_git_patch_limit_is_in_bytes_and_inclusive() -> None:
    assert GIT.validate(git_payload(patch="x" * gp.MAX_PATCH_BYTES)).ok
    assert not GIT.validate(git_payload(patch="é" * (gp.MAX_PATCH_BYTES // 2 + 1))).ok


def test_git_patch_refuses_unknown_fields() -> None:
    assert error_paths(GIT.validate(git_payload(force=True))) == ["force"]


@pytest.mark.parametrize(
    "branch",
    [
        "",
        "HEAD",
        "-main",
        "a..b",
        "a/.b",
        ".a",
        "a.",
        "a.lock",
        "a/b.lock/c",
        "a//b",
        "/a",
        "a/",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a@{1}",
        "@",
        "a\x7f",
        "a\nb",
        "x" * 201,
    ],
)
def test_git_patch_refuses_bad_branch_names(branch: str) -> None:
    assert error_paths(GIT.validate(git_payload(branch=branch))) == ["branch"]


@pytest.mark.parametrize(
    "branch", ["main", "feature/x-1", "release/1.2.3", "user_a/fix+b", "a.b", "_x", "9"]
)
def test_git_patch_accepts_ordinary_branch_names(branch: str) -> None:
    assert GIT.validate(git_payload(branch=branch)).ok


@given(st.text(alphabet="ab./-_@{}~^: \\*.lock", max_size=20))
def test_accepted_branch_names_avoid_every_git_forbidden_form(branch: str) -> None:
    if gp.branch_problem(branch) is not None:
        return
    assert not branch.startswith(("-", "/", "."))
    assert not branch.endswith(("/", ".", ".lock"))
    for forbidden in ("..", "//", "@{", "/.", ".lock/", " ", "~", "^", ":", "\\", "*", "{"):
        assert forbidden not in branch


def test_canonical_patch_normalises_transport_crlf_only() -> None:
    assert gp.canonical_patch(PATCH.replace("\n", "\r\n")) == PATCH
    mixed = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\r\n+b\r\n"
    assert gp.canonical_patch(mixed) == mixed  # patching a CRLF file: kept byte for byte
    assert gp.canonical_patch(PATCH.rstrip("\n")) == PATCH
    with_blank_context = PATCH + " \n"
    assert gp.canonical_patch(with_blank_context) == with_blank_context


def test_numstat_totals_count_binary_files_as_one_line() -> None:
    lines = ["3\t1\tsrc/a.py", "-\t-\timg.png", "0\t5\tb => c", "garbage"]
    assert gp.numstat_totals(lines) == (3, 3, 6, 1)


def test_git_commit_message_ends_with_the_task_and_fence_trailers() -> None:
    message = gp.commit_message("Fix f\n\nBody\n\n", "t-1", 42)
    assert message == "Fix f\n\nBody\n\nADE-Task: t-1\nADE-Fence: 42\n"


# --- shell ------------------------------------------------------------------------------


def shell_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"profile": "deploy", "params": {"env": "eu"}, "cwd": "/srv/w"}
    payload.update(overrides)
    return payload


def free_form(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"command": ["make", "deploy"], "cwd": "/srv/w"}
    payload.update(overrides)
    return payload


def test_shell_accepts_a_well_formed_profile_task() -> None:
    spec, errors = sh.parse(shell_payload(timeout_seconds=10))
    assert errors == ()
    assert spec == sh.ShellTask(
        cwd="/srv/w", timeout_seconds=10.0, profile="deploy", params={"env": "eu"}
    )
    assert sh.parse(shell_payload(params={}))[0] == sh.ShellTask(
        cwd="/srv/w", timeout_seconds=None, profile="deploy"
    )


def test_shell_accepts_a_well_formed_free_form_task() -> None:
    spec, errors = sh.parse(free_form(rollback_command=["make", "undo"]))
    assert errors == ()
    assert spec == sh.ShellTask(
        cwd="/srv/w",
        timeout_seconds=None,
        command=("make", "deploy"),
        rollback_command=("make", "undo"),
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("command", ["make"]),  # a profile task runs the profile's command
        ("preview_command", ["ls"]),  # never a task's own preview
        ("profile", "Deploy!"),
        ("profile", 3),
        ("params", ["eu"]),
        ("params.env", True),
        ("params.env", 1.5),
        ("params.env", {"nested": 1}),
        ("params.env", "x" * 5000),
        ("params.Bad-Name", "x"),
        ("cwd", "relative"),
        ("cwd", None),
        ("cwd", "/a\nb"),
        ("timeout_seconds", 0),
        ("timeout_seconds", sh.MAX_TIMEOUT_SECONDS + 1),
        ("timeout_seconds", True),
    ],
)
def test_shell_refuses_bad_profile_fields(field: str, value: Any) -> None:
    if field.startswith("params."):
        payload = shell_payload(params={field.removeprefix("params."): value})
    else:
        payload = shell_payload(**{field: value})
    assert error_paths(SHELL.validate(payload)) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("command", "make deploy"),  # a string: ambiguous quoting, refused
        ("command", []),
        ("command", [""]),
        ("command", ["ok", 3]),
        ("command", ["a\x00b"]),
        ("command", ["x"] * (sp.MAX_ARGS + 1)),
        ("command", ["x" * (sp.MAX_COMMAND_BYTES + 1)]),
        ("command", None),
        ("preview_command", ["make", "-n"]),
        ("rollback_command", []),
        ("params", {}),  # only a profile task has parameters
        ("shell", True),
    ],
)
def test_shell_refuses_bad_free_form_fields(field: str, value: Any) -> None:
    assert error_paths(SHELL.validate(free_form(**{field: value}))) == [field]


def test_shell_says_why_a_task_cannot_bring_its_own_preview() -> None:
    (error,) = SHELL.validate(free_form(preview_command=["cat", "x"])).errors
    assert "previews run only from an admin's shell profile" in error.message


def test_shell_output_keeps_the_start_and_the_end() -> None:
    assert cm.bounded(b"short") == "short"
    data = b"a" * 100 + b"b" * 100
    text = cm.bounded(data, limit=20)
    assert text.startswith("a" * 10)
    assert text.endswith("b" * 10)
    assert "[... 180 bytes omitted ...]" in text


def test_shell_render_quotes_what_a_shell_would_split() -> None:
    assert sh.render_argv(["sh", "-c", "echo $HOME; rm x"]) == "sh -c 'echo $HOME; rm x'"


# --- http.request -----------------------------------------------------------------------


def http_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"method": "POST", "url": "https://hooks.example.com/a"}
    payload.update(overrides)
    return payload


def test_http_accepts_a_well_formed_payload() -> None:
    spec, errors = hr.parse(
        http_payload(
            headers={"X-Token": {"secret": "hook-token"}, "accept": "*/*"},
            query={"api_key": {"secret": "hook-key", "prefix": "k-"}, "region": "eu west"},
            body=[1, {"b": 2, "a": None}],
            timeout_seconds=5,
            rollback={"method": "DELETE", "url": "https://hooks.example.com/a/1"},
        )
    )
    assert errors == ()
    assert spec is not None
    assert spec.request.headers == (
        ("accept", "*/*"),
        ("Content-Type", "application/json"),
        ("User-Agent", "community-ade"),
        ("X-Token", SecretRef("hook-token")),
    )
    assert spec.request.secret_names == {"hook-token", "hook-key"}
    assert spec.request.shown_url() == (
        "https://hooks.example.com/a?api_key=k-{secret:hook-key}&region=eu%20west"
    )
    assert "X-Token: {secret:hook-token}" in spec.request.render()
    url, headers = spec.request.sent({"hook-token": "T0ken/1", "hook-key": "a&b=c"})
    assert url == "https://hooks.example.com/a?api_key=k-a%26b%3Dc&region=eu%20west"
    assert ("X-Token", "T0ken/1") in headers
    assert spec.request.body == b'[\n  1,\n  {\n    "a": null,\n    "b": 2\n  }\n]'
    assert spec.rollback is not None
    assert spec.rollback.method == "DELETE"


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("method", "post", "method"),
        ("method", "CONNECT", "method"),
        ("url", "ftp://x/", "url"),
        ("url", "https://user:pw@x/", "url"),
        ("url", "https:///nohost", "url"),
        ("url", "https://x/a b", "url"),
        ("url", "https://x/#frag", "url"),
        ("url", "https://x/a/../b", "url"),
        ("url", "https://x/a/%2e%2e/b", "url"),
        ("url", "https://x:99999/", "url"),
        ("url", None, "url"),
        ("headers", ["a"], "headers"),
        ("headers", {"Bad Name": "v"}, "headers.Bad Name"),
        ("headers", {"X-A": "line\r\nInjected: 1"}, "headers.X-A"),
        ("headers", {"X-A": 1}, "headers.X-A"),
        ("headers", {"Host": "evil"}, "headers.Host"),
        ("headers", {"x-ade-fence": "1"}, "headers.x-ade-fence"),
        ("headers", {"Content-Length": "1"}, "headers.Content-Length"),
        ("body", float("nan"), "body"),
        ("body", "x" * (hr.MAX_BODY_BYTES + 1), "body"),
        ("body", "\ud800", "body"),
        ("timeout_seconds", 0, "timeout_seconds"),
        ("timeout_seconds", hr.MAX_TIMEOUT_SECONDS + 1, "timeout_seconds"),
        ("rollback", "DELETE x", "rollback"),
        ("rollback", {"method": "DELETE"}, "rollback.url"),
        ("rollback", {"method": "DELETE", "url": "https://x/", "extra": 1}, "rollback.extra"),
        ("extra", 1, "extra"),
    ],
)
def test_http_refuses_bad_fields(field: str, value: Any, where: str) -> None:
    assert error_paths(HTTP.validate(http_payload(**{field: value}))) == [where]


def test_http_refuses_a_header_given_twice_in_different_case() -> None:
    report = HTTP.validate(http_payload(headers={"X-A": "1", "x-a": "2"}))
    assert error_paths(report) == ["headers.x-a"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("X-Hub-Signature-256", True),
        ("Ocp-Apim-Subscription-Key", True),
        ("X-Session-Id", True),
        ("access_token", True),
        ("api_key", True),
        ("sig", True),
        ("DB_PASSWORD", True),
        ("X-Authz", True),
        ("Idempotency-Key", False),
        ("X-Author", False),
        ("author_name", False),
        ("Content-Type", False),
        ("X-Request-Id", False),
        ("region", False),
    ],
)
def test_secret_bearing_names(name: str, secret: bool) -> None:
    assert secret_bearing_name(name) is secret


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"headers": {"Authorization": "Bearer s3cret"}}, "headers.Authorization"),
        ({"headers": {"X-Api-Key": ""}}, "headers.X-Api-Key"),
        ({"query": {"access_token": "abc"}}, "query.access_token"),
        ({"url": "https://hooks.example.com/a?env=1&token=abc"}, "url"),
        ({"rollback": {"method": "DELETE", "url": "https://hooks.example.com/a?key=k"}},
         "rollback.url"),
        ({"rollback": {"method": "DELETE", "url": "https://hooks.example.com/a",
                       "headers": {"Cookie": "c=1"}}}, "rollback.headers.Cookie"),
    ],
)  # fmt: skip
def test_http_refuses_credentials_written_inline(overrides: dict[str, Any], where: str) -> None:
    payload = http_payload(**overrides)
    report = HTTP.validate(payload)
    assert error_paths(report) == [where]
    assert "ade secrets set" in report.errors[0].message
    # The same problems are found before validation, on the payload as it is.
    assert [e.path for e in HTTP.secret_use(payload).problems] == [where]


@pytest.mark.parametrize(
    ("reference", "where"),
    [
        ({"secret": "Bad Name"}, "headers.Authorization.secret"),
        ({"secret": ""}, "headers.Authorization.secret"),
        ({"secret": "t", "prefix": "Bearer\r\nX: 1"}, "headers.Authorization.prefix"),
        ({"secret": "t", "prefix": "x" * 65}, "headers.Authorization.prefix"),
        ({"secret": "t", "value": "inline"}, "headers.Authorization.value"),
    ],
)
def test_http_refuses_malformed_references(reference: dict[str, Any], where: str) -> None:
    assert error_paths(HTTP.validate(http_payload(headers={"Authorization": reference}))) == [where]


def test_secret_use_names_every_reference_and_copes_with_any_payload() -> None:
    payload = http_payload(
        headers={"Authorization": {"secret": "a"}, "X-Other": "plain"},
        query={"token": {"secret": "b"}},
        rollback={"method": "DELETE", "url": "https://x/", "headers": {"Cookie": {"secret": "c"}}},
        body={"secret": "not-a-reference: the body is data"},
    )
    use = HTTP.secret_use(payload)
    assert use.problems == ()
    assert [where for where, _ in use.references] == [
        "headers.Authorization",
        "query.token",
        "rollback.headers.Cookie",
    ]
    assert use.names == {"a", "b", "c"}
    for garbage in (None, [], "x", {"headers": 1, "query": [1], "url": 5, "rollback": "r"}):
        assert HTTP.secret_use(garbage) == SecretUse()  # type: ignore[arg-type]


def test_a_secret_that_is_no_header_value_is_not_sent() -> None:
    spec, _ = hr.parse(http_payload(headers={"Authorization": {"secret": "t"}}))
    assert spec is not None
    with pytest.raises(ApplyFailed, match="printable ASCII"):
        spec.request.sent({"t": "line\r\nInjected: 1"})


def test_references_resolve_in_any_mapping() -> None:
    """What an executor other than http.request (a shell profile's environment) uses."""
    use = use_of("env", {"DB_PASSWORD": {"secret": "db"}, "MODE": "prod"}, secret_bearing=None)
    assert use.problems == ()
    [(where, ref)] = use.references
    assert (where, ref) == ("env.DB_PASSWORD", SecretRef("db"))
    every = use_of("env", {"MODE": "prod"}, secret_bearing=True)
    assert [p.path for p in every.problems] == ["env.MODE"]
    values = {"DB_PASSWORD": ref, "MODE": "prod"}
    assert resolve_references(values, {"db": "pw-12345678"}) == {
        "DB_PASSWORD": "pw-12345678",
        "MODE": "prod",
    }


def test_scrub_replaces_every_revealed_value_longest_first() -> None:
    revealed = {"short": "abcdefgh", "long": "abcdefgh-and-more"}
    text = "got abcdefgh-and-more and abcdefgh"
    assert scrub(text, revealed) == "got {secret:long} and {secret:short}"


def allowlist(*entries: str) -> tuple[urls.Target, ...]:
    return urls.parse_allowlist(entries)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/deploy", True),
        ("https://hooks.example.com/deploy/eu?x=1", True),
        ("https://HOOKS.example.com:443/deploy", True),
        ("https://hooks.example.com/deployment", False),
        ("https://hooks.example.com.evil.net/deploy", False),
        ("http://hooks.example.com/deploy", False),
        ("https://hooks.example.com:8443/deploy", False),
        ("https://hooks.example.com/", False),
        ("http://127.0.0.1:8080/any/thing", True),
    ],
)
def test_allowlist_matches_origin_exactly_and_path_at_a_boundary(url: str, ok: bool) -> None:
    prefixes = allowlist("https://hooks.example.com/deploy", "http://127.0.0.1:8080/")
    target, problem = urls.parse_url(url)
    assert problem is None
    assert target is not None
    assert urls.allowed(target, prefixes) is ok


def test_an_empty_allowlist_allows_nothing_and_a_bad_entry_is_loud() -> None:
    target, _ = urls.parse_url("https://x/")
    assert target is not None
    assert not urls.allowed(target, ())
    with pytest.raises(ValueError, match="must not have a query"):
        allowlist("https://x/a?b=1")
    with pytest.raises(ValueError, match="http:// or https://"):
        PlanContext(allowed_roots=(), http_allowlist=("x",))
