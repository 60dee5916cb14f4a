"""Signed notes, verifier keys, checkpoints, cosignatures and tlog-proof receipts."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from community_ade.audit import merkle, notes

ORIGIN = "example.com/log"


def signer(name: str = ORIGIN) -> notes.Signer:
    return notes.Signer(name, Ed25519PrivateKey.generate())


def test_a_checkpoint_signs_and_verifies() -> None:
    log = signer()
    text = notes.Checkpoint(ORIGIN, 7, bytes(range(32))).text()
    note = log.sign(text)
    assert note.startswith(f"{ORIGIN}\n7\n")
    assert "\n\n\u2014 example.com/log " in note
    checkpoint = notes.verified_checkpoint(note, log.verifier)
    assert (checkpoint.size, checkpoint.root) == (7, bytes(range(32)))


def test_verifier_keys_round_trip_and_check_their_id() -> None:
    verifier = signer().verifier
    encoded = verifier.encode()
    assert notes.Verifier.parse(encoded) == verifier
    name, _key_id, key = encoded.split("+", 2)
    with pytest.raises(notes.NoteError, match="id does not match"):
        notes.Verifier.parse(f"{name}+00000000+{key}")
    with pytest.raises(notes.NoteError):
        notes.Verifier.parse("no-plus-signs")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda n: n.replace("\n7\n", "\n8\n", 1),  # another size
        lambda n: n.replace(ORIGIN, "evil.example/log", 1),  # another origin
        lambda n: n[: n.index("\n\n") + 2],  # no signature
        lambda n: n.replace("\n\n", "\n", 1),  # not a signed note
    ],
)
def test_a_changed_note_does_not_verify(tamper: object) -> None:
    log = signer()
    note = log.sign(notes.Checkpoint(ORIGIN, 7, bytes(32)).text())
    with pytest.raises(notes.NoteError):
        notes.verified_checkpoint(tamper(note), log.verifier)  # type: ignore[operator]


def test_another_key_of_the_same_name_is_refused() -> None:
    note = signer().sign(notes.Checkpoint(ORIGIN, 1, bytes(32)).text())
    with pytest.raises(notes.NoteError, match="not signed by"):
        notes.verified_checkpoint(note, signer().verifier)


def test_a_witness_cosignature_verifies_and_binds_the_checkpoint() -> None:
    log, witness = signer(), signer("witness.example")
    note = log.sign(notes.Checkpoint(ORIGIN, 3, bytes(32)).text())
    cosigned = note + witness.cosign(note, 1_700_000_000)
    assert notes.verified_checkpoint(cosigned, log.verifier).size == 3  # still the log's
    assert notes.cosigned_by(cosigned, witness.verifier) == 1_700_000_000
    other = log.sign(notes.Checkpoint(ORIGIN, 4, bytes(32)).text())
    moved = other + cosigned[len(note) :]  # the cosignature moved onto another checkpoint
    with pytest.raises(notes.NoteError):
        notes.cosigned_by(moved, witness.verifier)


def test_a_receipt_round_trips_and_checks_the_entry() -> None:
    entries = [f"entry {i}".encode() for i in range(5)]
    nodes: dict[tuple[int, int], bytes] = {}
    for size, entry in enumerate(entries):
        for level, index, value in merkle.new_nodes(
            size, merkle.leaf_hash(entry), merkle.lookup(nodes)
        ):
            nodes[(level, index)] = value
    log = signer()
    root = merkle.root(5, merkle.lookup(nodes))
    note = log.sign(notes.Checkpoint(ORIGIN, 5, root).text())
    text = notes.proof_text(3, merkle.inclusion_proof(3, 5, merkle.lookup(nodes)), note)
    receipt = notes.Receipt.parse(text)
    assert receipt.index == 3
    assert receipt.verify(entries[3], log.verifier).size == 5
    with pytest.raises(merkle.ProofError):
        receipt.verify(entries[2], log.verifier)
    with pytest.raises(notes.NoteError):
        notes.Receipt.parse(text.replace(notes.PROOF_HEADER, "something/else"))
