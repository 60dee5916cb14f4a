"""Signed notes, checkpoints, cosignatures and receipts in the C2SP formats, pure.

- ``c2sp.org/signed-note``: a text ending in a newline, a blank line, then signature
  lines ``— <key name> <base64(key id ‖ signature)>``; the key id is the first four
  bytes of ``SHA-256(name ‖ "\\n" ‖ type ‖ public key)``; type 0x01 is Ed25519.
  Verifiers ignore signatures of keys they do not know.
- ``c2sp.org/tlog-checkpoint``: the note text ``<origin>\\n<size>\\n<base64 root>\\n``.
- ``c2sp.org/tlog-cosignature``: a witness signs ``cosignature/v1\\ntime <t>\\n`` ‖
  checkpoint text with its own Ed25519 key (type 0x04; the signature carries ``t``).
- ``c2sp.org/tlog-proof@v1``: a receipt: ``c2sp.org/tlog-proof@v1``, ``index N``, the
  inclusion proof's hashes one per line, a blank line, then the signed checkpoint.

Keys travel as C2SP verifier keys: ``<name>+<hex key id>+<base64(type ‖ public key)>``.
Nothing here touches storage or the network: a receipt checks offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from community_ade.audit import merkle

ED25519 = 0x01
COSIGNATURE = 0x04
DASH = "\u2014"
PROOF_HEADER = "c2sp.org/tlog-proof@v1"
MAX_NOTE_BYTES = 1 << 20


class NoteError(ValueError):
    """A note, checkpoint, key or receipt that is malformed or does not verify."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key (C2SP verifier key)."""

    name: str
    public: bytes
    sig_type: int = ED25519

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public)

    def encode(self) -> str:
        return f"{self.name}+{self.id.hex()}+{_b64(bytes([self.sig_type]) + self.public)}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # the base64 key may hold "+" itself
        if len(parts) != 3 or not parts[0]:
            raise NoteError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        raw = unb64(encoded, "the verifier key")
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE):
            raise NoteError("only Ed25519 verifier keys are supported")
        verifier = cls(name, raw[1:], raw[0])
        if verifier.id.hex() != hex_id.lower():
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def check(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, _raw(self.key.public_key()))

    def sign(self, text: str) -> str:
        """``text`` (ending in a newline) as a signed note with this key's signature."""
        signature = self.key.sign(text.encode())
        return f"{text}\n{DASH} {self.name} {_b64(self.verifier.id + signature)}\n"

    def cosign(self, note: str, timestamp: int) -> str:
        """A witness's cosignature line (tlog-cosignature) on a checkpoint note."""
        text, _ = split_note(note)
        message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
        verifier = Verifier(self.name, _raw(self.key.public_key()), COSIGNATURE)
        payload = verifier.id + struct.pack(">Q", timestamp) + self.key.sign(message)
        return f"{DASH} {self.name} {_b64(payload)}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The note's text and its signature lines as (key name, decoded bytes)."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError("the note is too large")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("a signed note is text, a blank line, then signature lines")
    text, lines = note[: cut + 1], note[cut + 2 :].splitlines()
    signatures = []
    for line in lines:
        dash, _, rest = line.partition(" ")
        name, _, encoded = rest.partition(" ")
        if dash != DASH or not name or not encoded:
            raise NoteError(f"not a signature line: {line[:80]!r}")
        signatures.append((name, unb64(encoded, "a signature")))
    if not signatures:
        raise NoteError("the note has no signature")
    return text, signatures


def open_note(note: str, verifier: Verifier) -> str:
    """The note's text once ``verifier`` signed it; ``NoteError`` otherwise."""
    text, signatures = split_note(note)
    for name, raw in signatures:
        if name == verifier.name and raw[:4] == verifier.id:
            if verifier.check(text.encode(), raw[4:]):
                return text
            raise NoteError(f"the signature of {verifier.name} does not verify")
    raise NoteError(f"the note is not signed by {verifier.name}")


def cosigned_by(note: str, witness: Verifier) -> int:
    """The timestamp of ``witness``'s valid cosignature on the checkpoint ``note``."""
    text, signatures = split_note(note)
    expected = Verifier(witness.name, witness.public, COSIGNATURE).id
    for name, raw in signatures:
        if name == witness.name and raw[:4] == expected and len(raw) == 4 + 8 + 64:
            (timestamp,) = struct.unpack(">Q", raw[4:12])
            message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
            if Verifier(witness.name, witness.public).check(message, raw[12:]):
                return int(timestamp)
    raise NoteError(f"no valid cosignature of {witness.name}")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or not lines[0]:
            raise NoteError("a checkpoint is origin, size and root, one per line")
        if not lines[1].isdigit() or len(lines[1]) > 20:
            raise NoteError("the checkpoint's size is not a number")
        root = unb64(lines[2], "the checkpoint's root")
        if len(root) != merkle.HASH_SIZE:
            raise NoteError("the checkpoint's root is not a SHA-256 hash")
        return cls(lines[0], int(lines[1]), root)


def verified_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    if checkpoint.origin != verifier.name:
        raise NoteError(f"the checkpoint is of {checkpoint.origin!r}, not {verifier.name!r}")
    return checkpoint


def proof_text(index: int, proof: Sequence[bytes], note: str) -> str:
    """A ``c2sp.org/tlog-proof@v1`` receipt of leaf ``index`` under checkpoint ``note``."""
    hashes = "".join(f"{_b64(h)}\n" for h in proof)
    return f"{PROOF_HEADER}\nindex {index}\n{hashes}\n{note}"


@dataclass(frozen=True)
class Receipt:
    index: int
    proof: tuple[bytes, ...]
    note: str

    @classmethod
    def parse(cls, text: str) -> Receipt:
        head, sep, note = text.partition("\n\n")
        lines = head.split("\n")
        if not sep or len(lines) < 2 or lines[0] != PROOF_HEADER:
            raise NoteError(f"not a {PROOF_HEADER} receipt")
        rest = [line for line in lines[1:] if not line.startswith("extra ")]
        if not rest or not rest[0].startswith("index ") or not rest[0][6:].isdigit():
            raise NoteError("the receipt has no index line")
        proof = tuple(unb64(line, "a proof hash") for line in rest[1:])
        return cls(int(rest[0][6:]), proof, note)

    def verify(self, entry: bytes, verifier: Verifier) -> Checkpoint:
        """Check that ``entry`` is leaf ``index`` of the log whose checkpoint
        ``verifier`` signed; the checkpoint, or ``NoteError``/``merkle.ProofError``."""
        checkpoint = verified_checkpoint(self.note, verifier)
        merkle.verify_inclusion(
            self.index, checkpoint.size, merkle.leaf_hash(entry), self.proof, checkpoint.root
        )
        return checkpoint
