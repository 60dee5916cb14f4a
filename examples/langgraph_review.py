"""A LangGraph program whose change goes through Community ADE review.

Where LangGraph would ``interrupt()`` for a human, the ``propose`` node hands the change
to Community ADE with the SDK and waits for the decision: the reviewers, the policy, the
audit trail and the worker that applies it are the server's. On a request for changes
the graph goes to ``revise`` with the reviewers' comments, then proposes again.

    ADE_URL=http://127.0.0.1:8000 ADE_TOKEN=<an agent's token> \\
    python examples/langgraph_review.py /srv/app app.conf "debug = true"

Here ``revise`` asks you at the terminal; in an LLM program it is a model call.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from community_ade.client import AdeClient

ROUNDS_MAX = 3

Revise = Callable[[str, list[str]], str]


class Change(TypedDict):
    root: str
    path: str
    content: str
    outcome: str
    comments: list[str]
    rounds: int


def build(ade: AdeClient, revise: Revise) -> Any:
    async def propose(state: Change) -> dict[str, Any]:
        change = {"path": state["path"], "action": "write", "content": state["content"]}
        proposal = await ade.propose(
            "files.write",
            {"root": state["root"], "changes": [change]},
            [{"type": "configuration", "id": state["path"], "actions": ["write"]}],
            title=f"write {state['path']}",
        )
        task = await ade.wait(proposal.task.id)
        if task.state in ("APPROVED", "APPLYING"):
            task = await ade.wait(task.id, until="final")  # the worker applies it
        reviews = (await ade.approval(task.id)).reviews
        comments = [r.comment for r in reviews if r.digest == task.preview_digest and r.comment]
        if task.state == "DRAFT":  # sent back: withdraw it, the revision is a new proposal
            await ade.cancel(task.id, "revised")
            outcome = "changes_requested"
        else:
            outcome = task.state.lower()
        return {"outcome": outcome, "comments": comments, "rounds": state["rounds"] + 1}

    def revise_node(state: Change) -> dict[str, Any]:
        return {"content": revise(state["content"], state["comments"])}

    def route(state: Change) -> str:
        again = state["outcome"] == "changes_requested" and state["rounds"] < ROUNDS_MAX
        return "revise" if again else END

    graph = StateGraph(Change)
    graph.add_node("propose", propose)
    graph.add_node("revise", revise_node)
    graph.add_edge(START, "propose")
    graph.add_conditional_edges("propose", route, ["revise", END])
    graph.add_edge("revise", "propose")
    return graph.compile()


async def run(root: str, path: str, content: str, revise: Revise) -> Change:
    async with AdeClient() as ade:  # ADE_URL and ADE_TOKEN
        start: Change = {
            "root": root,
            "path": path,
            "content": content,
            "outcome": "",
            "comments": [],
            "rounds": 0,
        }
        final: Change = await build(ade, revise).ainvoke(start)
    return final


def ask(content: str, comments: list[str]) -> str:
    print(f"The reviewers said: {'; '.join(comments) or '(nothing)'}")
    return input(f"New content (was {content!r}): ").replace("\\n", "\n")


def main() -> None:
    root, path, content = sys.argv[1], sys.argv[2], sys.argv[3].replace("\\n", "\n")
    final = asyncio.run(run(root, path, content, ask))
    print(f"{final['outcome']} after {final['rounds']} round(s)")


if __name__ == "__main__":
    main()
