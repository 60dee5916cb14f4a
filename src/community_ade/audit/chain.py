"""The audit log's hash chain, pure (no IO): canonical bytes, row hashes, verification.

Each row's ``hash`` is the sha256 of the canonical JSON of its content *and* of the
previous row's hash, so editing a row breaks its own hash, and deleting, reordering or
splicing in rows breaks the link from the next one (architecture §7). Everything here is
deterministic and free of storage, so the same rules serve ``audit.log`` (which feeds
rows from the database), the API and anyone re-checking an exported log.

The canonical form must survive a round trip through both databases, or a row read
back would no longer match the hash it was written with. PostgreSQL keeps ``data`` as
JSONB, whose numbers are decimals: ``1e16`` comes back as ``10000000000000000`` and
``-0.0`` as ``0.0``. Hence the one number rule: a float with an integral value is the
integer its shortest decimal spells (``50.0`` → ``50``, ``1e16`` → ``10**16``); other
floats keep their shortest round-trip decimal. JSONB also refuses NUL characters, so
text with NUL is refused up front, on every backend alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from community_ade.errors import InvalidInput

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row: there is nothing before it."""

HASHED_FIELDS = (
    "seq",
    "ts",
    "type",
    "actor_kind",
    "actor_id",
    "via_delegation",
    "subject",
    "data",
    "prev_hash",
)
"""What a row's hash covers: every column but the hash itself."""

ActorKind = Literal["human", "agent", "system"]
ACTOR_KINDS: tuple[str, ...] = get_args(ActorKind)


@dataclass(frozen=True)
class Actor:
    """Who caused an event (architecture §7 envelope): a user, an agent, or the system itself
    (sweeps, auto-approval). ``via_delegation`` marks a vote cast for someone else."""

    kind: ActorKind
    id: str
    via_delegation: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise InvalidInput(f"actor kind must be one of {', '.join(ACTOR_KINDS)}")
        if not self.id:
            raise InvalidInput("an actor needs an id")


# The actor of sweeps and policy decisions (auto-approval, accounting outcomes).
SYSTEM = Actor(kind="system", id="system")


def iso_utc(value: datetime) -> str:
    """``2026-01-02T03:04:05.000006Z``: UTC, always with microseconds (the precision both
    databases keep), so a timestamp has exactly one spelling."""
    if value.tzinfo is None:
        raise InvalidInput("naive datetime: audit timestamps must be timezone-aware")
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput(f"datetime out of range: {value!r}") from exc
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _text(value: str, path: str) -> str:
    if "\x00" in value:
        raise InvalidInput(f"{path}: text may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{path}: text is not valid Unicode ({exc.reason})") from None
    return str.__str__(value)  # a plain str, also for str enums


def _number(value: float, path: str) -> int | float:
    if not math.isfinite(value):
        raise InvalidInput(f"{path}: {value} is not a JSON number")
    if value.is_integer():
        return int(Decimal(repr(value)))
    return float(value)


def normalise(value: Any, path: str = "data") -> Any:
    """``value`` as plain JSON values (dict, list, str, int, float, bool, None) in the
    form the canonical bytes and both databases agree on.

    UUIDs become strings and aware datetimes ISO-8601 UTC strings; anything else that
    JSON cannot hold faithfully (sets, bytes, NaN, non-string keys, NUL) is refused with
    ``InvalidInput`` instead of being guessed at.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(value, path)
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{path}: keys must be strings, not {type(key).__name__}")
            out[_text(key, path)] = normalise(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [normalise(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidInput(f"{path}: a {type(value).__name__} is not a JSON value")


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers: the ``HASHED_FIELDS`` of ``fields`` (other keys,
    such as ``hash``, are ignored) as JSON with sorted keys, no whitespace, UTF-8."""
    missing = [name for name in HASHED_FIELDS if name not in fields]
    if missing:
        raise InvalidInput(f"cannot hash an audit row without {', '.join(missing)}")
    document = {name: normalise(fields[name], name) for name in HASHED_FIELDS}
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def compute_hash(fields: Mapping[str, Any]) -> str:
    """sha256 (hex) of ``canonical(fields)``."""
    return hashlib.sha256(canonical(fields)).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a verification.

    ``checked`` counts the rows that passed before the first problem (all of them when
    ``ok``); ``head_seq``/``head_hash`` name the last good row (``0``/``GENESIS`` for an
    empty log). Record the head somewhere else to detect later truncation: a chain is
    still a valid chain with its newest rows cut off, so only an anchor catches that.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None
    head_seq: int = 0
    head_hash: str = GENESIS


