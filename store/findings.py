"""Findings and their lifecycle: one row per fingerprint, updated in place, audited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Numeric, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine.findings import Claim, Recommendation
from engine.findings import Finding as EngineFinding
from store.audit import append
from store.db import Base, JSONType, UTCDateTime, utcnow
from store.signing import Signer

OPEN = "open"
APPROVED = "approved"
DISMISSED = "dismissed"
SNOOZED = "snoozed"
RESOLVED = "resolved"
STATUSES = (
    OPEN,
    APPROVED,
    DISMISSED,
    SNOOZED,
    "actuating",
    "actuated",
    "failed",
    "stale",
    RESOLVED,
)
# States a finding leaves when its condition disappears; decided ones keep their state.
_RESOLVABLE = (OPEN, DISMISSED, SNOOZED)
_QUIET = (DISMISSED, SNOOZED)
ID_PREFIX = "F-"


class FindingRow(Base):
    """A stored finding."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(700), unique=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[str] = mapped_column(String(8))
    cluster: Mapped[str | None] = mapped_column(String(63), index=True, nullable=True)
    subject: Mapped[str] = mapped_column(String(600))
    monthly_usd: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    kind: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), index=True)
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    recommendation: Mapped[dict[str, Any]] = mapped_column(JSONType)
    claims: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where the finding's Slack message lives, once posted.
    slack_channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    slack_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # What approval does (engine.plans.ActionPlan as JSON) and what came of it.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    actuated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    realised_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    # The audit record of the finding's latest event, quoted in Slack messages.
    audit_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)

    @property
    def public_id(self) -> str:
        """The id operators type: `F-12`."""
        return f"{ID_PREFIX}{self.id}"

    def to_engine(self) -> EngineFinding:
        """The stored finding as the engine's type (evidence left out), e.g. for totals."""
        return EngineFinding(
            rule=self.rule,
            level=self.level,
            cluster=self.cluster,
            subject=self.subject,
            monthly_usd=float(self.monthly_usd),
            kind=self.kind,
            confidence=self.confidence,
            evidence={},
            recommendation=Recommendation.model_validate(self.recommendation),
            claims=[Claim.model_validate(claim) for claim in self.claims],
        )

    def as_json(self) -> dict[str, Any]:
        """The SPEC §4.5 shape of `steward findings --json`."""
        return {
            "id": self.public_id,
            "rule": self.rule,
            "level": self.level,
            "cluster": self.cluster,
            "subject": self.subject,
            "monthly_usd": float(self.monthly_usd),
            "kind": self.kind,
            "confidence": self.confidence,
            "status": self.status,
            "summary": self.summary,
            "evidence": self.evidence,
            "recommendation": self.recommendation,
            "plan": self.plan,
            "outcome": self.outcome,
            "realised_usd": float(self.realised_usd) if self.realised_usd is not None else None,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decision_reason": self.decision_reason,
            "snoozed_until": self.snoozed_until.isoformat() if self.snoozed_until else None,
        }


@dataclass(frozen=True)
class LifecyclePolicy:
    """When a change is worth an audit record and when a quiet finding speaks again."""

    change_fraction: float = 0.10
    regrow_factor: float = 1.5


@dataclass
class Reconciled:
    """What one evaluation changed."""

    opened: list[FindingRow]
    changed: list[FindingRow]
    resolved: list[FindingRow]
    current: list[FindingRow]


