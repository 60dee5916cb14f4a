"""The shell executor with real processes: profiles resolved at plan and apply, approved
commands run as the shell user (never root), the data directory out of that user's reach,
and the apply mechanics (exit codes, bounded output, timeouts and cancellation killing the
process group, rollback, fencing). The last tests run the whole pipeline: a profile
stored by an admin, a task submitted through the TaskService, the worker applying it.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Backend, forget_domain
from execution_util import AUTO, make_user, open_runtime, reload, set_policy, submit
from shellutil import IS_ROOT, NOBODY, SECRET, Site, require_bwrap, require_root, site
from sqlalchemy import select

from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.approvals.states import TaskState
from community_ade.errors import FenceRejected, InvalidInput
from community_ade.execution.executors import ApplyContext, Plan, Snapshot
from community_ade.execution.executors.base import ApplyFailed
from community_ade.execution.executors.commands import run_command
from community_ade.execution.executors.shell import ShellExecutor
from community_ade.execution.executors.shell_profile import ShellProfile
from community_ade.execution.shell_profiles import ShellProfileService
from community_ade.execution.worker import Worker
from community_ade.infra.data_dir import make_private
from community_ade.runtime import Runtime
from community_ade.storage.models import Preview

SHELL = ShellExecutor()
SCRIPT = {
    "script": {
        "command": ["/bin/sh", "-c", "{script}"],
        "rollback": ["/bin/sh", "-c", "rm -f out.txt"],
        "parameters": {"script": {"type": "string", "max_length": 4096}},
        "env": {"DEPLOY_ENV": "staging"},
    }
}


@pytest.fixture
def world() -> Iterator[Site]:
    with site() as s:
        yield s


def free_form(world: Site, script: str, **extra: Any) -> dict[str, Any]:
    return {"command": ["/bin/sh", "-c", script], "cwd": str(world.repo), **extra}


async def applied(
    payload: dict[str, Any], context: ApplyContext
) -> tuple[Plan, Snapshot, dict[str, str]]:
    """plan, snapshot, apply, the way the worker drives an executor."""
    plan = await SHELL.plan(payload, context.plan_context)
    snapshot = await SHELL.snapshot(payload, plan, context)
    result = await SHELL.apply(payload, plan, snapshot, context)
    return plan, snapshot, dict(result.details)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def gone(pid: int) -> bool:
    for _ in range(100):
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


def written_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


async def pid_in(path: Path) -> int:
    for _ in range(250):
        if (pid := written_pid(path)) is not None:
            return pid
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was not written")


# -- who runs it ----------------------------------------------------------------------------


async def test_apply_runs_as_the_shell_user_with_the_task_fence_and_profile_env(
    world: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_root()
    monkeypatch.setenv("ADE_DATABASE_URL", "postgresql://secret@db/ade")
    script = 'id -u; id -g; env > env.txt; echo "done $ADE_TASK_ID"'
    context = world.apply_context(SCRIPT, fence=77)
    plan, _, details = await applied(world.task("script", script=script), context)
    assert f"runs as: nobody (uid {NOBODY.pw_uid})\n" in plan.preview
    assert "profile environment: DEPLOY_ENV=staging\n" in plan.preview
    assert details == {
        "exit_code": "0",
        "output": f"{NOBODY.pw_uid}\n{NOBODY.pw_gid}\ndone task-1\n",
    }
    env = (world.repo / "env.txt").read_text().splitlines()
    assert {"ADE_TASK_ID=task-1", "ADE_FENCE=77", "DEPLOY_ENV=staging"} <= set(env)
    assert f"HOME={NOBODY.pw_dir}" in env
    assert not any("secret" in line for line in env)
    assert (world.repo / "env.txt").stat().st_uid == NOBODY.pw_uid


async def test_ade_shell_user_picks_the_user_and_root_is_refused(world: Site) -> None:
    require_root()
    script = {"script": "id -un"}
    daemon = world.apply_context(SCRIPT, shell_user="daemon")
    payload = world.task("script", **script)
    # daemon cannot write the repository (nobody's): what it may do is its permissions'.
    plan = await SHELL.plan(payload, daemon.plan_context)
    assert "runs as: daemon (uid " in plan.preview
    for user in ("root", "0"):
        with pytest.raises(InvalidInput, match="never run as root"):
            await SHELL.plan(payload, world.plan_context(SCRIPT, shell_user=user))
    with pytest.raises(InvalidInput, match="no such user 'no-such-user-ade'"):
        await SHELL.plan(payload, world.plan_context(SCRIPT, shell_user="no-such-user-ade"))


async def test_the_shell_user_cannot_read_the_private_data_directory(world: Site) -> None:
    require_root()
    make_private(world.data)  # what Runtime.open does at startup
    script = f"cat {world.data}/secret.key; ls {world.data}; echo end"
    _, _, details = await applied(world.task("script", script=script), world.apply_context(SCRIPT))
    assert SECRET not in details["output"]
    assert details["output"].count("Permission denied") == 2


def test_the_data_directory_is_made_private(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "data"
    make_private(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    make_private(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700


async def test_a_working_directory_overlapping_the_data_directory_is_refused(
    world: Site,
) -> None:
    inside = world.data / "workspaces"
    inside.mkdir()
    context = world.plan_context(SCRIPT, workspace_roots=[world.roots, world.data, world.top])
    for cwd in (inside, world.top):
        with pytest.raises(InvalidInput, match="overlaps the data directory"):
            await SHELL.plan(world.task("script", cwd=cwd, script="true"), context)


# -- what it may run ------------------------------------------------------------------------


async def test_free_form_commands_are_off_unless_an_admin_turns_them_on(world: Site) -> None:
    payload = free_form(world, "echo hi")
    with pytest.raises(InvalidInput, match="free-form commands are turned off"):
        await SHELL.plan(payload, world.plan_context())
    plan = await SHELL.plan(payload, world.plan_context(shell_free_form=True))
    assert plan.preview.startswith("profile: none (a free-form command)\n")
    assert "preview command: none\n" in plan.preview


async def test_plan_refuses_what_the_profile_does_not_allow(world: Site) -> None:
    (world.repo / "escape").symlink_to(world.outside)
    profiles = {
        "show": {
            "command": ["cat", "{file}"],
            "parameters": {"file": {"type": "path"}},
            "cwd_roots": [str(world.repo)],
            "max_timeout_seconds": 10,
        }
    }
    context = world.plan_context(profiles)
    with pytest.raises(InvalidInput, match="there is no shell profile 'nope'"):
        await SHELL.plan(world.task("nope"), context)
    with pytest.raises(InvalidInput, match="leads outside the working directory"):
        await SHELL.plan(world.task("show", file="escape/x"), context)
    with pytest.raises(InvalidInput, match=r"params\.file: is required"):
        await SHELL.plan(world.task("show"), context)
    with pytest.raises(InvalidInput, match="runs only under"):
        await SHELL.plan(world.task("show", cwd=world.roots, file="x"), context)
    with pytest.raises(InvalidInput, match="profile allows at most 10 s"):
        await SHELL.plan(world.task("show", file="app.conf") | {"timeout_seconds": 11}, context)
    with pytest.raises(InvalidInput, match="outside the workspace roots"):
        await SHELL.plan(world.task("show", cwd=world.outside, file="x"), context)
    plan = await SHELL.plan(world.task("show", file="app.conf"), context)
    assert "command: cat app.conf\n" in plan.preview
    assert "timeout: 10 s\n" in plan.preview


# -- the mechanics of an apply --------------------------------------------------------------


async def test_a_failing_command_records_exit_code_and_output(world: Site) -> None:
    payload = free_form(world, "echo to stdout; echo to stderr >&2; exit 3")
    context = world.apply_context(shell_free_form=True)
    plan = await SHELL.plan(payload, context.plan_context)
    snapshot = await SHELL.snapshot(payload, plan, context)
    with pytest.raises(ApplyFailed, match="exited with 3") as caught:
        await SHELL.apply(payload, plan, snapshot, context)
    assert not caught.value.transient
    assert caught.value.details == {"exit_code": 3, "output": "to stdout\nto stderr\n"}


async def test_the_output_is_bounded(world: Site) -> None:
    payload = free_form(world, "head -c 1000000 /dev/zero | tr '\\0' a; echo; echo END")
    _, _, details = await applied(payload, world.apply_context(shell_free_form=True))
    output = details["output"]
    assert len(output) < 70_000
    assert output.startswith("aaa")
    assert output.endswith("END\n")
    assert "bytes omitted" in output


async def test_the_timeout_kills_the_whole_process_group(world: Site) -> None:
    pid_file = world.outside / "pid"
    payload = free_form(
        world, f"sleep 30 & echo $! > {pid_file}; echo started; wait", timeout_seconds=0.5
    )
    context = world.apply_context(shell_free_form=True)
    plan = await SHELL.plan(payload, context.plan_context)
    snapshot = await SHELL.snapshot(payload, plan, context)
    with pytest.raises(ApplyFailed, match=r"did not finish within 0\.5 s") as caught:
        await SHELL.apply(payload, plan, snapshot, context)
    assert caught.value.details["output"] == "started\n"
    assert await gone(int(pid_file.read_text()))  # the whole process group, not just sh


async def test_cancelling_an_apply_kills_the_process(world: Site) -> None:
    pid_file = world.outside / "pid"
    payload = free_form(world, f"sleep 30 & echo $! > {pid_file}; wait", timeout_seconds=60)
    context = world.apply_context(shell_free_form=True)
    plan = await SHELL.plan(payload, context.plan_context)
    snapshot = await SHELL.snapshot(payload, plan, context)
    apply = asyncio.create_task(SHELL.apply(payload, plan, snapshot, context))
    pid = await pid_in(pid_file)
    assert alive(pid)
    apply.cancel()
    with pytest.raises(asyncio.CancelledError):
        await apply
    assert await gone(pid)


async def test_a_command_cancelled_while_it_starts_leaves_nothing_running(tmp_path: Path) -> None:
    """asyncio's own clean-up of a cancelled start kills only the leader: whatever the
    command already started in the background would live on."""
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! >> {pids}; wait"
    for steps in range(40):
        run = asyncio.create_task(
            run_command(["/bin/sh", "-c", script], cwd=tmp_path, timeout=60, env={})
        )
        for _ in range(steps):
            await asyncio.sleep(0)
        await asyncio.sleep(0.001 * (steps % 5))
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(10):  # not for as long as the background sleep
                await run
    started = [int(line) for line in pids.read_text().split()] if pids.exists() else []
    assert started  # some were cancelled only after their command had begun
    survivors = [pid for pid in started if not await gone(pid)]
    assert survivors == []


async def test_rollback_runs_the_profiles_rollback_command(world: Site) -> None:
    payload = world.task("script", script="echo x > out.txt; exit 1")
    context = world.apply_context(SCRIPT)
    plan = await SHELL.plan(payload, context.plan_context)
    assert "rollback: /bin/sh -c 'rm -f out.txt'\n" in plan.preview
    snapshot = await SHELL.snapshot(payload, plan, context)
    with pytest.raises(ApplyFailed):
        await SHELL.apply(payload, plan, snapshot, context)
    assert (world.repo / "out.txt").exists()
    assert await SHELL.rollback(payload, snapshot, context) == "rolled_back"
    assert not (world.repo / "out.txt").exists()
    changed = {"script": SCRIPT["script"] | {"rollback": ["/bin/sh", "-c", "rm -rf ."]}}
    assert await SHELL.rollback(payload, snapshot, world.apply_context(changed)) == (
        "rollback_failed"  # not the rollback that was approved: not run
    )
    assert await SHELL.rollback(payload, snapshot, world.apply_context({})) == "rollback_failed"
    without = world.apply_context(shell_free_form=True)
    plain = free_form(world, "true")
    plain_snapshot = await SHELL.snapshot(
        plain, await SHELL.plan(plain, without.plan_context), without
    )
    assert await SHELL.rollback(plain, plain_snapshot, without) == "nothing_to_roll_back"


async def test_a_profile_saved_after_the_last_plan_is_not_applied(world: Site) -> None:
    payload = world.task("script", script="echo x > out.txt")
    context = world.apply_context(SCRIPT)
    plan = await SHELL.plan(payload, context.plan_context)
    snapshot = await SHELL.snapshot(payload, plan, context)
    edited = SCRIPT["script"] | {"env": {"DEPLOY_ENV": "production"}}
    later = world.apply_context({"script": edited})
    with pytest.raises(ApplyFailed, match="no longer matches its approved preview"):
        await SHELL.snapshot(payload, plan, later)
    with pytest.raises(ApplyFailed, match="no longer matches its approved preview"):
        await SHELL.apply(payload, plan, snapshot, later)
    assert not (world.repo / "out.txt").exists()


async def test_an_older_fence_is_refused_without_running(world: Site) -> None:
    await applied(free_form(world, "true"), world.apply_context(shell_free_form=True, fence=50))
    payload = free_form(world, "echo x > out.txt")
    context = world.apply_context(shell_free_form=True, fence=49)
    plan = await SHELL.plan(payload, context.plan_context)
    snapshot = await SHELL.snapshot(payload, plan, context)
    with pytest.raises(FenceRejected):
        await SHELL.apply(payload, plan, snapshot, context)
    assert not (world.repo / "out.txt").exists()


async def test_a_missing_program_fails_the_apply(world: Site) -> None:
    payload = {"command": ["no-such-program-ade"], "cwd": str(world.repo)}
    context = world.apply_context(shell_free_form=True)
    with pytest.raises(ApplyFailed, match="cannot run 'no-such-program-ade'"):
        await applied(payload, context)


# -- the pipeline: a stored profile, the TaskService, the worker -----------------------------

pipeline = pytest.mark.parametrize("backend", ["server"], indirect=True)


@pytest.fixture
async def runtime(database_url: str, backend: Backend, domain: str) -> AsyncIterator[Runtime]:
    require_bwrap()
    with site() as s:
        settings = s.settings(
            database_url=database_url,
            redis_url=backend.url,
            queue_name=domain,
            lock_domain=domain,
            worker_backoff_base_seconds=0.05,
            worker_reconcile_seconds=0.5,
        )
        try:
            async with open_runtime(settings) as rt:
                yield rt
        finally:
            await forget_domain(backend.url, domain)


async def save_profile(runtime: Runtime, name: str, document: dict[str, Any]) -> None:
    admin = await make_user(runtime, "admin")
    async with runtime.sessions.begin() as session:
        await ShellProfileService(session).put(admin, name, ShellProfile.model_validate(document))


def repo_of(runtime: Runtime) -> Path:
    return runtime.settings.workspace_roots[0] / "repo"


async def burst(runtime: Runtime) -> Worker:
    await runtime.queue.drain_background()
    worker = Worker(runtime, concurrency=1, burst=True)
    await asyncio.wait_for(worker.run(), 90)
    return worker


@pipeline
async def test_a_stored_profile_previews_at_submit_and_applies_as_the_shell_user(
    runtime: Runtime,
) -> None:
    assert stat.S_IMODE(runtime.settings.data_dir.stat().st_mode) == 0o700
    await set_policy(runtime, AUTO)
    repo = repo_of(runtime)
    (repo / "app.conf").write_text("debug = true\n")
    await save_profile(
        runtime,
        "commit",
        {
            "command": [
                "/bin/sh",
                "-c",
                'id -u; git commit -qam "$1"; git log -1 --format=%s',
                "-",
                "{message}",
            ],
            "preview": ["git", "diff", "--stat"],
            "parameters": {"message": {"type": "string"}},
            "env": {
                "GIT_AUTHOR_NAME": "ade",
                "GIT_AUTHOR_EMAIL": "ade@example.com",
                "GIT_COMMITTER_NAME": "ade",
                "GIT_COMMITTER_EMAIL": "ade@example.com",
            },
        },
    )
    alice = await make_user(runtime)
    payload = {"profile": "commit", "params": {"message": "debug on"}, "cwd": str(repo)}
    task = await submit(runtime, alice, "shell", payload)
    assert task.state == TaskState.APPROVED
    async with runtime.sessions() as session:
        preview = await session.scalar(select(Preview).where(Preview.task_id == task.id))
    assert preview is not None
    assert " app.conf | 2 +-\n" in preview.content
    await burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED, done.last_error
    assert done.result is not None
    uid = NOBODY.pw_uid if IS_ROOT else os.geteuid()
    assert done.result["details"]["output"] == f"{uid}\ndebug on\n"


@pipeline
async def test_a_failing_command_is_rolled_back_through_the_worker(runtime: Runtime) -> None:
    await set_policy(runtime, AUTO)
    await save_profile(runtime, "flaky", SCRIPT["script"])
    alice = await make_user(runtime)
    payload = {
        "profile": "flaky",
        "params": {"script": "echo started > out.txt; echo boom; exit 3"},
        "cwd": str(repo_of(runtime)),
    }
    task = await submit(runtime, alice, "shell", payload)
    await burst(runtime)
    failed = await reload(runtime, task.id)
    assert failed.state == TaskState.FAILED
    assert failed.rollback_outcome == "rolled_back"
    assert failed.result is not None
    assert failed.result["details"]["exit_code"] == 3
    assert "boom" in failed.result["details"]["output"]
    assert not (repo_of(runtime) / "out.txt").exists()


@pipeline
async def test_a_profile_changed_after_approval_sends_the_task_back_to_review(
    runtime: Runtime,
) -> None:
    await save_profile(runtime, "hello", {"command": ["echo", "hello"]})
    alice = await make_user(runtime)
    bob = await make_user(runtime, "reviewer")
    payload = {"profile": "hello", "cwd": str(repo_of(runtime))}
    task = await submit(runtime, alice, "shell", payload)
    assert task.state == TaskState.SUBMITTED
    async with runtime.sessions.begin() as session:
        outcome = await ReviewService(session).decide(
            bob,
            task.id,
            ReviewAction.APPROVE,
            str(task.preview_digest),
            surface=DecisionSurface.API,
        )
        assert outcome.task.state == TaskState.APPROVED
    await save_profile(runtime, "hello", {"command": ["echo", "something", "else"]})
    worker = await burst(runtime)
    back = await reload(runtime, task.id)
    assert back.state == TaskState.SUBMITTED
    assert worker.stats.moved == 1
    assert back.preview_digest != task.preview_digest
