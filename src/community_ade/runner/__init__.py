"""Agents that run from their stored configuration (``ade agents run NAME --goal …``).

``endpoints`` maps a catalogue model to an LLM endpoint (pure); ``tools`` turns the
agent's enabled catalogue tools into pydantic-ai tools (reads answered at once, changes
proposed through governance with the SDK); ``agent_run`` ties them together under the
agent's lease; ``scripted`` is the demo's documented stand-in for an LLM service.
"""