@dataclass(frozen=True)
class Anchor:
    """A (seq, hash) pair recorded earlier (e.g. printed by ``ade audit verify``): the
    chain must still reach ``seq`` and hold exactly ``hash`` there."""

    seq: int
    hash: str


class ChainVerifier:
    """Checks rows fed in seq order, in as many batches as the caller likes, keeping only
    the last good row's seq and hash (O(1) state).

    Start after a checkpoint by passing ``after_seq``/``after_hash`` (a row already
    verified); the default starts at the genesis.
    """

    def __init__(
        self,
        *,
        after_seq: int = 0,
        after_hash: str = GENESIS,
        anchor: Anchor | None = None,
    ) -> None:
        self._seq = after_seq
        self._hash = after_hash
        self._anchor = anchor
        self._checked = 0
        self._bad_seq: int | None = None
        self._problem: str | None = None

    @property
    def broken(self) -> bool:
        return self._problem is not None

    def feed(self, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Check ``rows``; stop reading them at the first problem. False once broken."""
        if self.broken:
            return False
        for row in rows:
            problem = self._check(row)
            if problem is not None:
                self.reject(row.get("seq"), problem)
                return False
            self._seq, self._hash = row["seq"], row["hash"]
            self._checked += 1
        return True

    def reject(self, seq: Any, problem: str) -> None:
        """Record a problem found outside ``feed`` (e.g. a row the database could not
        even decode); the first problem recorded wins."""
        if not self.broken:
            self._bad_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
            self._problem = problem

    def finish(self) -> ChainReport:
        """The report once every row has been fed (checks the anchor was reached)."""
        anchor = self._anchor
        if not self.broken and anchor is not None and self._seq < anchor.seq:
            self.reject(
                self._seq + 1,
                f"the chain ends at seq {self._seq} but the anchor is at seq {anchor.seq}: "
                "rows were deleted from its end",
            )
        return ChainReport(
            ok=not self.broken,
            checked=self._checked,
            first_bad_seq=self._bad_seq,
            problem=self._problem,
            head_seq=self._seq,
            head_hash=self._hash,
        )

    def _check(self, row: Mapping[str, Any]) -> str | None:
        seq = row.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return f"seq {seq!r} is not an integer"
        if seq != self._seq + 1:
            why = (
                "rows out of order, repeated or inserted"
                if seq <= self._seq
                else "rows deleted or renumbered"
            )
            return f"seq {seq} where seq {self._seq + 1} was expected: {why}"
        try:
            expected = compute_hash(row)
        except InvalidInput as exc:
            return f"the row cannot be hashed: {exc.message}"
        if row.get("hash") != expected:
            return "the row's content does not match its hash: the row was edited or moved"
        if row["prev_hash"] != self._hash:
            before = "the genesis hash" if self._seq == 0 else f"the hash of seq {self._seq}"
            return f"prev_hash is not {before}: a row was deleted, inserted or reordered"
        anchor = self._anchor
        if anchor is not None and seq == anchor.seq and row["hash"] != anchor.hash:
            return f"the hash of seq {seq} differs from the anchor: the chain was rewritten"
        return None


def verify(rows: Iterable[Mapping[str, Any]], *, anchor: Anchor | None = None) -> ChainReport:
    """Verify a whole chain from the genesis; ``rows`` in seq order, read lazily."""
    verifier = ChainVerifier(anchor=anchor)
    verifier.feed(rows)
    return verifier.finish()
