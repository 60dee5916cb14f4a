"""The tamper-evident audit log (architecture §7): ``chain`` is the pure hash chain, ``log``
appends to and reads the ``audit_log`` table inside the caller's transaction.

Only the pure names are re-exported, so importing the package pulls in no database code.
"""

from community_ade.audit.chain import GENESIS, Actor, Anchor, ChainReport

__all__ = ["GENESIS", "Actor", "Anchor", "ChainReport"]
