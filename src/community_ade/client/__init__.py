"""The Python SDK (DESIGN §14): propose changes, wait for decisions, review, hold leases,
apply approved ``agent.call`` tasks, and ``@governed`` functions.

``AdeClient`` (async) and ``SyncAdeClient`` (blocking) talk to a server's REST API and
events WebSocket, configured by ``ADE_URL`` and ``ADE_TOKEN`` or by arguments. Results
are the server's own Pydantic models; failures are exceptions by problem ``type``
(``community_ade.client.errors``). See docs/sdk.md.
"""

from community_ade.client.aio import AdeClient
from community_ade.client.claims import ApplyFailed, ClaimedTask
from community_ade.client.errors import AdeProblem
from community_ade.client.governed import (
    Cancelled,
    ChangesRequested,
    Expired,
    NotApproved,
    PayloadMismatch,
    Rejected,
    Verdict,
    current_fence,
    governed,
)
from community_ade.client.lease import HeldLease
from community_ade.client.sync import SyncAdeClient, SyncClaim
from community_ade.client.transport import Backoff
from community_ade.client.waiting import WaitTimeout

__all__ = [
    "AdeClient",
    "AdeProblem",
    "ApplyFailed",
    "Backoff",
    "Cancelled",
    "ChangesRequested",
    "ClaimedTask",
    "Expired",
    "HeldLease",
    "NotApproved",
    "PayloadMismatch",
    "Rejected",
    "SyncAdeClient",
    "SyncClaim",
    "Verdict",
    "WaitTimeout",
    "current_fence",
    "governed",
]
