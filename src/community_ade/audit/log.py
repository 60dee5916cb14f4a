"""Appending to and reading the ``audit_log`` table, inside the caller's transaction.

Every state transition writes its audit event in the transaction that makes the change
(architecture §3), so this module never commits: it flushes, and the event is kept or lost
with the change it records.

Appends are serialised, so the chain never forks and no caller's transaction fails
because another one appended first. The head must be read under a lock held until
commit, or two transactions would both link to the same head:

- PostgreSQL: a transaction-scoped advisory lock (``pg_advisory_xact_lock``) on one
  fixed key, taken before the head is read, both in one call of the function
  ``ade_audit_lock_head`` (migration 0006). Under the default READ COMMITTED the head
  read after the lock sees the previous holder's committed row.
- SQLite: the database has one writer at a time, and ``db.create_engine`` begins every
  transaction with ``BEGIN IMMEDIATE``, which already holds the write lock. A SQLite
  connection without that (the driver's own transactions begin only at the first
  write) would read the head *before* locking; so a no-op ``UPDATE`` of ``audit_log``
  takes the write lock first, waiting up to the connection's ``busy_timeout``. No read
  snapshot then predates the lock, so there is no busy-snapshot error either.

The lock is held until the transaction ends, so every audited transaction is
serialised from its first append to its commit: append late, after the row locks the
unit of work needs. Taking a row lock *after* appending invites a deadlock with a
transaction that holds that row and waits to append; PostgreSQL then aborts one of the
two, which ``append`` reports as ``Conflict`` when it is the victim.

A transaction that appends several events (submit: submitted, then approved) locks and
reads the head once: while the lock is held nobody else appends, so the head after its
own insert is the row it just wrote, kept in ``session.info``. That note is dropped
whenever any transaction of the session ends, a savepoint included (a savepoint rolled
back takes its rows and its locks with it), so it never outlives the lock it relies on.

The unique ``seq``, ``hash`` and ``prev_hash`` columns remain the backstop: should an
append still meet a newer head (a REPEATABLE READ snapshot taken before the lock, a
writer that bypasses this module) its insert fails and the caller's unit of work gets
``Conflict``, to be retried as a whole. It cannot be retried here: the transaction
belongs to the caller, and its stale snapshot would read the same stale head again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    LargeBinary,
    String,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from community_ade.audit import tree
from community_ade.audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    Actor,
    Anchor,
    ChainReport,
    ChainVerifier,
    canonical,
    iso_utc,
    normalise,
)
from community_ade.errors import Conflict, InvalidInput, ServiceUnavailable
from community_ade.storage.commit_signal import CommitSignal
from community_ade.storage.models import AuditEvent, AuditTreeNode, utcnow

# The first 8 bytes of sha256(b"community_ade.audit_log") as a signed bigint: one key
# that no other advisory lock of ours uses.
PG_LOCK_KEY = 7987223374106975998

MAX_LIST_LIMIT = 1000
_COLUMNS = tuple(getattr(AuditEvent, name) for name in (*HASHED_FIELDS, "hash"))
# SQLSTATEs of a transaction that lost a race: unique_violation, serialization_failure,
# deadlock_detected (a row lock taken after the append lock, in the other order elsewhere).
_RACE_SQLSTATES = {"23505", "40001", "40P01"}
# Built once: every audited transaction sends them.
_PG_LOCK_HEAD = text("SELECT head_seq, head_hash FROM ade_audit_lock_head(:key)").bindparams(
    key=PG_LOCK_KEY
)
_HEAD = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
_INSERT = insert(AuditEvent.metadata.tables[AuditEvent.__tablename__])
# PostgreSQL writes the row and its tree nodes in one statement (the row's INSERT as a
# data-modifying CTE): one round trip per append, not two. bench/audit.py measured the
# two statements at 1.24× the chain alone per transaction, this at about 1.06×.
_ROW = (*HASHED_FIELDS, "hash")
_PG_INSERT_WITH_NODES = text(
    f"WITH audit_row AS (INSERT INTO {AuditEvent.__tablename__} ({', '.join(_ROW)}) "
    f"VALUES ({', '.join(':' + name for name in _ROW)})) "
    f"INSERT INTO {AuditTreeNode.__tablename__} (level, idx, hash) SELECT * FROM unnest("
    "CAST(:levels AS integer[]), CAST(:idxs AS bigint[]), CAST(:hashes AS bytea[]))"
).bindparams(
    *(bindparam(name, type_=AuditEvent.__table__.c[name].type) for name in _ROW),
    bindparam("levels", type_=ARRAY(Integer)),
    bindparam("idxs", type_=ARRAY(BigInteger)),
    bindparam("hashes", type_=ARRAY(LargeBinary)),
)
# session.info key: (seq, hash) of the head this transaction wrote, under the lock it holds.
_OWN_HEAD = "ade.audit_head"
APPENDED = CommitSignal("ade.audit_appended")
"""Set once the session's transaction has appended an event: the events relay of this
process wakes after such a commit."""


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, _transaction: SessionTransaction) -> None:
    session.info.pop(_OWN_HEAD, None)


def _width(column: str) -> int:
    """The column's declared length, so validation follows the model."""
    column_type = AuditEvent.__table__.c[column].type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"audit_log.{column} is not a String of bounded length")
    return column_type.length


