"""The one decision path behind the Slack buttons, `/steward snooze` and the CLI."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import OperationalError

from bot.actuation import enqueue_approved
from bot.config import Settings
from bot.context import Context
from store.db import transaction
from store.decisions import DecisionRequest, DecisionResult, decide, record_refusal
from store.findings import FindingRow, get_finding

log = logging.getLogger(__name__)

Status = Literal["decided", "already_decided", "not_found", "refused"]

# PostgreSQL aborts one side of a deadlock (40P01) or a serialisation conflict
# (40001); a decision meeting a concurrent scan is simply tried again.
_RETRYABLE = {"40P01", "40001"}
_ATTEMPTS = 3


@dataclass(frozen=True)
class Decision:
    """What a request to decide came to, with the finding as it now stands."""

    status: Status
    finding: FindingRow | None
    audit_seq: int | None = None

    @property
    def won(self) -> bool:
        """True when this request made the decision."""
        return self.status == "decided"


def may_decide(settings: Settings, user: str, cluster: str | None) -> bool:
    """True when the Slack user is a global approver or an approver of the finding's cluster."""
    if user in settings.approvers:
        return True
    return cluster is not None and user in settings.cluster_approvers.get(cluster, [])


def _retryable(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE


def decide_finding(ctx: Context, request: DecisionRequest, *, check_approver: bool) -> Decision:
    """Decide a finding once: refuse non-approvers (audited), else one conditional update.

    `check_approver` is False for the CLI, whose operator already holds the
    database and the signing key; Slack requests always check.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _decide_once(ctx, request, check_approver)
        except OperationalError as exc:
            if attempt == _ATTEMPTS or not _retryable(exc):
                raise
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _decide_once(ctx: Context, request: DecisionRequest, check_approver: bool) -> Decision:
    with transaction(ctx.sessions) as session:
        if check_approver:
            row = get_finding(session, request.finding_id)
            if row is None:
                return Decision("not_found", None)
            if not may_decide(ctx.settings, request.actor, row.cluster):
                entry = record_refusal(session, ctx.signer, request, "not an approver")
                return Decision("refused", row, entry.seq)
        result: DecisionResult = decide(session, ctx.signer, request)
        if result.won and request.verdict == "approve" and result.finding is not None:
            # The outbox row commits with the approval, so an approval is never lost
            # between deciding and acting (bot.actuation carries it out).
            enqueue_approved(session, ctx, result.finding, request.actor)
            result.finding.audit_seq = result.audit_seq
    if result.won:
        log.info("finding F-%s: %s by %s", request.finding_id, request.verdict, request.actor)
        if request.verdict == "approve":
            on_approved(ctx, request.finding_id)
    return Decision(result.outcome, result.finding, result.audit_seq)


def refuse(ctx: Context, request: DecisionRequest, why: str) -> int:
    """Audit a refused attempt that never reached the decision (e.g. opening the Dismiss form)."""
    with transaction(ctx.sessions) as session:
        return record_refusal(session, ctx.signer, request, why).seq


def on_approved(ctx: Context, finding_id: int) -> None:
    """Called once an approval has committed (its outbox row with it); a hook for what follows."""
    log.info("finding F-%s approved and queued for actuation", finding_id)
