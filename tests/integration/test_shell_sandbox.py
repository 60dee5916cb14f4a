"""Issue 11 §1, reproduced: code a submitter controls must not run outside a sandbox
before approval.

The attack was a task whose ``preview_command`` ran at submit as the server's user: it
read demo-tokens.json and secret.key, wrote ade.db, and could open connections. Here a
task cannot bring a preview command at all, and even an admin's profile that hands the
submitter a whole script to preview (the worst profile an admin could write) is held by
the sandbox: each attack below is shown to have run (it says so in the output) and to
have failed. The data directory's files are world-readable and -writable on purpose, so
that what stops them is the sandbox, not their permissions. Real bubblewrap, real
processes, a real TCP listener.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from shellutil import SECRET, TOKEN, Site, require_bwrap, site

from community_ade.errors import InvalidInput
from community_ade.execution.executors.shell import ShellExecutor

SHELL = ShellExecutor()
# An admin's profile that lets the submitter choose the whole preview script.
HOSTILE = {
    "hostile": {
        "command": ["true"],
        "preview": ["/bin/sh", "-c", "{script}"],
        "parameters": {"script": {"type": "string", "max_length": 4096}},
    }
}
GIT_DIFF_STAT = {
    "git-diff-stat": {
        "description": "What changed in the working tree, read-only.",
        "command": ["git", "commit", "-am", "{message}"],
        "preview": ["git", "diff", "--stat"],
        "parameters": {"message": {"type": "string", "pattern": "[A-Za-z0-9 .,:-]+"}},
    }
}


@pytest.fixture
def world() -> Iterator[Site]:
    require_bwrap()
    with site() as s:
        yield s


def running(cmdline: str) -> bool:
    """Whether a live process's command line (NUL-separated) contains ``cmdline``."""
    for entry in Path("/proc").iterdir():
        try:
            found = cmdline.encode() in (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError, IndexError):
            continue
        if found and state != "Z":
            return True
    return False


def existing(*paths: Path) -> list[Path]:
    return [path for path in paths if path.exists()]


async def preview_of(world: Site, script: str) -> str:
    """Plan a task whose preview is ``script`` in ``world.repo``: the preview text."""
    plan = await SHELL.plan(world.task("hostile", script=script), world.plan_context(HOSTILE))
    return plan.preview


async def test_a_task_can_no_longer_bring_its_own_preview_command(world: Site) -> None:
    marker = world.outside / "ran"
    payload = {
        "command": ["true"],
        "cwd": str(world.repo),
        "preview_command": ["/bin/sh", "-c", f"cat {world.data}/secret.key > {marker}"],
    }
    with pytest.raises(InvalidInput, match="previews run only from an admin's shell profile"):
        await SHELL.plan(payload, world.plan_context(shell_free_form=True))
    assert not marker.exists()


async def test_a_preview_cannot_read_the_tokens_file_or_the_secret_key(world: Site) -> None:
    script = (
        "echo ran; "
        f"cat {world.data}/demo-tokens.json; cat {world.data}/secret.key; "
        f"ls {world.data}; find / -name secret.key 2>/dev/null; true"
    )
    preview = await preview_of(world, script)
    assert "ran\n" in preview
    assert TOKEN not in preview
    assert SECRET not in preview
    assert "No such file or directory" in preview


async def test_a_preview_cannot_write_the_database(world: Site) -> None:
    before = world.database_digest()
    db = world.data / "ade.db"
    script = (
        f"echo ran; echo admin >> {db}; mkdir -p {world.data}; echo x > {db}; "
        f"sqlite3 {db} \"UPDATE users SET role='admin'\"; true"
    )
    preview = await preview_of(world, script)
    assert "ran\n" in preview
    assert world.database_digest() == before


async def test_a_preview_writes_only_its_scratch_directory(world: Site) -> None:
    outside = world.outside / "pwned"
    in_repo = world.repo / "pwned"
    script = (
        "echo scratch > /tmp/note && cat /tmp/note && echo $HOME; "
        f"touch {outside}; touch {in_repo}; touch pwned; echo x >> app.conf; "
        "touch /pwned /usr/pwned; true"
    )
    preview = await preview_of(world, script)
    assert "scratch\n/tmp\n" in preview  # the scratch directory works
    assert "Read-only file system" in preview
    # Not written: outside every root, in the repository, at /, in the host's /tmp (its
    # /tmp was its own).
    assert existing(outside, in_repo, Path("/pwned"), Path("/tmp/note")) == []
    assert (world.repo / "app.conf").read_text() == "debug = false\n"


