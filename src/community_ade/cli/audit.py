"""``ade audit``: the hash chain and the transparency log (docs/audit.md). The commands
that read the database are in ``audit_log``; those an auditor runs elsewhere with only
the log's public key, in ``audit_proofs``, which starts without the database code."""

from __future__ import annotations

from community_ade.cli.lazy import Commands, lazy_app

COMMANDS: Commands = {
    "verify": (
        "audit_log",
        "verify",
        "Re-hash every event and check each links to the one before, then check the "
        "Merkle tree against the newest signed checkpoint (exit 1 if either is broken).",
    ),
    "list": ("audit_log", "list_", "Show audit events, newest first."),
    "key": (
        "audit_log",
        "key",
        "Print the public key that signs this deployment's checkpoints (C2SP vkey).",
    ),
    "checkpoint": (
        "audit_log",
        "checkpoint",
        "Sign a checkpoint of the audit log now and print it.",
    ),
    "verify-receipt": (
        "audit_proofs",
        "verify_receipt",
        "Check receipts offline: each entry is in the log whose checkpoint the key signed "
        "(exit 1 if any is not).",
    ),
    "witness": (
        "audit_proofs",
        "witness",
        "Fetch the newest checkpoint, check that it extends the last one seen (exit 1 on a "
        "split view or rewritten history), and keep a cosigned copy in --state.",
    ),
}

app = lazy_app(COMMANDS, help="Verify and read the tamper-evident audit log.")
