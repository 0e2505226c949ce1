"""A finding's life: opened once, updated in place, resolved, quiet while dismissed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from bot.context import Context
from engine.findings import Claim, Finding, Recommendation
from store.db import transaction, utcnow
from store.findings import DISMISSED, OPEN, RESOLVED, SNOOZED, FindingRow, reconcile


def _finding(
    usd: float = 1000.0, cluster: str | None = "prod-east", subject: str = "ns/a/deployment/x"
) -> Finding:
    return Finding(
        rule="idle_allocation",
        level="model",
        cluster=cluster,
        subject=subject,
        monthly_usd=usd,
        kind="savings",
        confidence="high",
        evidence={"gpu_util_pct": 3},
        recommendation=Recommendation(action="scale_replicas", replicas=1),
        claims=[Claim(resource=f"{cluster}|{subject}", usd=usd)],
    )


def _fold(ctx: Context, *findings: Finding, later: timedelta = timedelta(0)) -> list[FindingRow]:
    with transaction(ctx.sessions) as session:
        reconcile(
            session,
            ctx.signer,
            list(findings),
            {f.fingerprint: "summary" for f in findings},
            now=utcnow() + later,
        )
        return list(session.scalars(sa.select(FindingRow).order_by(FindingRow.id)))


def _actions(ctx: Context) -> list[str]:
    with ctx.engine.connect() as conn:
        return [
            row[0]
            for row in conn.execute(
                sa.text("SELECT action FROM audit_log WHERE action LIKE 'finding.%' ORDER BY seq")
            )
        ]


def _set(ctx: Context, **values: object) -> None:
    with transaction(ctx.sessions) as session:
        session.execute(sa.update(FindingRow).values(**values))


def test_re_evaluation_updates_instead_of_duplicating(ctx: Context) -> None:
    [first] = _fold(ctx, _finding(1000))
    [again] = _fold(ctx, _finding(1000))
    assert again.id == first.id and again.status == OPEN
    [moved] = _fold(ctx, _finding(1500))
    assert moved.monthly_usd == Decimal("1500.00")
    assert _actions(ctx) == ["finding.opened", "finding.changed"]


def test_small_changes_are_not_audited(ctx: Context) -> None:
    _fold(ctx, _finding(1000))
    _fold(ctx, _finding(1050))
    assert _actions(ctx) == ["finding.opened"]


def test_the_same_subject_in_two_clusters_is_two_findings(ctx: Context) -> None:
    rows = _fold(ctx, _finding(cluster="prod-east"), _finding(cluster="prod-west"))
    assert len(rows) == 2


def test_a_gone_condition_resolves_and_a_return_reopens(ctx: Context) -> None:
    _fold(ctx, _finding())
    [row] = _fold(ctx)
    assert row.status == RESOLVED and row.resolved_at is not None
    [row] = _fold(ctx, _finding())
    assert row.status == OPEN
    assert _actions(ctx) == ["finding.opened", "finding.resolved", "finding.reopened"]


def test_dismissed_stays_quiet_until_its_figure_grows(ctx: Context) -> None:
    _fold(ctx, _finding(1000))
    _set(ctx, status=DISMISSED, decided_usd=Decimal("1000"))
    [row] = _fold(ctx, _finding(1400))
    assert row.status == DISMISSED
    [row] = _fold(ctx, _finding(1600))
    assert row.status == OPEN


def test_snoozed_stays_quiet_until_the_snooze_ends(ctx: Context) -> None:
    _fold(ctx, _finding())
    _set(
        ctx, status=SNOOZED, decided_usd=Decimal("1000"), snoozed_until=utcnow() + timedelta(days=2)
    )
    [row] = _fold(ctx, _finding(), later=timedelta(days=1))
    assert row.status == SNOOZED
    [row] = _fold(ctx, _finding(), later=timedelta(days=3))
    assert row.status == OPEN


def test_approved_findings_keep_their_state(ctx: Context) -> None:
    _fold(ctx, _finding())
    _set(ctx, status="approved")
    [row] = _fold(ctx)
    assert row.status == "approved"