async def test_a_preview_cannot_open_a_network_connection(world: Site) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        script = f"echo ran; bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}'; echo exit=$?"
        preview = await preview_of(world, script)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert "ran\n" in preview
    assert "exit=1" in preview


async def test_the_sandbox_hides_the_roots_state_and_other_roots_inside_the_cwd(
    world: Site,
) -> None:
    # A working directory that contains another workspace root and the root's .ade/.
    (world.roots / ".ade" / "fences").mkdir(parents=True)
    (world.roots / ".ade" / "fences" / "record").write_text("00000000000000000042\n")
    nested = world.roots / "nested-root"
    nested.mkdir()
    (nested / "private.txt").write_text("other team's\n")
    context = world.plan_context(HOSTILE, workspace_roots=[world.roots, nested])
    task = world.task(
        "hostile", cwd=world.roots, script="echo ran; ls -A .ade nested-root; cat app.conf; true"
    )
    preview = (await SHELL.plan(task, context)).preview
    assert "ran\n" in preview
    assert "fences" not in preview
    assert "private.txt" not in preview


async def test_an_admins_git_diff_stat_profile_previews_the_change(world: Site) -> None:
    (world.repo / "app.conf").write_text("debug = true\nlevel = 2\n")
    plan = await SHELL.plan(
        world.task("git-diff-stat", message="turn on debug"), world.plan_context(GIT_DIFF_STAT)
    )
    assert "command: git commit -am 'turn on debug'\n" in plan.preview
    assert "preview command: git diff --stat (sandboxed)\npreview exit code: 0\n" in plan.preview
    assert " app.conf | 3 ++-\n 1 file changed, 2 insertions(+), 1 deletion(-)\n" in plan.preview
    # The preview is part of the digest: another change, another preview.
    (world.repo / "app.conf").write_text("debug = true\n")
    again = await SHELL.plan(
        world.task("git-diff-stat", message="turn on debug"), world.plan_context(GIT_DIFF_STAT)
    )
    assert again.digest != plan.digest
    assert again.precondition_fingerprint != plan.precondition_fingerprint


async def test_without_bwrap_previews_are_refused_with_a_clear_message(world: Site) -> None:
    context = world.plan_context(GIT_DIFF_STAT, sandbox_bwrap=str(world.top / "no-bwrap"))
    with pytest.raises(InvalidInput) as caught:
        await SHELL.plan(world.task("git-diff-stat", message="x"), context)
    message = caught.value.message
    assert "shell previews need a sandbox and bwrap was not found" in message
    assert "install bubblewrap" in message
    assert caught.value.details["errors"][0]["path"] == "profile"


async def test_a_broken_bwrap_refuses_previews_too(world: Site) -> None:
    fake = world.top / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    context = world.plan_context(GIT_DIFF_STAT, sandbox_bwrap=str(fake))
    with pytest.raises(InvalidInput, match=r"bubblewrap does not work here.*new namespace"):
        await SHELL.plan(world.task("git-diff-stat", message="x"), context)


async def test_a_profile_without_a_preview_needs_no_sandbox(world: Site) -> None:
    profiles = {"restart": {"command": ["systemctl", "restart", "app"]}}
    context = world.plan_context(profiles, sandbox_bwrap=str(world.top / "no-bwrap"))
    plan = await SHELL.plan(world.task("restart"), context)
    assert "preview command: none\n" in plan.preview


async def test_a_preview_is_killed_at_the_plan_timeout(world: Site) -> None:
    context = world.plan_context(HOSTILE)
    quick = dataclasses.replace(context, command_timeout_seconds=0.5)
    script = "sleep 3071 & sleep 3072; echo never"  # a background child too
    with pytest.raises(InvalidInput, match=r"did not finish within 0\.5 s"):
        await SHELL.plan(world.task("hostile", script=script), quick)
    # Killing bwrap takes its whole PID namespace with it.
    for _ in range(100):
        if not running("sleep\x003071") and not running("sleep\x003072"):
            break
        await asyncio.sleep(0.02)
    assert not running("sleep\x003071")
    assert not running("sleep\x003072")


async def test_a_preview_is_held_to_its_cpu_and_file_size_limits(world: Site) -> None:
    script = (
        "head -c 2000000 /dev/zero > /tmp/big; echo size=$(wc -c < /tmp/big); while :; do :; done"
    )
    context = world.plan_context(HOSTILE, sandbox_cpu_seconds=1, sandbox_file_size_mb=1)
    preview = (await SHELL.plan(world.task("hostile", script=script), context)).preview
    assert f"size={1024 * 1024}\n" in preview  # the write stopped at 1 MiB
    assert "preview exit code: -9\n" in preview or "preview exit code: 137\n" in preview
