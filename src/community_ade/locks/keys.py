"""Redis key names of the lock manager. Per-domain keys live under one hash tag; the
scripts derive the rest from the prefix (see ``lua/_lib.lua``)."""

from __future__ import annotations

DOMAINS = "ade:lock:domains"  # SET of lock domains ever used, for cross-domain listings


def domain_prefix(domain: str) -> str:
    return f"ade:lock:{{{domain}}}:"


def events(domain: str) -> str:
    return domain_prefix(domain) + "events"


def wake_channel(client_id: str) -> str:
    return f"ade:lock:wake:{client_id}"
