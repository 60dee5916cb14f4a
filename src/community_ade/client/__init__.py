"""The Python SDK (DESIGN §14): propose changes, wait for decisions, review, hold leases.

``AdeClient`` (async) and ``SyncAdeClient`` (blocking) talk to a server's REST API and
events WebSocket, configured by ``ADE_URL`` and ``ADE_TOKEN`` or by arguments. Results
are the server's own Pydantic models; failures are exceptions by problem ``type``
(``community_ade.client.errors``). See docs/sdk.md.
"""

from community_ade.client.aio import AdeClient
from community_ade.client.errors import AdeProblem
from community_ade.client.lease import HeldLease
from community_ade.client.sync import SyncAdeClient
from community_ade.client.transport import Backoff
from community_ade.client.waiting import WaitTimeout

__all__ = ["AdeClient", "AdeProblem", "Backoff", "HeldLease", "SyncAdeClient", "WaitTimeout"]
