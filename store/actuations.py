"""The actuation outbox: one row per approved change, claimed by exactly one worker."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, JSONType, UTCDateTime, utcnow

ActuationKind = Literal["apply", "revert"]
PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
STALE = "stale"


class Actuation(Base):
    """An approved plan waiting for, or done by, an actuator."""

    __tablename__ = "actuations"
    __table_args__ = (UniqueConstraint("finding_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def idempotency_key(fingerprint: str, finding_id: int, kind: str) -> str:
    """A stable key the receiving side can use to drop a repeated delivery."""
    return hashlib.sha256(f"{finding_id}|{kind}|{fingerprint}".encode()).hexdigest()[:40]


def enqueue(
    session: Session,
    *,
    finding_id: int,
    fingerprint: str,
    kind: ActuationKind,
    plan: dict[str, Any],
    requested_by: str,
) -> Actuation:
    """Write the outbox row inside the approval's transaction (unique per finding and kind)."""
    row = Actuation(
        finding_id=finding_id,
        kind=kind,
        plan=plan,
        status=PENDING,
        requested_by=requested_by,
        attempts=0,
        idempotency_key=idempotency_key(fingerprint, finding_id, kind),
    )
    session.add(row)
    session.flush()
    return row


def claim(
    session: Session, worker: str, lease: timedelta, now: datetime | None = None
) -> Actuation | None:
    """Take the oldest pending row (or one whose worker's lease ran out) for `worker`.

    PostgreSQL skips rows other workers hold (`FOR UPDATE SKIP LOCKED`); SQLite
    transactions are already exclusive (`BEGIN IMMEDIATE`), so one claimer at a
    time is guaranteed there without a row lock.
    """
    now = now or utcnow()
    query = (
        select(Actuation)
        .where(
            or_(
                Actuation.status == PENDING,
                (Actuation.status == RUNNING) & (Actuation.lease_until < now),
            )
        )
        .order_by(Actuation.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = session.scalars(query).first()
    if row is None:
        return None
    row.status, row.claimed_by = RUNNING, worker
    row.lease_until, row.updated_at = now + lease, now
    row.attempts += 1
    return row


def finish(session: Session, row: Actuation, status: str, result: dict[str, Any]) -> None:
    """Record the actuator's outcome."""
    row.status, row.result, row.updated_at = status, result, utcnow()
    row.lease_until = None


def for_finding(session: Session, finding_id: int) -> list[Actuation]:
    """Every actuation of a finding, oldest first."""
    return list(
        session.scalars(
            select(Actuation).where(Actuation.finding_id == finding_id).order_by(Actuation.id)
        )
    )