def parse_id(text: str) -> int | None:
    """`F-12` or `12` → 12; None when it is neither."""
    raw = text.strip()
    if raw.upper().startswith(ID_PREFIX):
        raw = raw[len(ID_PREFIX) :]
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def _usd(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


def figures(row: FindingRow) -> dict[str, Any]:
    """The figures an audit record keeps; amounts as strings (canonical JSON)."""
    return {
        "finding": row.public_id,
        "fingerprint": row.fingerprint,
        "rule": row.rule,
        "cluster": row.cluster,
        "subject": row.subject,
        "monthly_usd": str(row.monthly_usd),
        "kind": row.kind,
        "confidence": row.confidence,
        "recommendation": stringify(row.recommendation),
    }


def stringify(value: Any) -> Any:
    """Numbers become strings so the audit body stays canonical across databases."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): stringify(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [stringify(v) for v in value]
    return str(value)


def _audit(session: Session, signer: Signer, action: str, row: FindingRow, **extra: Any) -> None:
    entry = append(
        session,
        signer,
        actor="engine",
        action=action,
        subject=f"finding:{row.public_id}",
        body={**figures(row), **stringify(extra)},
    )
    row.audit_seq = entry.seq


def _apply(
    row: FindingRow, finding: EngineFinding, summary: str, plan: dict[str, Any] | None
) -> None:
    row.rule, row.level, row.cluster, row.subject = (
        finding.rule,
        finding.level,
        finding.cluster,
        finding.subject,
    )
    row.monthly_usd = _usd(finding.monthly_usd)
    row.kind, row.confidence, row.summary = finding.kind, finding.confidence, summary
    row.evidence = finding.evidence
    row.recommendation = finding.recommendation.model_dump(mode="json", exclude_none=True)
    row.claims = [claim.model_dump(mode="json") for claim in finding.claims]
    row.plan = plan


def reconcile(
    session: Session,
    signer: Signer,
    findings: Sequence[EngineFinding],
    summaries: Mapping[str, str],
    *,
    plans: Mapping[str, dict[str, Any]] | None = None,
    now: datetime | None = None,
    policy: LifecyclePolicy | None = None,
) -> Reconciled:
    """Fold one whole-fleet evaluation into the stored findings.

    New fingerprints open a finding; known ones are updated in place; open,
    dismissed and snoozed findings whose condition is gone are resolved. A
    dismissed or snoozed finding stays quiet until its snooze ends or its
    dollar figure grows past `regrow_factor` times the figure it was decided at.
    """
    now = now or utcnow()
    policy = policy or LifecyclePolicy()
    rows = {row.fingerprint: row for row in session.scalars(select(FindingRow))}
    result = Reconciled([], [], [], [])
    seen: set[str] = set()
    for finding in findings:
        fingerprint = finding.fingerprint
        seen.add(fingerprint)
        summary = summaries[fingerprint]
        plan = (plans or {}).get(fingerprint)
        row = rows.get(fingerprint)
        if row is None:
            row = FindingRow(fingerprint=fingerprint, status=OPEN, first_seen=now)
            _apply(row, finding, summary, plan)
            row.last_seen = row.updated_at = now
            session.add(row)
            session.flush()
            _audit(session, signer, "finding.opened", row)
            result.opened.append(row)
            result.current.append(row)
            continue
        before = row.monthly_usd
        if row.status in _RESOLVABLE or row.status == RESOLVED:
            _apply(row, finding, summary, plan)
        else:
            # A decided finding keeps the plan and figures it was decided on.
            row.last_seen = now
            result.current.append(row)
            continue
        row.last_seen = now
        after = row.monthly_usd
        moved = abs(after - before) > abs(before) * Decimal(str(policy.change_fraction))
        if row.status == RESOLVED:
            row.status, row.resolved_at, row.updated_at = OPEN, None, now
            _audit(session, signer, "finding.reopened", row, reason="condition returned")
            result.opened.append(row)
        elif row.status in _QUIET and _wakes(row, now, policy):
            reason = "snooze ended" if row.status == SNOOZED else "figure grew"
            row.status, row.updated_at = OPEN, now
            _audit(session, signer, "finding.reopened", row, reason=reason)
            result.opened.append(row)
        elif moved:
            row.updated_at = now
            _audit(session, signer, "finding.changed", row, previous_usd=str(before))
            result.changed.append(row)
        result.current.append(row)
    for fingerprint, row in rows.items():
        if fingerprint not in seen and row.status in _RESOLVABLE:
            row.status, row.resolved_at, row.updated_at = RESOLVED, now, now
            _audit(session, signer, "finding.resolved", row)
            result.resolved.append(row)
    return result


def _wakes(row: FindingRow, now: datetime, policy: LifecyclePolicy) -> bool:
    if row.status == SNOOZED and row.snoozed_until is not None and row.snoozed_until <= now:
        return True
    basis = row.decided_usd
    return basis is not None and row.monthly_usd > basis * Decimal(str(policy.regrow_factor))


def list_findings(
    session: Session, *, include_all: bool = False, cluster: str | None = None
) -> list[FindingRow]:
    """Open findings (or every finding), largest dollar figure first."""
    query = select(FindingRow)
    if not include_all:
        query = query.where(FindingRow.status == OPEN)
    if cluster is not None:
        query = query.where(FindingRow.cluster == cluster)
    query = query.order_by(FindingRow.monthly_usd.desc(), FindingRow.id)
    return list(session.scalars(query))


def get_finding(session: Session, finding_id: int) -> FindingRow | None:
    """The finding with this numeric id, or None."""
    return session.get(FindingRow, finding_id)
