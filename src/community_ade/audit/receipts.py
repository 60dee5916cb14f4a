"""Checking a receipt offline (docs/audit.md): pure, so ``ade audit verify-receipt``
needs neither a server nor the database code. Receipts are made by ``checkpoints``."""

from __future__ import annotations

from typing import Any

from community_ade.audit import notes
from community_ade.audit.chain import canonical
from community_ade.errors import AdeError


def check_receipt(receipt: dict[str, Any], verifier: notes.Verifier) -> notes.Checkpoint:
    """Verify a receipt offline: its entry's canonical bytes are the leaf its proof
    places in a checkpoint ``verifier`` signed. Raises ``notes.NoteError`` or
    ``merkle.ProofError`` (both ``ValueError``) with what is wrong."""
    try:
        entry = receipt["entry"]
        proof = notes.Receipt.parse(receipt["proof"])
    except (KeyError, TypeError):
        raise notes.NoteError("a receipt has an entry and a proof") from None
    if not isinstance(entry, dict):
        raise notes.NoteError("the receipt's entry is not an object")
    if entry.get("seq") != proof.index + 1:
        raise notes.NoteError("the entry's seq is not the proof's index + 1")
    try:
        leaf = canonical(entry)
    except AdeError as exc:
        raise notes.NoteError(f"the entry is not an audit row: {exc.message}") from None
    return proof.verify(leaf, verifier)
