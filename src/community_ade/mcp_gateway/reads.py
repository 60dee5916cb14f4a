"""The read tools: answered at once, confined to the workspace roots, changing nothing.

Every path goes through ``PlanContext.confine`` (symlinks resolved, the roots' ``.ade/``
state refused), like an executor's; git runs through the executors' own scrubbed runner
(no system or global configuration, no hooks, no fsmonitor). Output is bounded so a
model's context cannot be flooded.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from community_ade.errors import InvalidInput
from community_ade.execution.executors.base import STATE_DIR_NAME, PlanContext
from community_ade.execution.executors.git_runner import Git
from community_ade.locks import LockManager

MAX_LINES = 5000
MAX_ANSWER_CHARS = 200_000
MAX_FILE_BYTES = 4 * 1024 * 1024
SEARCH_MAX_FILES = 20_000
_SKIP_DIRS = frozenset({".git", STATE_DIR_NAME, "node_modules", ".venv", "__pycache__"})


def _int(arguments: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = arguments.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}")
    return value


def _text(arguments: Mapping[str, Any], name: str, max_length: int = 4096) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length or "\0" in value:
        raise InvalidInput(f"{name} must be a non-empty text of at most {max_length} characters")
    return value


def _bounded(text: str) -> str:
    if len(text) <= MAX_ANSWER_CHARS:
        return text
    return text[:MAX_ANSWER_CHARS] + f"\n… (cut at {MAX_ANSWER_CHARS} characters)"


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it is not a UTF-8 text file of a readable size."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def files_read(context: PlanContext, arguments: Mapping[str, Any]) -> str:
    real = context.confine(_text(arguments, "path"), task_type="files.read", field_path="path")
    first = _int(arguments, "first_line", 1, 1, 10**9)
    count = _int(arguments, "max_lines", 500, 1, MAX_LINES)
    text = await asyncio.to_thread(_read_text, real)
    if text is None:
        raise InvalidInput(f"{real} is not a UTF-8 text file of at most {MAX_FILE_BYTES} bytes")
    lines = text.split("\n")
    shown = lines[first - 1 : first - 1 + count]
    numbered = "\n".join(f"{first + i:>6}  {line}" for i, line in enumerate(shown))
    more = len(lines) - (first - 1 + len(shown))
    tail = f"\n… {more} more line(s): ask with first_line={first + len(shown)}" if more > 0 else ""
    return _bounded(numbered + tail)


async def git_log(context: PlanContext, arguments: Mapping[str, Any]) -> str:
    repo = context.confine(_text(arguments, "repo"), task_type="git.log", field_path="repo")
    count = _int(arguments, "max_count", 20, 1, 100)
    # Commits only, never a content diff: no diff driver or textconv of the repository's
    # could apply (the runner already neutralises its configured programs).
    args = [
        "log",
        f"--max-count={count}",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--format=%H %an <%ae> %aI %s",
    ]
    path = arguments.get("path")
    if path is not None:
        args += ["--", _text(arguments, "path")]
    with tempfile.TemporaryDirectory(prefix="ade-git-home-") as home:
        git = await Git.open(
            context.git_executable, repo, Path(home), context.command_timeout_seconds
        )
        result = await git.run(*args)
    if result.returncode != 0:
        raise InvalidInput(f"git log failed in {repo}: {result.stderr.strip()[:500]}")
    return _bounded(result.stdout.strip() or "no commits")


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):  # does not follow symlinked directories
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            yield Path(directory, name)


def _search(context: PlanContext, root: Path, query: str, limit: int) -> str:
    found: list[str] = []
    for scanned, path in enumerate(_walk(root)):
        if scanned >= SEARCH_MAX_FILES or len(found) >= limit:
            break
        if path.is_symlink() and context.root_of(path.resolve()) is None:
            continue  # a link leading out of the roots is not followed
        text = _read_text(path)
        if text is None or query not in text:
            continue
        for number, line in enumerate(text.split("\n"), start=1):
            if query in line:
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()[:300]}")
                if len(found) >= limit:
                    break
    return _bounded("\n".join(found) or "no match")


async def code_search(context: PlanContext, arguments: Mapping[str, Any]) -> str:
    query = _text(arguments, "query", 200)
    root = context.confine(_text(arguments, "root"), task_type="code.search", field_path="root")
    limit = _int(arguments, "max_results", 50, 1, 500)
    return await asyncio.to_thread(_search, context, root, query, limit)


# The read tools confined to the workspace roots, by tool name (locks.inspect needs the
# lock manager: the MCP server asks it directly, an agent run over the API).
WORKSPACE_READS = {"files.read": files_read, "git.log": git_log, "code.search": code_search}


async def locks_inspect(locks: LockManager, arguments: Mapping[str, Any]) -> str:
    resource = arguments.get("resource")
    if resource is None:
        state = await locks.inspect_domain(limit=100)
        return state.model_dump_json(indent=2)
    return (await locks.inspect_resource(_text(arguments, "resource", 200))).model_dump_json(
        indent=2
    )
