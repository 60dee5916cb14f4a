"""``files.write``: create, replace or delete text files under a workspace root.

Payload::

    {"root": "/abs/workspace", "changes": [
        {"path": "rel/path", "action": "write", "content": "..."},
        {"path": "old.txt", "action": "delete"}]}

The preview is a unified diff of every change, files sorted by path, ``/dev/null`` on the
missing side of a create or delete. Text only: the reviewer must be able to read what
they approve, so a non-UTF-8 file is refused. Paths are confined twice: ``validate``
refuses any path that could leave the root lexically (absolute, ``..``, not normalised),
``plan`` refuses one whose real path leaves it through a symlink.

Line endings: lines are split on ``"\\n"`` only, so the diff's line terminators are
``"\\n"`` and a ``"\\r"`` before it stays visible as content. The preview is therefore
faithful: two payloads that write different bytes never share a digest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import hashlib
import itertools
import json
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from community_ade.errors import InvalidInput
from community_ade.execution.executors import fencing
from community_ade.execution.executors.base import (
    STATE_DIR_NAME,
    AbsolutePath,
    ApplyContext,
    ApplyFailed,
    ApplyingExecutor,
    ApplyResult,
    FieldError,
    Payload,
    Plan,
    PlanContext,
    RollbackOutcome,
    Snapshot,
    ValidationReport,
    invalid,
    model_errors,
    parsed_for_apply,
)

TASK_TYPE = "files.write"
MAX_CHANGES = 1000
MAX_TOTAL_BYTES = 10 * 1024 * 1024
"""Bound on the new content of a task (validate) and on the old content it shows (plan):
a diff beyond this is not something a human reviews."""
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
ABSENT = "absent"
_NO_NEWLINE = "\\ No newline at end of file\n"
# Control, format (bidi overrides: "Trojan Source"), separator and surrogate characters
# could make a path in the diff header read as something else to a reviewer.
_DECEPTIVE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_PAYLOAD_KEYS = frozenset({"root", "changes"})
_CHANGE_KEYS = frozenset({"path", "action", "content"})

log = logging.getLogger(__name__)


class Action(StrEnum):
    WRITE = "write"
    DELETE = "delete"


@dataclass(frozen=True)
class Change:
    path: str
    action: Action
    content: str | None  # None exactly when action is DELETE


@dataclass(frozen=True)
class FilesWrite:
    """A validated payload."""

    root: str
    changes: tuple[Change, ...]


# The lexical rules of ``path_problem`` a JSON Schema can state (ECMA-262 and Python
# ``re`` alike): relative, ``/``-separated, no empty, ``.``, ``..`` or state-directory
# segment, no trailing slash.
PATH_PATTERN = (
    r"^(?!/)(?![\s\S]*\\)(?![\s\S]*//)(?![\s\S]*/$)(?!(?:[\s\S]*/)?\.{1,2}(?:/|$))"
    rf"(?!(?:[\s\S]*/)?{re.escape(STATE_DIR_NAME)}(?:/|$))"
)
ChangePath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        pattern=PATH_PATTERN,
        description="A file below root: relative, normalised, / as the separator, no "
        f"control, format or separator characters, each segment at most {MAX_NAME_BYTES} "
        f"bytes, never inside {STATE_DIR_NAME}/. Symlinks are followed at plan and must stay "
        "under root; the file itself must be a regular UTF-8 text file or absent.",
    ),
]


class FileWrite(BaseModel):
    """Create or replace a text file."""

    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    path: ChangePath
    action: Literal["write"]
    content: str = Field(description="The file's new content (UTF-8 text).")


class FileDelete(BaseModel):
    """Delete an existing file."""

    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    path: ChangePath
    action: Literal["delete"]
    content: None = Field(default=None, description="Absent (or null): a delete has none.")


class FilesWritePayload(BaseModel):
    """Text files to create, replace or delete under one directory."""

    # The payload's JSON Schema. ``parse`` checks first, and what a schema cannot say
    # (characters, segment bytes, duplicate or nested paths, total size); this model last.
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    root: AbsolutePath = Field(
        description="The absolute path of the directory the changes are under; it must lie "
        "inside a workspace root (ADE_WORKSPACE_ROOTS).",
    )
    changes: list[Annotated[FileWrite | FileDelete, Field(discriminator="action")]] = Field(
        min_length=1,
        max_length=MAX_CHANGES,
        description=f"The changes, each path at most once and none inside another; their new "
        f"content at most {MAX_TOTAL_BYTES} bytes in all.",
    )


def path_problem(path: object) -> str | None:
    """Why ``path`` is not an acceptable change path, or None.

    Accepted paths are relative, normalised (no empty, ``.`` or ``..`` segment, no
    trailing slash), use ``/`` only, and contain no character that could disguise them;
    joined to any root they name a file strictly below it.
    """
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if len(path) > MAX_PATH_CHARS:
        return f"must be at most {MAX_PATH_CHARS} characters"
    if any(unicodedata.category(c) in _DECEPTIVE for c in path):
        return "must not contain control, format or separator characters (NUL included)"
    if "\\" in path:
        return "must use / as the separator, not \\"
    if path.startswith("/"):
        return "must be relative to root, not absolute"
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return "must be normalised: no empty, '.' or '..' segments and no trailing slash"
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        return f"each segment must be at most {MAX_NAME_BYTES} bytes"
    if STATE_DIR_NAME in parts:
        return f"must not name a {STATE_DIR_NAME} directory: Community ADE keeps its state there"
    return None


def root_problem(root: object) -> str | None:
    """Why ``root`` is not an acceptable workspace root path, or None."""
    if not isinstance(root, str) or not root:
        return "must be a non-empty string"
    if any(unicodedata.category(c) in _DECEPTIVE for c in root):
        return "must not contain control, format or separator characters (NUL included)"
    if not os.path.isabs(root):
        return "must be an absolute path"
    return None


def parse(payload: object) -> tuple[FilesWrite | None, tuple[FieldError, ...]]:
    """The validated payload, or None and every problem found. Pure: no filesystem."""
    if not isinstance(payload, Mapping):
        return None, (FieldError("", "payload must be an object"),)
    errors = [FieldError(str(key), "unknown field") for key in payload if key not in _PAYLOAD_KEYS]
    root = payload.get("root")
    if (problem := root_problem(root)) is not None:
        errors.append(FieldError("root", problem))
    changes = _parse_changes(payload.get("changes"), errors)
    errors = errors or model_errors(FilesWritePayload, payload)
    if errors or changes is None or not isinstance(root, str):
        return None, tuple(errors)
    return FilesWrite(root, changes), ()


def _parse_changes(raw: object, errors: list[FieldError]) -> tuple[Change, ...] | None:
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        errors.append(FieldError("changes", "must be a list of changes"))
        return None
    if not raw:
        errors.append(FieldError("changes", "must name at least one change"))
        return None
    if len(raw) > MAX_CHANGES:
        errors.append(FieldError("changes", f"must have at most {MAX_CHANGES} changes"))
        return None
    parsed = [_parse_change(f"changes[{i}]", item, errors) for i, item in enumerate(raw)]
    total = sum(len(c.content.encode("utf-8")) for c in parsed if c and c.content)
    if total > MAX_TOTAL_BYTES:
        errors.append(
            FieldError("changes", f"content totals {total} bytes, more than {MAX_TOTAL_BYTES}")
        )
    _check_overlaps(parsed, errors)
    if any(c is None for c in parsed):
        return None
    return tuple(c for c in parsed if c is not None)


def _parse_change(where: str, item: object, errors: list[FieldError]) -> Change | None:
    if not isinstance(item, Mapping):
        errors.append(FieldError(where, "must be an object"))
        return None
    before = len(errors)
    errors.extend(
        FieldError(f"{where}.{key}", "unknown field") for key in item if key not in _CHANGE_KEYS
    )
    path = item.get("path")
    if (problem := path_problem(path)) is not None:
        errors.append(FieldError(f"{where}.path", problem))
    action = _parse_action(f"{where}.action", item.get("action"), errors)
    content = item.get("content")
    if action is Action.WRITE:
        _check_content(f"{where}.content", content, errors)
    elif action is Action.DELETE and content is not None:
        errors.append(FieldError(f"{where}.content", "must not be given for delete"))
    if len(errors) > before or action is None or not isinstance(path, str):
        return None
    return Change(path, action, content if isinstance(content, str) else None)


def _parse_action(where: str, raw: object, errors: list[FieldError]) -> Action | None:
    if isinstance(raw, str) and raw in {a.value for a in Action}:
        return Action(raw)
    errors.append(FieldError(where, "must be 'write' or 'delete'"))
    return None


def _check_content(where: str, content: object, errors: list[FieldError]) -> None:
    if not isinstance(content, str):
        errors.append(FieldError(where, "is required for write and must be a string"))
        return
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        errors.append(FieldError(where, "must be valid Unicode (no lone surrogates)"))


def _check_overlaps(parsed: list[Change | None], errors: list[FieldError]) -> None:
    """No path twice, and no path inside another one (that one would have to be both a
    file and a directory)."""
    first: dict[str, int] = {}
    for i, change in enumerate(parsed):
        if change is None:
            continue
        if change.path in first:
            other = first[change.path]
            errors.append(FieldError(f"changes[{i}].path", f"duplicates changes[{other}].path"))
        else:
            first[change.path] = i
    for i, change in enumerate(parsed):
        if change is None:
            continue
        for parent in _ancestors(change.path):
            if parent in first:
                errors.append(
                    FieldError(
                        f"changes[{i}].path",
                        f"lies inside {parent!r}, which changes[{first[parent]}] writes as a file",
                    )
                )


def _ancestors(path: str) -> Iterator[str]:
    parts = path.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


# --- plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Current:
    """What a change finds on disk: the old text (None: absent), its hash and size."""

    text: str | None
    sha256: str
    size: int = 0


def _split_lines(text: str) -> list[str]:
    """Lines with their ``"\\n"``. Only ``"\\n"`` separates lines (``str.splitlines``
    would also split on ``"\\r"``, form feeds and Unicode separators and hide them)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def file_diff(path: str, old: str | None, new: str | None) -> tuple[str, int]:
    """The unified diff of one file (header always present) and its changed-line count."""
    header = (
        f"--- {'/dev/null' if old is None else 'a/' + path}\n"
        f"+++ {'/dev/null' if new is None else 'b/' + path}\n"
    )
    body = itertools.islice(
        difflib.unified_diff(_split_lines(old or ""), _split_lines(new or ""), n=3), 2, None
    )
    out = [header]
    changed = 0
    for line in body:
        if line[0] in "+-":
            changed += 1
        out.append(line if line.endswith("\n") else line + "\n" + _NO_NEWLINE)
    return "".join(out), changed


