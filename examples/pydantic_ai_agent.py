"""A pydantic-ai agent whose file writes are reviewed by people in Community ADE.

The model edits configuration through one tool, ``write_file``; the tool proposes a
``files.write`` task with the SDK and waits for the reviewers. Approved, the server's
worker applies it and the model hears so; sent back or rejected, the model gets the
reviewers' comments and may propose a revision.

    ADE_URL=http://127.0.0.1:8000 ADE_TOKEN=<an agent's token> \\
    OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY=unused MODEL=llama3.1 \\
    python examples/pydantic_ai_agent.py /srv/app "Turn on debug logging in app.conf"

(``ade agents run NAME --goal`` does all of this from an agent's stored configuration.)
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from pydantic_ai import Agent, RunContext
from pydantic_ai.models import Model

from community_ade.client import AdeClient


@dataclass
class Workspace:
    ade: AdeClient
    root: str  # an absolute directory under the server's workspace roots


agent = Agent(
    deps_type=Workspace,
    instructions=(
        "You edit configuration files. Every write is reviewed by people: when they ask "
        "for changes, revise the file as they say and write it again."
    ),
)


@agent.tool
async def write_file(ctx: RunContext[Workspace], path: str, content: str, title: str) -> str:
    """Write ``content`` to ``path`` (relative to the workspace) once reviewers approve;
    answers what they decided and what they said."""
    ade = ctx.deps.ade
    change = {"path": path, "action": "write", "content": content}
    proposal = await ade.propose(
        "files.write",
        {"root": ctx.deps.root, "changes": [change]},
        [{"type": "configuration", "id": path, "actions": ["write"]}],
        title=title,
    )
    task = await ade.wait(proposal.task.id)
    if task.state in ("APPROVED", "APPLYING"):
        task = await ade.wait(task.id, until="final")  # the worker applies it
        return f"{task.state}: {task.result}"
    reviews = (await ade.approval(task.id)).reviews
    said = "; ".join(r.comment for r in reviews if r.digest == task.preview_digest and r.comment)
    if task.state == "DRAFT":  # sent back: withdraw it, the revision is a new proposal
        await ade.cancel(task.id, "revised")
        return f"changes requested: {said}"
    return f"{task.state}: {said}"


async def run(goal: str, root: str, model: Model | str) -> str:
    async with AdeClient() as ade:  # ADE_URL and ADE_TOKEN
        result = await agent.run(goal, deps=Workspace(ade, root), model=model)
    return result.output


def main() -> None:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    root, goal = sys.argv[1], sys.argv[2]
    model = OpenAIChatModel(os.environ.get("MODEL", "gpt-4o"), provider=OpenAIProvider())
    print(asyncio.run(run(goal, root, model)))


if __name__ == "__main__":
    main()
