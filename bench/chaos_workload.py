"""The fault campaign's workload (``bench/chaos.py``): the database it runs on, the git
repositories and files its tasks change, and the tasks themselves."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import chaos_plugin
from chaos_checks import Intent, git
from chaos_cluster import Database

from community_ade.auth import service as auth
from community_ade.storage import db
from community_ade.storage.models import PolicyVersion

AUTO = {"rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}]}
SUBMITTERS = 4  # each its own lock capacity (4 grants): 16 applies at once at most


def make_repos(root: Path, count: int) -> list[Path]:
    repos = []
    for n in range(count):
        repo = root / f"repo-{n}"
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        (repo / "README").write_text(f"repository {n}\n")
        git(repo, "add", "README")
        git(
            repo,
            "-c",
            "user.name=chaos",
            "-c",
            "user.email=chaos@localhost",
            "commit",
            "-qm",
            "init",
        )
        repos.append(repo)
    return repos


def new_file_patch(path: str, content: str) -> str:
    body = "".join(f"+{line}\n" for line in content.splitlines())
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(content.splitlines())} @@\n{body}"
    )


def git_intent(seq: int, repo: Path, content: str) -> Intent:
    """A commit of a new file ``t/<seq>.txt`` onto ``main``: it applies to any tip, so
    the tasks of one repository only move each other's preconditions (re-planned)."""
    name = f"t/{seq:05d}.txt"
    payload = {
        "repo": str(repo),
        "branch": "main",
        "patch": new_file_patch(name, content),
        "message": f"chaos #{seq}",
    }
    resources = [{"type": "storage", "id": repo.name, "actions": ["write"]}]
    return Intent(seq, "git", "git.patch", payload, resources, repo / name, content, repo=repo)


def files_intent(seq: int, files: Path, content: str, before: str | None) -> Intent:
    """A write of ``<seq>.txt``, over ``before`` (written now) or creating it."""
    name = f"{seq:05d}.txt"
    if before is not None:
        (files / name).write_text(before)
    change = {"path": name, "action": "write", "content": content}
    payload = {"root": str(files), "changes": [change]}
    return Intent(seq, "files", "files.write", payload, [], files / name, content, before)


def intents(
    workspace: Path, repos: list[Path], count: int, slow_share: float, rng: random.Random
) -> list[Intent]:
    """The tasks to submit, half git.patch and half files.write (half of whose files
    exist); ``slow_share`` of them the slow twins, sleeping 0.1-1.5 s before and after."""
    files = workspace / "files"
    files.mkdir()
    made = []
    for seq in range(count):
        content = f"task {seq} {uuid.uuid4().hex[:8]}\n"
        if seq % 2 == 0:
            intent = git_intent(seq, repos[seq % len(repos)], content)
        else:
            before = f"seed {seq}\n" if rng.random() < 0.5 else None
            intent = files_intent(seq, files, content, before)
        if rng.random() < slow_share:
            intent.task_type = chaos_plugin.SLOW_TYPES[intent.task_type]
            sleeps = [round(rng.uniform(0.1, 1.5), 2), round(rng.uniform(0.1, 1.5), 2)]
            intent.payload = intent.payload | {"sleep": sleeps}
        made.append(intent)
    return made


async def prepare_database(database: Database) -> list[str]:
    """Schema, the auto-approving policy, and the submitters' API tokens."""
    await database.create()
    engine = db.create_engine(database.url)
    try:
        await db.upgrade(engine)
        tokens = []
        async with db.sessionmaker(engine).begin() as session:
            session.add(PolicyVersion(version=1, document=AUTO))
            for n in range(SUBMITTERS):
                user = await auth.create_user(session, f"chaos-{n}", "submitter")
                token, _ = await auth.create_token(session, name="chaos", user_id=user.id)
                tokens.append(token)
        return tokens
    finally:
        await engine.dispose()