class FilesWriteExecutor:
    """``files.write``: validate, plan, snapshot, apply, rollback."""

    task_type = TASK_TYPE
    payload_model = FilesWritePayload

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        spec, errors = parse(payload)
        if spec is None:
            raise invalid(TASK_TYPE, errors)
        # Reading up to 10 MB of files is blocking IO: keep it off the event loop.
        return await asyncio.to_thread(_plan, spec, context)

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot:
        spec = _spec(payload)
        taken = await fencing.finish(asyncio.to_thread(_snapshot, spec, context.plan_context))
        _check_against(plan, spec, taken)
        return Snapshot(TASK_TYPE, taken.to_json())

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        spec = _spec(payload)
        taken = FilesSnapshot.from_snapshot(snapshot)
        _check_against(plan, spec, taken)
        # A cancelled apply still finishes its (bounded) writes in the thread before the
        # cancellation propagates: rollback must never race a write still in flight.
        done = await fencing.finish(asyncio.to_thread(_apply, spec, taken, context))
        summary = ", ".join(f"{len(paths)} {kind}" for kind, paths in done.items() if paths)
        return ApplyResult(
            summary=f"{summary or 'nothing'} under {taken.root}",
            details={"root": str(taken.root)}
            | {kind: json.dumps(paths, ensure_ascii=False) for kind, paths in done.items()},
        )

    async def rollback(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        spec = _spec(payload)
        taken = FilesSnapshot.from_snapshot(snapshot)
        return await fencing.finish(asyncio.to_thread(_rollback, spec, taken, context))


if TYPE_CHECKING:  # mypy proves the class fits the protocol the registry expects
    _conforms: ApplyingExecutor = FilesWriteExecutor()


def _plan(spec: FilesWrite, context: PlanContext) -> Plan:
    root = context.confine(spec.root, task_type=TASK_TYPE, field_path="root")
    if not root.is_dir():
        raise invalid(TASK_TYPE, [FieldError("root", f"{spec.root} is not a directory")])
    indexed = sorted(enumerate(spec.changes), key=lambda item: item[1].path)
    errors: list[FieldError] = []
    seen: dict[Path, int] = {}
    current: dict[int, _Current] = {}
    old_bytes = 0
    for i, change in indexed:
        where = f"changes[{i}].path"
        target = _locate(root, change.path, where, errors)
        if target is None:
            continue
        if context.is_reserved(target):
            errors.append(FieldError(where, f"lies in {STATE_DIR_NAME}/, Community ADE's state"))
            continue
        if target in seen:
            errors.append(FieldError(where, f"is the same file as changes[{seen[target]}].path"))
            continue
        seen[target] = i
        found = _read(target, change, where, errors)
        if found is not None:
            current[i] = found
            old_bytes += found.size
    if old_bytes > MAX_TOTAL_BYTES:
        errors.append(
            FieldError("changes", f"the files changed hold {old_bytes} bytes, too many to review")
        )
    if errors:
        raise invalid(TASK_TYPE, errors)
    return _assemble(spec, indexed, current, root)


def _locate(root: Path, rel: str, where: str, errors: list[FieldError]) -> Path | None:
    """The real location of ``rel``: its parent resolved (symlinks followed), the last
    segment kept, so that the parent may be reached through a symlink inside the root
    but the file itself cannot be a symlink (see ``_read``)."""
    candidate = root.joinpath(*rel.split("/"))
    try:
        parent = candidate.parent.resolve()
    except (OSError, RuntimeError) as exc:
        errors.append(FieldError(where, f"cannot be resolved: {exc}"))
        return None
    if parent != root and not parent.is_relative_to(root):
        errors.append(FieldError(where, "resolves outside root (through a symlink)"))
        return None
    return parent / candidate.name


def _read(target: Path, change: Change, where: str, errors: list[FieldError]) -> _Current | None:
    try:
        info = target.lstat()
    except FileNotFoundError:
        if change.action is Action.DELETE:
            errors.append(FieldError(where, "does not exist, so it cannot be deleted"))
            return None
        return _Current(None, ABSENT)
    except NotADirectoryError:
        errors.append(FieldError(where, "has a parent that is a file, not a directory"))
        return None
    except OSError as exc:
        errors.append(FieldError(where, f"cannot be inspected: {exc.strerror}"))
        return None
    problem = _file_problem(info)
    if problem is None:
        return _read_text(target, where, errors)
    errors.append(FieldError(where, problem))
    return None


def _file_problem(info: os.stat_result) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link; files.write changes regular files only"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size > MAX_TOTAL_BYTES:
        return f"is {info.st_size} bytes, more than {MAX_TOTAL_BYTES}: too large to review"
    return None


class NotRegularFile(Exception):
    """The path names something other than a regular file (a FIFO, a device, ...)."""


def read_regular(target: Path) -> tuple[bytes, int]:
    """The content (at most ``MAX_TOTAL_BYTES`` + 1 bytes) and permission bits of the
    regular file ``target``. ``OSError`` if it cannot be read, ``NotRegularFile``."""
    # O_NOFOLLOW | O_NONBLOCK: should the file be swapped for a symlink or a FIFO after
    # lstat, open fails (or returns at once) instead of following it or blocking.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(target, flags)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(str(target))
        return handle.read(MAX_TOTAL_BYTES + 1), stat.S_IMODE(info.st_mode)


def _read_text(target: Path, where: str, errors: list[FieldError]) -> _Current | None:
    try:
        data, _ = read_regular(target)
    except OSError as exc:
        errors.append(FieldError(where, f"cannot be read: {exc.strerror}"))
        return None
    except NotRegularFile:
        errors.append(FieldError(where, "is not a regular file"))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(FieldError(where, "is a binary (not UTF-8) file; only text is previewed"))
        return None
    return _Current(text, hashlib.sha256(data).hexdigest(), len(data))


def _assemble(
    spec: FilesWrite,
    indexed: list[tuple[int, Change]],
    current: Mapping[int, _Current],
    root: Path,
) -> Plan:
    parts: list[str] = []
    counts = {"created": 0, "replaced": 0, "deleted": 0}
    changed = 0
    for i, change in indexed:
        old = current[i].text
        diff, lines = file_diff(change.path, old, change.content)
        parts.append(diff)
        changed += lines
        counts[_kind(change, old)] += 1
    pairs = [[change.path, current[i].sha256] for i, change in indexed]
    summary = (
        f"{len(spec.changes)} file(s) under {root}: "
        + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        + f"; {changed} line(s) changed"
    )
    return Plan.build(
        preview="".join(parts),
        format="diff",
        precondition_fingerprint=fingerprint(pairs),
        lines_changed=changed,
        summary=summary,
    )


def _kind(change: Change, old: str | None) -> str:
    if change.action is Action.DELETE:
        return "deleted"
    return "created" if old is None else "replaced"


def fingerprint(pairs: Sequence[Sequence[Any]]) -> str:
    """sha256 over the sorted ``[path, sha256-of-current-content | "absent"]`` pairs,
    as compact JSON (unambiguous whatever the paths contain)."""
    encoded = json.dumps(sorted(pairs), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


# --- apply ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    """One changed file as the snapshot found it: ``content`` None means absent."""

    path: str
    target: Path
    content: bytes | None
    mode: int | None

    def to_json(self) -> dict[str, Any]:
        content = None if self.content is None else base64.b64encode(self.content).decode()
        target = str(self.target)
        return {"path": self.path, "target": target, "content": content, "mode": self.mode}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Saved:
        content = raw["content"]
        return cls(
            path=str(raw["path"]),
            target=Path(raw["target"]),
            content=None if content is None else base64.b64decode(content, validate=True),
            mode=None if raw["mode"] is None else int(raw["mode"]),
        )

    @property
    def current(self) -> _Current:
        """What the plan computes from this state (text None: absent or not UTF-8)."""
        if self.content is None:
            return _Current(None, ABSENT)
        try:
            text: str | None = self.content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return _Current(text, hashlib.sha256(self.content).hexdigest(), len(self.content))


@dataclass(frozen=True)
class FilesSnapshot:
    """``Snapshot.data`` of files.write: the old state of every changed file, and the
    directories the apply will create (rollback removes them again when empty)."""

    root: Path
    files: tuple[Saved, ...]
    created_dirs: tuple[Path, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "files": [saved.to_json() for saved in self.files],
            "created_dirs": [str(d) for d in self.created_dirs],
        }

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> FilesSnapshot:
        data = snapshot.data_of(TASK_TYPE)
        try:
            return cls(
                root=Path(data["root"]),
                files=tuple(Saved.from_json(raw) for raw in data["files"]),
                created_dirs=tuple(Path(d) for d in data["created_dirs"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ApplyFailed(f"the stored {TASK_TYPE} snapshot is malformed: {exc!r}") from None


def _spec(payload: Payload) -> FilesWrite:
    return parsed_for_apply(TASK_TYPE, parse(payload))


def _check_against(plan: Plan, spec: FilesWrite, taken: FilesSnapshot) -> None:
    """The snapshot is the world the plan was computed against, and the payload turns it
    into exactly the approved preview; else nothing may be written."""
    if [saved.path for saved in taken.files] != sorted(c.path for c in spec.changes):
        raise ApplyFailed("the snapshot does not cover the files of this payload")
    indexed = sorted(enumerate(spec.changes), key=lambda item: item[1].path)
    current = {i: saved.current for (i, _), saved in zip(indexed, taken.files, strict=True)}
    planned = _assemble(spec, indexed, current, taken.root)
    if planned.precondition_fingerprint != plan.precondition_fingerprint:
        raise ApplyFailed("the files changed since the preview was approved", transient=True)
    if planned.digest != plan.digest:
        raise ApplyFailed("the payload does not produce the approved preview")


def _snapshot(spec: FilesWrite, context: PlanContext) -> FilesSnapshot:
    try:
        root = context.confine(spec.root, task_type=TASK_TYPE, field_path="root")
    except InvalidInput as exc:
        raise ApplyFailed(exc.message) from None
    files: list[Saved] = []
    missing: set[Path] = set()
    for change in sorted(spec.changes, key=lambda c: c.path):
        errors: list[FieldError] = []
        target = _locate(root, change.path, change.path, errors)
        if target is None or context.is_reserved(target):
            raise ApplyFailed(f"{change.path} cannot be written: {'; '.join(map(str, errors))}")
        files.append(_save(change.path, target))
        missing.update(d for d in target.parents if d.is_relative_to(root) and not d.exists())
    created = tuple(sorted(missing, key=lambda d: len(d.parts)))
    return FilesSnapshot(root, tuple(files), created)


def _save(path: str, target: Path) -> Saved:
    try:
        content, mode = read_regular(target)
    except FileNotFoundError:
        return Saved(path, target, None, None)
    except (OSError, NotRegularFile) as exc:
        raise ApplyFailed(f"{path} cannot be read: {exc}") from None
    return Saved(path, target, content, mode)


def _record_of(target: Path, context: PlanContext) -> Path:
    """The fence record of one file: under its workspace root's state directory."""
    root = context.root_of(target.parent.resolve())
    if root is None:
        raise ApplyFailed(f"{target} is outside the workspace roots")
    return fencing.record_path(root / STATE_DIR_NAME / "fences", f"file:{target}")


def _temp_of(target: Path, task_id: str) -> Path:
    """Where the new content is written before the rename: named by task and file, so a
    rollback after a crash finds (and removes) what a killed apply left behind."""
    tag = hashlib.sha256(f"{task_id}\0{target}".encode()).hexdigest()[:24]
    return target.parent / f".ade-{tag}.tmp"


def _apply(spec: FilesWrite, taken: FilesSnapshot, context: ApplyContext) -> dict[str, list[str]]:
    changes = {change.path: change for change in spec.changes}
    done: dict[str, list[str]] = {"created": [], "replaced": [], "deleted": []}
    records = [_record_of(saved.target, context.plan_context) for saved in taken.files]
    with fencing.fenced(records, context.fence, target=f"files under {taken.root}"):
        for saved in taken.files:
            if _save(saved.path, saved.target) != saved:
                raise ApplyFailed(f"{saved.path} changed since the snapshot", transient=True)
        try:
            for directory in taken.created_dirs:
                directory.mkdir(exist_ok=True)
            for saved in taken.files:
                content = changes[saved.path].content
                if content is None:
                    os.unlink(saved.target)
                    done["deleted"].append(saved.path)
                else:
                    temp = _temp_of(saved.target, context.task_id)
                    _write_atomically(saved.target, temp, content.encode("utf-8"), saved.mode)
                    done["created" if saved.content is None else "replaced"].append(saved.path)
        except OSError as exc:
            raise ApplyFailed(f"writing failed: {exc}", written=json.dumps(done)) from None
    return done


def _write_atomically(target: Path, temp: Path, data: bytes, mode: int | None) -> None:
    """``target`` holds ``data`` (mode ``mode``, or the umask's default for a new file),
    or keeps its old content: written to ``temp`` beside it, flushed, renamed over it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o666)  # the kernel applies the umask, as for any new file
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _rollback(spec: FilesWrite, taken: FilesSnapshot, context: ApplyContext) -> RollbackOutcome:
    """Put back every file that holds what this task wrote; leave alone a file that holds
    something else (another writer's work is not this task's to undo)."""
    ours = {c.path: None if c.content is None else c.content.encode("utf-8") for c in spec.changes}
    records = [_record_of(saved.target, context.plan_context) for saved in taken.files]
    undone: list[str] = []
    foreign: list[str] = []
    with fencing.fenced(records, context.fence, target=f"files under {taken.root}"):
        try:
            for saved in taken.files:
                temp = _temp_of(saved.target, context.task_id)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)  # what a killed apply left behind
                state = _state_of(saved, ours[saved.path])
                if state == "ours":
                    _restore(saved, temp)
                    undone.append(saved.path)
                elif state == "foreign":
                    foreign.append(saved.path)
            for directory in reversed(taken.created_dirs):
                with contextlib.suppress(FileNotFoundError):
                    if not any(directory.iterdir()):
                        directory.rmdir()
        except OSError:
            log.exception("rollback of %s files under %s failed", TASK_TYPE, taken.root)
            return "rollback_failed"
    if foreign:
        log.error("rollback under %s: changed by someone else, left as is: %s", taken.root, foreign)
    if not undone:
        return "nothing_to_roll_back"
    return "rollback_failed" if foreign else "rolled_back"


def _state_of(saved: Saved, written: bytes | None) -> str:
    """``unchanged`` (as the snapshot found it), ``ours`` (what this task wrote) or
    ``foreign``."""
    try:
        now = _save(saved.path, saved.target)
    except ApplyFailed:  # no longer a readable regular file
        return "foreign"
    if now == saved:
        return "unchanged"
    return "ours" if now.content == written else "foreign"


def _restore(saved: Saved, temp: Path) -> None:
    if saved.content is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(saved.target)
    else:
        _write_atomically(saved.target, temp, saved.content, saved.mode)
