"""git, run in a repository whose content a submitter may control.

git's own advice (gitsecurityboundary(7)) is that a repository's configuration and
hooks are not covered by its security guarantees: ``.git/config`` can name programs
that git runs (``core.fsmonitor`` on every index read, filter drivers on checkout,
hooks on ref updates, ``core.sshCommand`` or ``remote.*.uploadpack`` when a partial
clone fetches a missing object lazily). A ``git.patch`` preview runs at submit, before
anyone approved anything, so every git process here runs with that configuration
neutralised, plan and apply alike, through this one runner:

- no system or global configuration, no system attributes, no prompts, no pager, no
  replace objects, no optional locks, discovery confined to the named directory
  (``GIT_CEILING_DIRECTORIES``);
- ``SAFE_CONFIG``, passed as command-line configuration (``GIT_CONFIG_COUNT``), which
  outranks the repository's own: no fsmonitor, no hooks, no transport at all (so no
  lazy fetch), no submodule recursion, no signing or signature checks;
- every filter driver the repository's configuration declares (``filter.<name>.*``,
  includes followed) blanked the same way, so checking out a path whose
  ``.gitattributes`` names it stores the blob as it is instead of running a program.
  The drivers are read when the runner is opened for a directory.

The commands used (``rev-parse``, ``read-tree``, ``apply --cached``, ``write-tree``,
``commit-tree``, ``update-ref``, ``worktree list``, ``cat-file``, ``config``) run no
diff, merge or log machinery, where diff drivers, textconv and merge drivers would
apply. A clone (the advice's "sanitized copy") is not used: apply must move the
repository's own branch, and copying a large repository for every preview is costly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from community_ade.errors import AdeError, ServiceUnavailable

SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", os.devnull),
    ("core.pager", "cat"),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("commit.gpgSign", "false"),
    ("log.showSignature", "false"),
)
"""Configuration that outranks the repository's: nothing it names may run."""

_FILTER_COMMANDS = ("clean", "smudge", "process")


class GitFailed(AdeError):
    """git failed where it should not have (not the task's fault): an internal error."""

    code = "git_failed"


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


def neutralised_filters(keys: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Overrides blanking every filter driver named in ``keys`` (configuration keys as
    ``git config --name-only`` lists them: ``filter.<driver>.<variable>``, the driver
    name case-sensitive and possibly dotted). An empty command is no command, and a
    driver marked ``required`` would otherwise refuse to check the path out."""
    drivers = sorted({k[len("filter.") : k.rindex(".")] for k in keys if k.count(".") >= 2})
    return tuple(
        (f"filter.{driver}.{variable}", value)
        for driver in drivers
        for variable, value in [*((c, "") for c in _FILTER_COMMANDS), ("required", "false")]
    )


def config_environment(overrides: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``overrides`` as git's ``GIT_CONFIG_COUNT`` variables: keys and values are passed
    apart, so no driver name (``=`` and all) can be misread as in ``-c key=value``."""
    env: dict[str, str] = {}
    count = 0
    for count, (key, value) in enumerate(overrides, start=1):
        env[f"GIT_CONFIG_KEY_{count - 1}"] = key
        env[f"GIT_CONFIG_VALUE_{count - 1}"] = value
    env["GIT_CONFIG_COUNT"] = str(count)
    return env


@dataclass(frozen=True)
class Git:
    """git in one directory, with a scrubbed environment, the repository's programs
    neutralised and a timeout. Build it with ``open``."""

    executable: str
    cwd: Path
    home: Path
    timeout: float
    overrides: tuple[tuple[str, str], ...] = SAFE_CONFIG

    @classmethod
    async def open(cls, executable: str, cwd: Path, home: Path, timeout: float) -> Git:
        """git in ``cwd``, with the filter drivers its configuration declares blanked."""
        found = shutil.which(executable, path=os.environ.get("PATH", os.defpath))
        if found is None:
            raise ServiceUnavailable(f"git executable {executable!r} not found")
        return await cls(found, cwd, home, timeout).opened_at(cwd)

    async def opened_at(self, cwd: Path) -> Git:
        """The same git in ``cwd`` (another working tree of the repository, which may have
        its own configuration), with that directory's filter drivers blanked."""
        plain = Git(self.executable, cwd, self.home, self.timeout)
        listed = await plain.run("config", "--null", "--name-only", "--get-regexp", r"^filter\.")
        if listed.returncode not in (0, 1):  # 1: no such key
            raise GitFailed(f"git config failed: {listed.stderr}", stderr=listed.stderr)
        keys = [k for k in listed.stdout.split("\0") if k]
        return Git(
            self.executable, cwd, self.home, self.timeout, SAFE_CONFIG + neutralised_filters(keys)
        )

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "LC_ALL": "C",
            "LANG": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_PAGER": "cat",
            "GIT_NO_LAZY_FETCH": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_CEILING_DIRECTORIES": str(self.cwd.parent),
            **config_environment(self.overrides),
        }
        env.update(extra)
        return env

    async def run(
        self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> GitResult:
        try:
            process = await asyncio.create_subprocess_exec(
                self.executable,
                *args,
                cwd=self.cwd,
                env=self.environment(env or {}),
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ServiceUnavailable(f"cannot run git: {exc}") from exc
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate(stdin)
        except TimeoutError:
            raise ServiceUnavailable(
                f"git {args[0]} did not finish within {self.timeout:g} s"
            ) from None
        finally:
            if process.returncode is None:  # timed out or cancelled: do not leave it running
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        assert process.returncode is not None
        return GitResult(
            process.returncode,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace").strip(),
        )

    async def must(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """stdout of a command that only fails if something is wrong with git itself."""
        result = await self.run(*args, env=env)
        if result.returncode != 0:
            raise GitFailed(f"git {args[0]} failed: {result.stderr}", stderr=result.stderr)
        return result.stdout
