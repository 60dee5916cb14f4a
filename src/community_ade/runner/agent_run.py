"""One run of an agent from its stored configuration: read it over the API, build the
pydantic-ai agent (model, system prompt, sampling parameters, exactly its enabled tools),
hold the agent's lease while the model works toward the goal, release it at the end.

Everything goes through the API with the agent's own token (the SDK): what the agent
reads of its configuration, what it proposes, the lease that shows it online. The model
is built from the catalogue and the environment (``endpoints``) unless one is handed in
(the demo's scripted model, or a test's ``FunctionModel``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai import Agent, ModelSettings
from pydantic_ai.exceptions import ModelAPIError
from pydantic_ai.models import Model

from community_ade.agents.config import Parameters
from community_ade.api.agent_schemas import AgentOut, CatalogueModelOut
from community_ade.client import AdeClient
from community_ade.errors import Forbidden, InvalidInput, NotFound
from community_ade.execution.executors.base import PlanContext
from community_ade.runner.endpoints import Endpoint, ModelUnavailable, endpoint_for
from community_ade.runner.tools import AgentTools, Say, specs_for
from community_ade.settings import Settings

GOAL_MAX = 50_000
_MODELS = TypeAdapter(list[CatalogueModelOut])


@dataclass(frozen=True)
class RunResult:
    output: str
    proposed: tuple[str, ...]  # the ids of the tasks proposed, in order


def model_for(endpoint: Endpoint) -> Model:
    """The pydantic-ai model talking to ``endpoint``."""
    # Imported here: each provider's SDK takes seconds to import, and a run needs one.
    if endpoint.kind == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(
            endpoint.model_name,
            provider=AnthropicProvider(api_key=endpoint.api_key, base_url=endpoint.base_url),
        )
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(
        endpoint.model_name,
        provider=OpenAIProvider(base_url=endpoint.base_url, api_key=endpoint.api_key),
    )


def model_settings(parameters: Mapping[str, Any]) -> ModelSettings:
    """The configuration's temperature, top_p and max tokens as pydantic-ai settings."""
    params = Parameters.from_document(parameters)
    return ModelSettings(
        temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens
    )


async def configuration(client: AdeClient, name: str) -> AgentOut:
    """The stored configuration of the agent named ``name``."""
    page = await client.transport.request("GET", "/agents", params={"q": name, "limit": 100})
    for item in page["items"]:
        if item["name"] == name:
            return AgentOut.model_validate(item)
    raise NotFound(f"no agent named {name!r}")


async def catalogue_model(
    client: AdeClient, config: AgentOut, env: Mapping[str, str], served_name: str | None = None
) -> Model:
    """The model of the agent's catalogue entry, at the endpoint the environment names."""
    models = _MODELS.validate_python(await client.transport.request("GET", "/catalogue/models"))
    provider = next((m.provider for m in models if m.id == config.model), None)
    return model_for(endpoint_for(config.model, provider, env, served_name))


async def run_agent(
    client: AdeClient,
    name: str,
    goal: str,
    *,
    model: Model | None = None,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    served_name: str | None = None,
    decision_timeout: float | None = None,
    say: Say = lambda _: None,
) -> RunResult:
    """Run agent ``name`` (whose token ``client`` carries) toward ``goal``.

    Raises:
        ModelUnavailable: no model configured, its endpoint not configured, or not
            reachable (connection refused, authentication, unknown model…).
        InvalidInput: an empty or huge goal. NotFound: no such agent.
        Forbidden: the token is not this agent's.
        AdeProblem: the server refused something else (the lease, say).
    """
    if not goal.strip() or len(goal) > GOAL_MAX:
        raise InvalidInput(f"the goal must be 1 to {GOAL_MAX} characters")
    config = await configuration(client, name)
    if model is None:
        environment = os.environ if env is None else env
        model = await catalogue_model(client, config, environment, served_name)
    types = await client.task_types()
    tools = AgentTools(
        client,
        PlanContext.from_settings(settings or Settings()),
        applied_by_agent=frozenset(t.type for t in types if t.applied_by == "agent"),
        decision_timeout=decision_timeout,
        say=say,
    )
    specs = specs_for(config.tools, config.allowed_task_types, types)
    agent = Agent(
        model,
        name=config.name,
        instructions=config.system_prompt or None,
        model_settings=model_settings(config.parameters),
        tools=tools.build(specs),
    )
    async with client.lease() as lease:
        if lease.info.agent_id != config.id:
            raise Forbidden(f"the token is not agent {name}'s: use a token of that agent")
        say(f"agent {name} online (lease {lease.id}); tools: {', '.join(s.name for s in specs)}")
        try:
            result = await agent.run(goal)
        except ModelAPIError as exc:
            raise ModelUnavailable(f"the model did not answer: {exc}") from exc
    return RunResult(str(result.output), tuple(tools.proposed))
