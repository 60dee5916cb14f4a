"""``ade`` imports a command's module only when that command runs, and says for each
command in ``ade --help`` what the command itself says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from community_ade.cli import COMMANDS, audit
from community_ade.cli.lazy import Commands, load

# Prints the command modules imported by ``ade ARGS`` (argv), without running anything else.
PROBE = """
import json, sys
from community_ade.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("community_ade.cli."))))
"""


def imported_by(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


LISTED = [(COMMANDS, name) for name in COMMANDS] + [(audit.COMMANDS, n) for n in audit.COMMANDS]


@pytest.mark.parametrize(("commands", "name"), LISTED)
def test_the_listed_help_is_the_commands_own(commands: Commands, name: str) -> None:
    command = load(name, commands[name])
    assert command.name == name
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert commands[name][2] == first_paragraph


def test_help_imports_no_command() -> None:
    assert imported_by("--help") == ["community_ade.cli.lazy"]


def test_a_command_imports_only_its_own_module() -> None:
    loaded = imported_by("audit", "verify-receipt", "--help")
    assert "community_ade.cli.audit" in loaded
    assert not {
        "community_ade.cli.serve",
        "community_ade.cli.mcp",
        "community_ade.cli.agents",
    } & set(loaded)
    assert "community_ade.cli.serve" in imported_by("serve", "--help")


# What ``ade hook HARNESS`` imports on its way to ``gate.run``, beyond the interpreter's
# start-up: the standard library and the hook's own modules, nothing else (no pydantic).
HOOK_PROBE = """
import json, sys
before = set(sys.modules)
import community_ade.cli, community_ade.hooks.gate
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_hook_imports_only_the_standard_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOOK_PROBE], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    ours = {m for m in loaded if m.split(".")[0] == "community_ade"}
    assert ours == {
        "community_ade",
        "community_ade.cli",
        "community_ade.defaults",
        "community_ade.hooks",
        "community_ade.hooks.gate",
        "community_ade.hooks.harness",
    }
    assert {m.split(".")[0] for m in loaded} - {"community_ade"} <= sys.stdlib_module_names
