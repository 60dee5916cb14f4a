"""Live events (architecture §7): the relay from the audit log and lock streams into one Redis
events stream, and the per-process fan-out to WebSocket clients.

A process that commits audit events and wants them live at once (e.g. a worker) runs
``await run_relay(runtime)`` as a background task; ``ade serve`` runs it in its lifespan.
"""

from community_ade.events.relay import run_relay

__all__ = ["run_relay"]
