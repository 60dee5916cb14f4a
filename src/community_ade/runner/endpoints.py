"""Which LLM endpoint serves a catalogue model, from the catalogue's provider and the
environment (pure: the environment is passed in).

- A model whose catalogue provider is **Anthropic** talks to Anthropic's Messages API:
  ``ANTHROPIC_API_KEY`` (required), ``ANTHROPIC_BASE_URL`` (optional, e.g. a proxy).
- **Any other** model talks to an OpenAI-compatible chat-completions endpoint:
  ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. For the provider OpenAI the base URL
  defaults to OpenAI's and the key is required; for any other provider (Meta, Mistral
  AI, a model an admin added) the base URL is required, since only the operator knows
  which server hosts it (Ollama ``http://127.0.0.1:11434/v1``, vLLM
  ``http://HOST:8000/v1``), and a local server needs no key.
- ``served_name`` (``ade agents run --served-model``) overrides the model name sent to
  the endpoint, when the server names the model differently from the catalogue (Ollama's
  ``llama3.1:70b`` for the catalogue's ``llama-3.1-70b``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from community_ade.errors import AdeError

Kind = Literal["openai", "anthropic"]
# Sent as the key to an OpenAI-compatible server that wants none (Ollama, vLLM): the
# OpenAI client refuses to start without one.
NO_KEY = "not-needed"


class ModelUnavailable(AdeError):
    """No model configured for the agent, or its endpoint cannot be used: a clear
    message, and ``ade agents run`` exits 2."""

    code = "model_unavailable"


@dataclass(frozen=True)
class Endpoint:
    kind: Kind
    model_name: str
    base_url: str | None
    api_key: str

    def describe(self) -> str:
        """Where requests go, without the key."""
        return f"{self.kind} model {self.model_name!r} at {self.base_url or 'the default URL'}"


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def endpoint_for(
    model_id: str, provider: str | None, env: Mapping[str, str], served_name: str | None = None
) -> Endpoint:
    """The endpoint for catalogue model ``model_id`` of ``provider`` (None: the model is
    not in the catalogue).

    Raises:
        ModelUnavailable: no model, a model not in the catalogue, or a variable missing
            (the message names it).
    """
    if not model_id:
        raise ModelUnavailable("the agent has no model configured: set one (ade agents set)")
    if provider is None:
        raise ModelUnavailable(f"the model {model_id!r} is not in the catalogue")
    name = (served_name or "").strip() or model_id
    if provider.strip().lower() == "anthropic":
        key = _env(env, "ANTHROPIC_API_KEY")
        if key is None:
            raise ModelUnavailable(
                f"the model {model_id!r} is served by Anthropic: set ANTHROPIC_API_KEY"
            )
        return Endpoint("anthropic", name, _env(env, "ANTHROPIC_BASE_URL"), key)
    base_url = _env(env, "OPENAI_BASE_URL")
    key = _env(env, "OPENAI_API_KEY")
    if provider.strip().lower() == "openai":
        if key is None:
            raise ModelUnavailable(
                f"the model {model_id!r} is served by OpenAI: set OPENAI_API_KEY "
                "(or OPENAI_BASE_URL to an OpenAI-compatible server)"
            )
        return Endpoint("openai", name, base_url, key)
    if base_url is None:
        raise ModelUnavailable(
            f"the model {model_id!r} ({provider}) needs an OpenAI-compatible server: set "
            "OPENAI_BASE_URL (Ollama: http://127.0.0.1:11434/v1, vLLM: http://HOST:8000/v1)"
        )
    return Endpoint("openai", name, base_url, key or NO_KEY)
