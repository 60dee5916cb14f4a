"""Defaults shared by the SDK's settings, ``ade agents run`` and the coding-agent hook.
Standard library only, importing nothing: the hook (``hooks/gate.py``) imports this and
must start fast, without pydantic."""

from __future__ import annotations

# Where a client finds the server when ``ADE_URL`` is unset: ``ade serve``'s own address.
DEFAULT_URL = "http://127.0.0.1:8000"