_WIDTHS = {name: _width(name) for name in ("type", "actor_id", "subject")}


def _check_text(name: str, value: str) -> None:
    if not value:
        raise InvalidInput(f"an audit event needs a {name.replace('_', ' ')}")
    normalise(value, name)  # refuses NUL and invalid Unicode, like in data
    if len(value) > _WIDTHS[name]:
        raise InvalidInput(f"audit {name.replace('_', ' ')} longer than {_WIDTHS[name]}")


async def _lock_and_read_head(session: AsyncSession) -> tuple[int, str] | None:
    """Hold the audit log's append lock until this transaction ends (see module doc) and
    read the head under it: (seq, hash) of the newest row, None for an empty log."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        seq, hash = (await session.execute(_PG_LOCK_HEAD)).one()
        return None if seq is None else (seq, hash)
    if dialect == "sqlite":
        table = AuditEvent.__tablename__
        try:
            await session.execute(text(f"UPDATE {table} SET seq = seq WHERE seq IS NULL"))
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise ServiceUnavailable(
                    "the database stayed locked by another writer longer than its busy "
                    "timeout; retry"
                ) from exc
            raise
    return await _read_head(session)


async def append(
    session: AsyncSession,
    *,
    type: str,
    actor: Actor,
    subject: str,
    data: Mapping[str, Any],
) -> AuditEvent:
    """Add one event linked to the newest row, in the caller's transaction (flushed, not
    committed). ``data`` is stored normalised (see ``chain.normalise``): the returned
    row holds exactly what was hashed."""
    _check_text("type", type)
    _check_text("actor_id", actor.id)
    _check_text("subject", subject)
    if not isinstance(data, Mapping):
        raise InvalidInput("audit data must be a JSON object")
    plain: dict[str, Any] = normalise(data)
    # The caller's pending changes go first, so that their errors stay theirs.
    await session.flush()
    try:
        head: tuple[int, str] | None = session.info.get(_OWN_HEAD)
        if head is None:
            head = await _lock_and_read_head(session)
        event = await _insert_after(session, head, type, actor, subject, plain)
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError) or _sqlstate(exc) in _RACE_SQLSTATES:
            raise Conflict(
                "this transaction lost a race for the audit log (a newer head, or a "
                "deadlock with another transaction); retry the whole unit of work"
            ) from exc
        raise
    return event


async def _read_head(session: AsyncSession) -> tuple[int, str] | None:
    """(seq, hash) of the newest row, None for an empty log; read under the lock (SQLite)."""
    head = (await session.execute(_HEAD)).first()
    return None if head is None else (head.seq, head.hash)


async def _insert_after(
    session: AsyncSession,
    head: tuple[int, str] | None,
    type: str,
    actor: Actor,
    subject: str,
    data: dict[str, Any],
) -> AuditEvent:
    fields: dict[str, Any] = {
        "seq": 1 if head is None else head[0] + 1,
        "ts": utcnow(),
        "type": type,
        "actor_kind": actor.kind,
        "actor_id": actor.id,
        "via_delegation": actor.via_delegation,
        "subject": subject,
        "data": data,
        "prev_hash": GENESIS if head is None else head[1],
    }
    entry = canonical(fields)
    fields["hash"] = hashlib.sha256(entry).hexdigest()
    nodes = await tree.extend(session, (fields["seq"], fields["hash"]), entry, head)
    await _write(session, fields, nodes)
    session.info[_OWN_HEAD] = (fields["seq"], fields["hash"])
    APPENDED.mark(session)
    return AuditEvent(**fields)  # what was written (not attached to the session)


async def _write(
    session: AsyncSession, fields: dict[str, Any], nodes: list[tuple[int, int, bytes]]
) -> None:
    """The row and its tree nodes. Core INSERTs: the row is written once and never
    changed, so the ORM's unit of work would only add cost to every transition."""
    if session.get_bind().dialect.name == "postgresql":
        levels, idxs, hashes = (list(column) for column in zip(*nodes, strict=True))
        params = {**fields, "levels": levels, "idxs": idxs, "hashes": hashes}
        await session.execute(_PG_INSERT_WITH_NODES, params)
        return
    await session.execute(_INSERT, fields)
    await session.execute(
        tree.NODES_INSERT, [{"level": lv, "idx": i, "hash": h} for lv, i, h in nodes]
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code if isinstance(code, str) else None


async def verify_log(
    session: AsyncSession, *, batch: int = 1000, anchor: Anchor | None = None
) -> ChainReport:
    """Verify the whole chain, reading ``batch`` rows at a time in seq order (plain rows,
    not ORM objects, so memory stays flat however long the log).

    A row the database cannot even decode (on SQLite anything can be written into a
    column) is reported as the break, at its seq, instead of raising. All batches run in
    the caller's transaction: give it a session of ``db.snapshot_sessions`` so they see
    one snapshot without holding up writers (a SQLite session of the ordinary kind holds
    the write lock from ``BEGIN IMMEDIATE`` until it ends).
    """
    if batch < 1:
        raise InvalidInput("batch must be at least 1")
    verifier = ChainVerifier(anchor=anchor)
    after: int | None = None
    while True:
        query = select(*_COLUMNS).order_by(AuditEvent.seq).limit(batch)
        if after is not None:
            query = query.where(AuditEvent.seq > after)
        try:
            rows = [dict(row._mapping) for row in await session.execute(query)]
        except (ValueError, TypeError):
            await _pin_unreadable(session, verifier, after, batch)
            break
        if not verifier.feed(rows) or len(rows) < batch:
            break
        after = rows[-1]["seq"]
    return verifier.finish()


async def _pin_unreadable(
    session: AsyncSession, verifier: ChainVerifier, after: int | None, batch: int
) -> None:
    """Feed the batch that failed to decode row by row, to name the unreadable seq."""
    query = select(AuditEvent.seq).order_by(AuditEvent.seq).limit(batch)
    if after is not None:
        query = query.where(AuditEvent.seq > after)
    for seq in (await session.scalars(query)).all():
        try:
            row = (await session.execute(select(*_COLUMNS).where(AuditEvent.seq == seq))).one()
        except (ValueError, TypeError) as exc:
            verifier.reject(seq, f"the row cannot be read: {exc}")
            return
        if not verifier.feed([dict(row._mapping)]):
            return


async def list_events(
    session: AsyncSession,
    *,
    type: str | None = None,
    subject: str | None = None,
    actor_id: str | None = None,
    since_seq: int | None = None,
    limit: int = 50,
    before_seq: int | None = None,
) -> list[AuditEvent]:
    """Events matching every filter given, newest first.

    Keyset pagination: pass the last seq of a page as ``before_seq`` for the next one
    (stable while new events arrive, unlike offsets); ``since_seq`` keeps only events
    newer than a seq the caller has already seen.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if type is not None:
        query = query.where(AuditEvent.type == type)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if since_seq is not None:
        query = query.where(AuditEvent.seq > since_seq)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    return list((await session.scalars(query)).all())


def envelope(event: AuditEvent) -> dict[str, Any]:
    """The architecture §7 event envelope of a row (JSON-ready), with the chain's hashes so
    that a reader can re-verify what it was given."""
    return {
        "seq": event.seq,
        "ts": iso_utc(event.ts),
        "type": event.type,
        "actor": {
            "kind": event.actor_kind,
            "id": event.actor_id,
            "via_delegation": event.via_delegation,
        },
        "subject": event.subject,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
