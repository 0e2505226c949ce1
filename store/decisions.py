"""Decisions on findings: one conditional state change, audited in the same transaction.

Exactly one decision wins however many arrive at once: the state change is a
single ``UPDATE findings … WHERE id = :id AND status = 'open'``. On PostgreSQL
a concurrent update waits for the row lock and then re-checks the condition
against the committed row (READ COMMITTED); on SQLite every transaction
begins with ``BEGIN IMMEDIATE`` (store.db), so writers run one at a time.
Either way only one statement sees ``status = 'open'``; the others update
nothing and learn who won.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from store.audit import AuditEntry, append
from store.db import utcnow
from store.findings import APPROVED, DISMISSED, OPEN, SNOOZED, FindingRow, figures
from store.signing import Signer

Verdict = Literal["approve", "dismiss", "snooze"]
Outcome = Literal["decided", "already_decided", "not_found"]

STATUS_OF: dict[Verdict, str] = {"approve": APPROVED, "dismiss": DISMISSED, "snooze": SNOOZED}
ACTION_OF: dict[Verdict, str] = {
    "approve": "finding.approved",
    "dismiss": "finding.dismissed",
    "snooze": "finding.snoozed",
}
REFUSED = "decision.refused"


@dataclass(frozen=True)
class DecisionRequest:
    """Who asks for which verdict on which finding, and from where.

    `actor` is the Slack user id (`U123`) or `cli:<user>`; `origin` holds the
    Slack user, team, channel and message ts when the request came from Slack.
    """

    finding_id: int
    verdict: Verdict
    actor: str
    reason: str | None = None
    snooze_until: datetime | None = None
    origin: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionResult:
    """What became of a request: decided by it, already decided by someone, or no finding."""

    outcome: Outcome
    finding: FindingRow | None
    audit_seq: int | None = None

    @property
    def won(self) -> bool:
        """True when this request made the decision."""
        return self.outcome == "decided"


def _origin(origin: Mapping[str, str | None]) -> dict[str, str | None]:
    return {key: origin.get(key) for key in ("slack_user", "team", "channel", "message_ts")}


def decide(
    session: Session, signer: Signer, request: DecisionRequest, *, now: datetime | None = None
) -> DecisionResult:
    """Apply a verdict to an open finding inside the caller's transaction.

    The winner's audit record (`finding.approved`, `finding.dismissed` or
    `finding.snoozed`) commits or rolls back with the state change.
    """
    now = now or utcnow()
    status = STATUS_OF[request.verdict]
    statement = (
        update(FindingRow)
        .where(FindingRow.id == request.finding_id, FindingRow.status == OPEN)
        .values(
            status=status,
            decided_by=request.actor,
            decided_at=now,
            decided_usd=FindingRow.monthly_usd,
            decision_reason=request.reason,
            snoozed_until=request.snooze_until if request.verdict == "snooze" else None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    row = session.get(FindingRow, request.finding_id, populate_existing=True)
    if row is None:
        return DecisionResult("not_found", None)
    if result.rowcount != 1:
        return DecisionResult("already_decided", row)
    entry = append(
        session,
        signer,
        actor=request.actor,
        action=ACTION_OF[request.verdict],
        subject=f"finding:{row.public_id}",
        body={
            **figures(row),
            **_origin(request.origin),
            "reason": request.reason,
            "snoozed_until": row.snoozed_until.isoformat() if row.snoozed_until else None,
            "decided_usd": str(row.decided_usd),
        },
    )
    row.audit_seq = entry.seq
    return DecisionResult("decided", row, entry.seq)


def record_refusal(
    session: Session,
    signer: Signer,
    request: DecisionRequest,
    why: str,
) -> AuditEntry:
    """Audit an attempt to decide by someone who may not (`decision.refused`)."""
    return append(
        session,
        signer,
        actor=request.actor,
        action=REFUSED,
        subject=f"finding:F-{request.finding_id}",
        body={
            "finding": f"F-{request.finding_id}",
            "verdict": request.verdict,
            "why": why,
            **_origin(request.origin),
        },
    )
