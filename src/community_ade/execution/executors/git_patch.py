"""``git.patch``: a unified diff committed onto a branch of a local git repository.

Payload::

    {"repo": "/abs/repo", "branch": "main", "patch": "<unified diff>", "message": "..."}

The preview is the patch itself (canonicalised only in ways that cannot change what it
does), so the stash reviewers approve is byte for byte what gets applied. The plan proves
the patch applies to the branch tip without touching the repository: git runs against a
temporary index outside it (``GIT_INDEX_FILE``), loaded from the branch's commit, and
``git apply --cached --check`` reads that index and the object store only. The working
tree, the real index and every ref stay as they were. The fingerprint is the branch's
commit: if the branch moves before apply, the preview no longer describes the change.

git runs without a shell, with a timeout, through ``git_runner``: nothing the repository's
configuration, attributes or hooks name is run, by plan or by apply, and discovery is
confined to the named directory, so a path inside some other repository is not mistaken
for that repository.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from community_ade.errors import AdeError, InvalidInput, ServiceUnavailable
from community_ade.execution.executors import fencing
from community_ade.execution.executors.base import (
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
from community_ade.execution.executors.git_runner import Git, GitFailed

TASK_TYPE = "git.patch"
MAX_PATCH_BYTES = 5 * 1024 * 1024
MAX_MESSAGE_CHARS = 64 * 1024
MAX_BRANCH_CHARS = 200
APPLY_ARGS = ("apply", "--cached")
"""How the patch is applied to an index; apply must use the same arguments as the check."""
COMMIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Community ADE",
    "GIT_AUTHOR_EMAIL": "ade@localhost",
    "GIT_COMMITTER_NAME": "Community ADE",
    "GIT_COMMITTER_EMAIL": "ade@localhost",
}
"""Who commits an applied patch; the trailers name the task, whose record names the
submitter and the reviewers."""

# A conservative subset of `git check-ref-format --branch`: slash-separated segments of
# ASCII letters, digits and `_ . + -`, each starting with a letter, digit or `_` and not
# ending with `.` or `.lock`; no `..`. Everything accepted here git accepts too.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_PAYLOAD_KEYS = frozenset({"repo", "branch", "patch", "message"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GitPatch:
    """A validated payload; ``patch`` is already canonical."""

    repo: str
    branch: str
    patch: str
    message: str


# ``branch_problem`` as a pattern; HEAD, ".." and the endings refused by lookaheads.
BRANCH_PATTERN = (
    r"^(?!HEAD$)(?![\s\S]*\.\.)(?![\s\S]*\.(?:/|$))(?![\s\S]*\.lock(?:/|$))"
    r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*$"
)
# Text with something besides whitespace, and no NUL.
_TEXT_PATTERN = r"^(?=[\s\S]*\S)[^\x00]*$"


class GitPatchPayload(BaseModel):
    """A unified diff to commit onto a branch of a local git repository."""

    # The payload's JSON Schema. ``parse`` checks first, and what a schema cannot say (the
    # patch's bound in bytes: ``maxLength`` counts characters; valid Unicode); this model last.
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    repo: AbsolutePath = Field(
        description="The absolute path of the repository's working tree; it must lie inside "
        "a workspace root (ADE_WORKSPACE_ROOTS).",
    )
    branch: str = Field(
        min_length=1,
        max_length=MAX_BRANCH_CHARS,
        pattern=BRANCH_PATTERN,
        description="The branch the commit goes onto (it must exist): /-separated segments "
        "of letters, digits, _ . + -, each starting with a letter, digit or _.",
    )
    patch: str = Field(
        max_length=MAX_PATCH_BYTES,
        pattern=_TEXT_PATTERN,
        description=f"The unified diff (at most {MAX_PATCH_BYTES} bytes as UTF-8); it must "
        "apply to the branch's tip.",
    )
    message: str = Field(
        max_length=MAX_MESSAGE_CHARS,
        pattern=_TEXT_PATTERN,
        description="The commit message; Community ADE adds ADE-Task and ADE-Fence trailers.",
    )


def branch_problem(branch: object) -> str | None:
    """Why ``branch`` is not an acceptable branch name, or None."""
    if not isinstance(branch, str) or not branch:
        return "must be a non-empty string"
    if len(branch) > MAX_BRANCH_CHARS:
        return f"must be at most {MAX_BRANCH_CHARS} characters"
    if branch == "HEAD":
        return "HEAD is not a branch name"
    for segment in branch.split("/"):
        if not _SEGMENT.fullmatch(segment):
            return (
                "must be /-separated segments of letters, digits, '_', '.', '+' and '-', "
                "each starting with a letter, digit or '_'"
            )
        if ".." in segment or segment.endswith((".", ".lock")):
            return "must not contain '..' or have a segment ending with '.' or '.lock'"
    return None


def canonical_patch(patch: str) -> str:
    """The patch as stored and applied: CRLF line endings turned into LF when *every*
    line has them (a transport artefact; a patch that mixes them is patching CRLF files
    and is kept as is), and a final newline added if missing.

    Trailing whitespace is deliberately not stripped: a hunk's last line may be an empty
    context line and a binary patch ends with a blank line; git refuses either patch
    once that is stripped ("corrupt patch").
    """
    newlines = patch.count("\n")
    if newlines and patch.count("\r\n") == newlines and not patch.endswith("\r"):
        patch = patch.replace("\r\n", "\n")
    return patch if patch.endswith("\n") else patch + "\n"


def _text_problem(value: object, *, limit: int, unit: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if "\x00" in value:
        return "must not contain NUL"
    try:
        size = len(value.encode("utf-8")) if unit == "bytes" else len(value)
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    if size > limit:
        return f"must be at most {limit} {unit}"
    return None


def repo_problem(repo: object) -> str | None:
    """Why ``repo`` is not an acceptable repository path, or None."""
    if not isinstance(repo, str) or not repo:
        return "must be a non-empty string"
    if "\x00" in repo or not os.path.isabs(repo):
        return "must be an absolute path"
    return None


def _patch_problem(patch: object) -> str | None:
    return _text_problem(patch, limit=MAX_PATCH_BYTES, unit="bytes")


def _message_problem(message: object) -> str | None:
    return _text_problem(message, limit=MAX_MESSAGE_CHARS, unit="characters")


_CHECKS = (
    ("repo", repo_problem),
    ("branch", branch_problem),
    ("patch", _patch_problem),
    ("message", _message_problem),
)


def parse(payload: object) -> tuple[GitPatch | None, tuple[FieldError, ...]]:
    """The validated payload, or None and every problem found. Pure: no filesystem."""
    if not isinstance(payload, Mapping):
        return None, (FieldError("", "payload must be an object"),)
    errors = [FieldError(str(key), "unknown field") for key in payload if key not in _PAYLOAD_KEYS]
    values: dict[str, str] = {}
    for name, problem_of in _CHECKS:
        value = payload.get(name)
        problem = problem_of(value)
        if problem is not None:
            errors.append(FieldError(name, problem))
        elif isinstance(value, str):  # every check refuses a non-string
            values[name] = value
    errors = errors or model_errors(GitPatchPayload, payload)
    if errors:
        return None, tuple(errors)
    patch = canonical_patch(values["patch"])
    return GitPatch(values["repo"], values["branch"], patch, values["message"]), ()


def _refuse(field_path: str, message: str, **details: str) -> InvalidInput:
    return invalid(TASK_TYPE, [FieldError(field_path, message)], **details)


class GitPatchExecutor:
    """``git.patch``: validate, plan, snapshot, apply (commit onto the branch), rollback
    (the branch back to the snapshot's commit)."""

    task_type = TASK_TYPE
    payload_model = GitPatchPayload

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        spec, errors = parse(payload)
        if spec is None:
            raise invalid(TASK_TYPE, errors)
        repo = context.confine(spec.repo, task_type=TASK_TYPE, field_path="repo")
        if not repo.is_dir():
            raise _refuse("repo", f"{spec.repo} is not a directory")
        with tempfile.TemporaryDirectory(prefix="ade-git-plan-") as scratch:
            git = await _open(context, repo, Path(scratch))
            await _check_repository(git, spec.repo, context)
            commit = await _branch_commit(git, spec.branch)
            index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            await git.must("read-tree", commit, env=index)
            stdin = spec.patch.encode("utf-8")
            check = await git.run(*APPLY_ARGS, "--check", "-", stdin=stdin, env=index)
            if check.returncode != 0:
                raise _refuse(
                    "patch",
                    f"does not apply to {spec.branch} at {commit[:12]}: {check.stderr}",
                    git_stderr=check.stderr,
                )
            stat = await git.run(*APPLY_ARGS, "--numstat", "-", stdin=stdin, env=index)
            if stat.returncode != 0:
                raise GitFailed(f"git apply --numstat failed: {stat.stderr}", stderr=stat.stderr)
        files, added, removed, binary = numstat_totals(stat.stdout.splitlines())
        subject = spec.message.strip().splitlines()[0]
        return Plan.build(
            preview=spec.patch,
            format="diff",
            precondition_fingerprint=commit,
            lines_changed=added + removed + binary,
            summary=(
                f"{files} file(s) on {spec.branch} at {commit[:12]} in {repo} "
                f"(+{added} -{removed}{f', {binary} binary' if binary else ''}): {subject}"
            ),
        )

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot:
        spec = _spec(payload)
        with tempfile.TemporaryDirectory(prefix="ade-git-snapshot-") as scratch:
            try:
                git = await _locate_repo(spec, context.plan_context, Path(scratch))
                commit = await _branch_commit(git, spec.branch)
            except (InvalidInput, GitFailed, ServiceUnavailable) as exc:
                raise _apply_failure(exc) from None
        if commit != plan.precondition_fingerprint:
            raise ApplyFailed(f"{spec.branch} moved since the preview was approved", transient=True)
        return Snapshot(
            TASK_TYPE, GitSnapshot(git.cwd, f"refs/heads/{spec.branch}", commit).to_json()
        )

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        spec = _spec(payload)
        taken = GitSnapshot.from_snapshot(snapshot)
        if plan.preview != spec.patch:  # (a Plan's digest always matches its preview)
            raise ApplyFailed("the payload's patch is not the approved preview")
        message = commit_message(spec.message, context.task_id, context.fence)
        with tempfile.TemporaryDirectory(prefix="ade-git-apply-") as scratch:
            try:
                applier = _Applier(
                    await _locate_repo(spec, context.plan_context, Path(scratch)), taken, context
                )
                new = await applier.commit(plan.preview, message)  # the stash, not a recomputation
                worktree = await fencing.fenced_call(
                    [await applier.record()],
                    context.fence,
                    lambda: applier.move_branch(new),
                    target=taken.ref,
                )
            except (InvalidInput, GitFailed, ServiceUnavailable) as exc:
                raise _apply_failure(exc) from None
        return ApplyResult(
            summary=f"committed {new[:12]} on {spec.branch} in {taken.repo}",
            details={
                "commit": new,
                "parent": taken.commit,
                "branch": spec.branch,
                "worktree": worktree,
            },
        )

    async def rollback(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        taken = GitSnapshot.from_snapshot(snapshot)
        with tempfile.TemporaryDirectory(prefix="ade-git-rollback-") as scratch:
            try:
                git = await _open(context.plan_context, taken.repo, Path(scratch))
                applier = _Applier(git, taken, context)
                return await fencing.fenced_call(
                    [await applier.record()],
                    context.fence,
                    applier.restore_branch,
                    target=taken.ref,
                )
            except (InvalidInput, GitFailed, ServiceUnavailable) as exc:
                log.error("rollback of %s in %s failed: %s", taken.ref, taken.repo, exc.message)
                return "rollback_failed"

    async def built_upon(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult | None:
        """The commit of the attempt made from ``snapshot`` (the snapshot's commit its
        parent, its ``ADE-Task`` trailer this task's; an earlier attempt from the same
        commit was rolled back, so it is not on the branch), when the branch has moved
        past it: an interrupted apply that others committed on top of (their locks were
        free once its worker's lease ran out, before its message was reclaimed). If an
        interrupted rollback had reverted its files in the checkout, they are put back
        (``restore_checkout``)."""
        spec = _spec(payload)
        taken = GitSnapshot.from_snapshot(snapshot)
        with tempfile.TemporaryDirectory(prefix="ade-git-landed-") as scratch:
            git = await _open(context.plan_context, taken.repo, Path(scratch))
            applier = _Applier(git, taken, context)
            tip = await applier.tip()
            commit = await applier.built_upon(tip) if tip and tip != taken.commit else None
            if commit is None:
                return None
            await fencing.fenced_call(
                [await applier.record()],
                context.fence,
                lambda: applier.restore_checkout(commit, tip),
                target=taken.ref,
            )
        return ApplyResult(
            summary=f"committed {commit[:12]} on {spec.branch} in {taken.repo} "
            f"(an interrupted apply, found built upon at {tip[:12]})",
            details={"commit": commit, "parent": taken.commit, "branch": spec.branch},
        )


if TYPE_CHECKING:  # mypy proves the class fits the protocol the registry expects
    _conforms: ApplyingExecutor = GitPatchExecutor()


def _spec(payload: Payload) -> GitPatch:
    return parsed_for_apply(TASK_TYPE, parse(payload))


async def _check_repository(git: Git, shown: str, context: PlanContext) -> None:
    """The directory is a repository itself: a bare one (its own git dir), or the top of
    a work tree; never a directory somewhere inside one. Its git directory, whose refs
    apply moves and where the fence records live, lies inside the workspace roots too: a
    ``.git`` file may point anywhere."""
    probe = await git.run(
        "rev-parse", "--is-bare-repository", "--is-inside-git-dir", "--absolute-git-dir",
        "--path-format=absolute", "--git-common-dir",
    )  # fmt: skip
    if probe.returncode != 0:
        raise _refuse("repo", f"{shown} is not a git repository: {probe.stderr}")
    bare, inside_git_dir, git_dir, common = probe.stdout.splitlines()
    if bare != "true" or Path(git_dir) != git.cwd:
        top = await git.run("rev-parse", "--show-toplevel")
        if inside_git_dir == "true" or top.returncode != 0 or Path(top.stdout.strip()) != git.cwd:
            raise _refuse("repo", f"{shown} is not the top directory of a git repository")
    try:
        context.confine(common, task_type=TASK_TYPE, field_path="repo")
    except InvalidInput:
        raise _refuse(
            "repo", f"{shown} keeps its git directory at {common}, outside the workspace roots"
        ) from None


async def _branch_commit(git: Git, branch: str) -> str:
    found = await git.run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    if found.returncode != 0:
        raise _refuse("branch", f"no branch {branch!r} in the repository")
    return found.stdout.strip()


def numstat_totals(lines: Sequence[str]) -> tuple[int, int, int, int]:
    """Files, added lines, removed lines and binary files of ``git apply --numstat``.
    A binary file counts as one changed line so a binary-only patch is not "empty"."""
    files = added = removed = binary = 0
    for line in lines:
        fields = line.split("\t", 2)
        if len(fields) != 3:
            continue
        files += 1
        if fields[0] == "-" or fields[1] == "-":
            binary += 1
        else:
            added += int(fields[0])
            removed += int(fields[1])
    return files, added, removed, binary


# --- apply ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GitSnapshot:
    """``Snapshot.data`` of git.patch: the branch's commit before the apply. The working
    trees that have the branch checked out are found again when needed (a worktree may
    be added or removed meanwhile); their local changes are never touched."""

    repo: Path
    ref: str
    commit: str

    def to_json(self) -> dict[str, str]:
        return {"repo": str(self.repo), "ref": self.ref, "commit": self.commit}

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> GitSnapshot:
        data = snapshot.data_of(TASK_TYPE)
        try:
            return cls(Path(data["repo"]), str(data["ref"]), str(data["commit"]))
        except (KeyError, TypeError) as exc:
            raise ApplyFailed(f"the stored {TASK_TYPE} snapshot is malformed: {exc!r}") from None


def commit_message(message: str, task_id: str, fence: int) -> str:
    """The payload's message with the trailers naming the task and the fence it was
    applied under, as the last paragraph (where ``git interpret-trailers`` looks)."""
    return f"{message.rstrip()}\n\nADE-Task: {task_id}\nADE-Fence: {fence}\n"


def parse_worktrees(porcelain: str) -> dict[str, Path]:
    """Checked-out branch ref -> working tree, from ``git worktree list --porcelain``."""
    found: dict[str, Path] = {}
    for block in porcelain.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines() if line)
        if "worktree" in fields and "branch" in fields:
            found[fields["branch"]] = Path(fields["worktree"])
    return found


async def _locate_repo(spec: GitPatch, context: PlanContext, scratch: Path) -> Git:
    """git in the payload's repository; ``InvalidInput`` if it is no longer acceptable."""
    repo = context.confine(spec.repo, task_type=TASK_TYPE, field_path="repo")
    git = await _open(context, repo, scratch)
    await _check_repository(git, spec.repo, context)
    return git


async def _open(context: PlanContext, cwd: Path, scratch: Path) -> Git:
    return await Git.open(context.git_executable, cwd, scratch, context.command_timeout_seconds)


def _apply_failure(exc: AdeError) -> ApplyFailed:
    """A failure at apply time: a timeout (or a missing git) may pass, a repository that
    is no longer acceptable or a git error will not."""
    return ApplyFailed(exc.message, transient=isinstance(exc, ServiceUnavailable), **exc.details)


class _Applier:
    """git.patch's execution side, for one task (see ``GitPatchExecutor``)."""

    def __init__(self, git: Git, taken: GitSnapshot, context: ApplyContext) -> None:
        self.git = git
        self.taken = taken
        self.context = context

    async def record(self) -> Path:
        """The branch's fence record, in the repository's common git dir (shared by
        every worktree, so a linked worktree's writer is fenced too)."""
        common = await self.git.must("rev-parse", "--path-format=absolute", "--git-common-dir")
        return fencing.record_path(Path(common.strip()) / "ade-fences", self.taken.ref)

    async def tip(self) -> str:
        found = await self.git.run(
            "rev-parse", "--verify", "--quiet", f"{self.taken.ref}^{{commit}}"
        )
        return found.stdout.strip() if found.returncode == 0 else ""

    async def checkout_of_branch(self) -> Git | None:
        """git in the working tree that has the branch checked out, if any. The list
        comes from the repository's own records, so that tree is confined like any
        path a task names before anything is checked out into it."""
        listed = parse_worktrees(await self.git.must("worktree", "list", "--porcelain"))
        where = listed.get(self.taken.ref)
        if where is None:
            return None
        confined = self.context.plan_context.confine(
            str(where), task_type=TASK_TYPE, field_path="repo"
        )
        return await self.git.opened_at(confined)

    async def commit(self, patch: str, message: str) -> str:
        """The commit of ``patch`` on the snapshot's commit, built in a temporary index:
        objects only, no ref or working tree changes yet."""
        index = {"GIT_INDEX_FILE": str(self.git.home / "index")}
        await self.git.must("read-tree", self.taken.commit, env=index)
        applied = await self.git.run(*APPLY_ARGS, "-", stdin=patch.encode("utf-8"), env=index)
        if applied.returncode != 0:
            raise ApplyFailed(
                f"the approved patch does not apply to {self.taken.commit[:12]}: {applied.stderr}",
                output=applied.stderr,
            )
        tree = (await self.git.must("write-tree", env=index)).strip()
        created = await self.git.run(
            "commit-tree", tree, "-p", self.taken.commit, "--no-gpg-sign", "-F", "-",
            stdin=message.encode("utf-8"), env=COMMIT_IDENTITY,
        )  # fmt: skip
        if created.returncode != 0:
            raise GitFailed(f"git commit-tree failed: {created.stderr}", stderr=created.stderr)
        return created.stdout.strip()

    async def move_branch(self, new: str) -> str:
        """Under the fence: the branch from the snapshot's commit to ``new`` (compare and
        swap), then the working tree that has it checked out, as a checkout would."""
        old = self.taken.commit
        worktree = await self.checkout_of_branch()
        if worktree is not None:
            check = await worktree.run("read-tree", "-m", "-u", "-n", old, new)
            if check.returncode != 0:
                raise ApplyFailed(
                    f"the working tree {worktree.cwd} has local changes the patch would "
                    f"overwrite: {check.stderr}",
                    output=check.stderr,
                )
        moved = await self.git.run("update-ref", "-m", self.reason(), self.taken.ref, new, old)
        if moved.returncode != 0:
            raise ApplyFailed(f"the branch moved during the apply: {moved.stderr}", transient=True)
        if worktree is not None:
            await worktree.must("read-tree", "-m", "-u", old, new)
        return "" if worktree is None else str(worktree.cwd)

    async def restore_branch(self) -> RollbackOutcome:
        """Under the fence: the branch back to the snapshot's commit, if it points at the
        commit this task made; nothing to do if that commit is not on the branch at all
        (anything else was not ours to undo)."""
        old, current = self.taken.commit, await self.tip()
        if current == old:
            return "rolled_back"
        if current and not await self.made_here(current) and not await self.built_upon(current):
            # The branch moved on (others were granted it once this attempt's lease ran
            # out) without this task's commit: the attempt never moved it, nothing to undo.
            log.warning("rollback: %s moved on without this task's commit", self.taken.ref)
            return "nothing_to_roll_back"
        if not current or not await self.made_here(current):
            log.error("rollback: %s is at %s, not at this task's commit", self.taken.ref, current)
            return "rollback_failed"
        worktree = await self.checkout_of_branch()
        if worktree is not None:
            synced = await worktree.run("read-tree", "-m", "-u", current, old)
            if synced.returncode != 0:
                log.error("rollback: working tree %s: %s", worktree.cwd, synced.stderr)
                return "rollback_failed"
        reset = await self.git.run("update-ref", "-m", self.reason(), self.taken.ref, old, current)
        return "rolled_back" if reset.returncode == 0 else "rollback_failed"

    async def built_upon(self, tip: str) -> str | None:
        """This task's commit on the snapshot's commit, if ``tip`` descends from it."""
        listed = await self.git.run(
            "rev-list", "--ancestry-path", "--parents", f"{self.taken.commit}..{tip}"
        )
        for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
            commit, *parents = line.split()
            if (
                commit != tip
                and parents[:1] == [self.taken.commit]
                and await self.made_here(commit)
            ):
                return commit
        return None

    async def restore_checkout(self, commit: str, tip: str) -> None:
        """Under the fence: in the working tree that has the branch checked out, each
        path ``commit`` changed that is still exactly as the snapshot's commit had it
        (index and file: an interrupted rollback reverted the checkout before it could
        move the branch, and the next apply left it so) is brought to ``tip``. Local
        changes are left alone."""
        worktree = await self.checkout_of_branch()
        if worktree is None:
            return
        parent = self.taken.commit
        # No diff driver or textconv of the repository's may run (git_runner).
        plain = ("diff", "--no-ext-diff", "--no-textconv")
        changed = await worktree.must(*plain, "--name-only", "-z", parent, commit)
        for path in filter(None, changed.split("\0")):
            staged = await worktree.run(*plain, "--cached", "--quiet", parent, "--", path)
            local = await worktree.run(*plain, "--quiet", "--", path)
            present = await worktree.run("cat-file", "-e", f"{tip}:{path}")
            if staged.returncode == local.returncode == present.returncode == 0:
                await worktree.must("checkout", tip, "--", path)

    async def made_here(self, commit: str) -> bool:
        """Whether ``commit`` is this task's: on the snapshot's commit, with its trailer.
        Read with ``cat-file`` (``log`` could be configured to check signatures, which
        runs a program); the message is what follows the headers."""
        parent = await self.git.run("rev-parse", "--verify", "--quiet", f"{commit}^1")
        raw = await self.git.run("cat-file", "commit", commit)
        message = raw.stdout.partition("\n\n")[2]
        trailer = f"\nADE-Task: {self.context.task_id}\n"
        return parent.stdout.strip() == self.taken.commit and trailer in message

    def reason(self) -> str:
        return f"community-ade: task {self.context.task_id} fence {self.context.fence}"
