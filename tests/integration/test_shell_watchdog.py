"""A shell command dies with the worker that runs it (executors/watchdog.py).

Real processes: a small "worker" runs ``commands.run_command`` and is SIGKILLed mid-command; the
command's process group (its leader and a background child) must be gone shortly after.
The commands wait 0.2 s before recording their pids: the few event-loop steps between a
command's start and its registration with the watchdog are a documented blind spot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The worker stand-in: runs one command through the shell executor's runner.
_WORKER = """
import asyncio, sys
from pathlib import Path
from community_ade.execution.executors.commands import run_command, command_environment
script = sys.argv[1]
asyncio.run(run_command(["/bin/sh", "-c", script], cwd=Path.cwd(), timeout=300,
                        env=command_environment({})))
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (PID 1 in a container may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(path: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {timeout}s")


def _wait_until_ignoring(pid: int, sig: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        ignored = int(
            next(ln for ln in status.splitlines() if ln.startswith("SigIgn:")).split()[1], 16
        )
        if ignored & (1 << (sig - 1)):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not start ignoring signal {sig}")


def _start_worker(tmp_path: Path, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _WORKER, script], cwd=tmp_path)


def _gone_within(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_written(directory: Path, *names: str) -> None:
    """Clean up whatever processes the command managed to record."""
    files = (directory / name for name in names)
    _kill_all([int(f.read_text()) for f in files if f.exists() and f.read_text().strip()])


def test_a_running_command_group_is_killed_when_its_worker_is_sigkilled(tmp_path: Path) -> None:
    worker = _start_worker(
        tmp_path, "sleep 0.2; sleep 300 & echo $! > background; echo $$ > leader; wait"
    )
    try:
        leader = _wait_for(tmp_path / "leader")
        background = _wait_for(tmp_path / "background")
        assert _alive(leader)
        assert _alive(background)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert _gone_within([leader, background], 10), "the command outlived its worker"
    finally:
        worker.kill()
        worker.wait(10)
        _kill_written(tmp_path, "leader", "background")


def test_what_a_finished_command_left_in_the_background_is_not_killed(tmp_path: Path) -> None:
    # The watchdog tracks a group only while its command runs: a command that exited
    # normally and deliberately left a process behind keeps it after the worker dies.
    worker = _start_worker(tmp_path, "sleep 300 > /dev/null 2>&1 & echo $! > background")
    background = _wait_for(tmp_path / "background")
    try:
        assert worker.wait(20) == 0
        time.sleep(0.5)  # the watchdog has read end of file and acted by now
        assert _alive(background)
    finally:
        _kill_all([background])


def test_a_killed_watchdog_is_replaced_and_still_protects(tmp_path: Path) -> None:
    # A worker that has run commands before; someone kills its watchdog; the next
    # command still dies with the worker.
    script = (
        "import asyncio, os, signal, sys\n"
        "from pathlib import Path\n"
        "from community_ade.execution.executors.commands import run_command, command_environment\n"
        "from community_ade.execution.executors.watchdog import WATCHDOG\n"
        "async def main():\n"
        "    env = command_environment({})\n"
        "    await run_command(['/bin/true'], cwd=Path.cwd(), timeout=30, env=env)\n"
        "    os.kill(WATCHDOG.pid, signal.SIGKILL)\n"
        "    os.waitpid(WATCHDOG.pid, 0)\n"
        "    await run_command(['/bin/sh', '-c', 'sleep 0.2; echo $$ > leader; exec sleep 300'],\n"
        "                      cwd=Path.cwd(), timeout=300, env=env)\n"
        "asyncio.run(main())\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        leader = _wait_for(tmp_path / "leader")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert _gone_within([leader], 10), "the command outlived its worker"
    finally:
        worker.kill()
        worker.wait(10)
        _kill_written(tmp_path, "leader")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_watchdog_ignores_interrupt_and_terminate(tmp_path: Path, sig: int) -> None:
    # A service manager signals the worker's whole group; the watchdog must stay until
    # the worker has drained, and leave on end of file.
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "community_ade.execution.executors.watchdog"],
        stdin=subprocess.PIPE,
    )
    assert watchdog.stdin is not None
    _wait_until_ignoring(watchdog.pid, sig)  # started (a loaded machine takes a while)
    watchdog.send_signal(sig)
    time.sleep(0.2)
    assert watchdog.poll() is None
    watchdog.stdin.close()
    assert watchdog.wait(10) == 0


# A stand-in worker whose command runs under a lease: renewed by a "heartbeat" every
# 0.1 s for ``renew_for`` seconds (0.6 s of validity each time), then no more.
_LEASED_WORKER = """
import asyncio, sys, time
from pathlib import Path
from community_ade.execution.executors.shell import run_command, command_environment
from community_ade.execution.executors.watchdog import bound_to_lease
script, renew_for = sys.argv[1], float(sys.argv[2])
valid_until = time.monotonic() + 0.6
async def heartbeat():
    global valid_until
    end = time.monotonic() + renew_for
    while time.monotonic() < end:
        valid_until = time.monotonic() + 0.6
        await asyncio.sleep(0.1)
async def main():
    beating = asyncio.create_task(heartbeat())
    with bound_to_lease(lambda: valid_until):
        run = await run_command(["/bin/sh", "-c", script], cwd=Path.cwd(), timeout=60,
                                env=command_environment({}))
    print("exit", run.exit_code, flush=True)
asyncio.run(main())
"""


def test_a_command_under_a_renewed_lease_runs_to_its_end(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _LEASED_WORKER, "sleep 2; echo done > finished", "30"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
    )
    out, _ = worker.communicate(timeout=30)
    assert out.decode().strip() == "exit 0"
    assert (tmp_path / "finished").read_text() == "done\n"


def test_a_command_whose_lease_stops_being_renewed_is_killed(tmp_path: Path) -> None:
    # The worker lives on but renews for 1 s only, as a paused one would: the watchdog
    # kills the command once the last validity (0.6 s) has passed.
    worker = subprocess.Popen(
        [sys.executable, "-c", _LEASED_WORKER, "echo $$ > leader; exec sleep 300", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        leader = _wait_for(tmp_path / "leader")
        out, err = worker.communicate(timeout=30)
        assert out.decode().strip() == "exit -9"
        assert not _alive(leader)
        assert b"its lease ran out" in err
    finally:
        worker.kill()
        worker.wait(10)
        _kill_written(tmp_path, "leader")
