"""``ade audit verify-receipt | witness``: checking the transparency log from outside
(docs/audit.md). An auditor runs them elsewhere, with the log's public key: they import
no database code, so they start fast."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from community_ade.audit import merkle, notes
from community_ade.audit.keys import ed25519_key
from community_ade.audit.receipts import check_receipt
from community_ade.cli.output import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, err_console, say

WITNESS_KEY = "witness.key"
PINNED_KEY = "log.vkey"
LAST = "checkpoint.note"


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _verifier(value: str) -> notes.Verifier:
    """A verifier key given as text, or as the path of a file holding it."""
    path = Path(value)
    text = path.read_text() if path.is_file() else value
    try:
        return notes.Verifier.parse(text)
    except notes.NoteError as exc:
        raise _fail(f"--key: {exc}", EXIT_USAGE) from None


def verify_receipt(
    file: Annotated[Path, typer.Argument(help="A receipt (JSON), or a list of them.")],
    key: Annotated[
        str, typer.Option("--key", help="The log's verifier key, or a file holding it.")
    ],
) -> None:
    """Check receipts offline: each entry is in the log whose checkpoint the key signed
    (exit 1 if any is not)."""
    verifier = _verifier(key)
    try:
        loaded: Any = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read {file} as JSON: {exc}", EXIT_USAGE) from None
    receipts = loaded if isinstance(loaded, list) else [loaded]
    bad = 0
    for receipt in receipts:
        entry = receipt.get("entry", {}) if isinstance(receipt, dict) else {}
        what = f"entry {entry.get('seq', '?')} ({entry.get('type', '?')})"
        try:
            checked = check_receipt(receipt, verifier)
        except ValueError as exc:
            bad += 1
            say(f"INVALID {what}: {exc}", "red")
            continue
        say(f"valid {what}: in {checked.origin} at size {checked.size}", "green")
    if bad:
        raise typer.Exit(EXIT_FAILED)


def _get(client: httpx.Client, path: str, **params: int) -> Any:
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise _fail(f"{client.base_url}{path}: {exc}", EXIT_UNAVAILABLE) from None
    if response.status_code != 200:
        raise _fail(f"{path} answered {response.status_code}: {response.text[:300]}")
    return response.json() if path.startswith("/api/") else response.text


def witness(
    url: Annotated[str, typer.Option("--url", help="The witnessed server, e.g. http://h:8000")],
    state: Annotated[Path, typer.Option("--state", help="This witness's own directory.")],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The log's verifier key (or file). Default: the key pinned in --state, "
            "else the server's own, pinned on first use.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="This witness's key name.")] = "witness",
) -> None:
    """Fetch the newest checkpoint, check that it extends the last one seen (exit 1 on a
    split view or rewritten history), and keep a cosigned copy in --state."""
    state.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=url.rstrip("/"), timeout=30, follow_redirects=False) as client:
        pinned_file = state / PINNED_KEY
        if key is not None:
            log_key = _verifier(key)
        elif pinned_file.exists():
            log_key = _verifier(str(pinned_file))
        else:
            log_key = _verifier(_get(client, "/.well-known/ade-audit-key").strip())
        if pinned_file.exists() and _verifier(str(pinned_file)) != log_key:
            raise _fail(f"the log key differs from the one pinned in {pinned_file}")
        pinned_file.write_text(log_key.encode() + "\n")
        fetched = _get(client, "/api/v1/audit/checkpoint")
        try:
            new = notes.verified_checkpoint(fetched["note"], log_key)
        except (notes.NoteError, KeyError, TypeError) as exc:
            raise _fail(f"the server's checkpoint does not verify: {exc}") from None
        last_file = state / LAST
        if last_file.exists():
            old = notes.verified_checkpoint(last_file.read_text(), log_key)
            _consistent(client, old, new)
        signer = _witness_signer(state, name)
        cosigned = fetched["note"] + signer.cosign(fetched["note"], int(time.time()))
        (state / "cosigned").mkdir(exist_ok=True)
        (state / "cosigned" / f"{new.size}.note").write_text(cosigned)
        last_file.write_text(fetched["note"])
    say(f"consistent: {new.origin} at size {new.size}; cosigned copy in {state / 'cosigned'}")


def _consistent(client: httpx.Client, old: notes.Checkpoint, new: notes.Checkpoint) -> None:
    if new.size < old.size:
        raise _fail(f"ROLLED BACK: the log now has {new.size} entries, {old.size} were seen before")
    if new.size == old.size:
        if new.root != old.root:
            raise _fail(f"SPLIT VIEW: two different roots for size {new.size}")
        return
    proof = _get(client, "/api/v1/audit/consistency", **{"from": old.size, "to": new.size})
    try:
        hashes = [notes.unb64(h, "a proof hash") for h in proof["proof"]]
        merkle.verify_consistency(old.size, new.size, old.root, new.root, hashes)
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(
            f"REWRITTEN: the log at {new.size} does not extend the one seen at {old.size}: {exc}"
        ) from None


def _witness_signer(state: Path, name: str) -> notes.Signer:
    return notes.Signer(name, ed25519_key(state / WITNESS_KEY))
