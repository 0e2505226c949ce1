"""The path facts take: store them, evaluate the whole fleet, fold the findings in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from bot.context import Context
from bot.ingest import ParsedPayload, store_payload
from bot.notify import notify_scan
from bot.outcomes import check_outcomes
from bot.wording import summary
from engine.evaluate import evaluate
from engine.facts import ClusterSnapshot, Fact, FleetSnapshot, Workload
from engine.findings import Evaluation
from engine.plans import plan_for
from store.db import reading, transaction, utcnow
from store.facts import ClusterFacts, fleet_facts
from store.findings import FindingRow, LifecyclePolicy, Reconciled, reconcile

# Evaluations fold into the findings table one at a time, fleet-wide.
_EVALUATION_LOCK = 0x5354_4557_4556  # "STEWEV"


@dataclass
class ScanResult:
    """One evaluation of the fleet and what it changed in the store."""

    evaluation: Evaluation
    reconciled: Reconciled
    at: datetime
    outcomes: list[FindingRow]


def snapshot(clusters: list[ClusterFacts]) -> FleetSnapshot:
    """The engine's view of stored facts."""
    return FleetSnapshot(
        clusters=[
            ClusterSnapshot(
                name=cluster.name,
                provider=cluster.provider,
                region=cluster.region,
                workloads=[
                    Workload(
                        workload_id=stored.workload_id,
                        facts={
                            key: Fact.model_validate(value) for key, value in stored.facts.items()
                        },
                    )
                    for stored in cluster.workloads
                ],
            )
            for cluster in clusters
        ]
    )


def _lock(session: Session) -> None:
    # SQLite transactions are already exclusive (BEGIN IMMEDIATE).
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _EVALUATION_LOCK})


def _evaluate(
    ctx: Context, session: Session, now: datetime
) -> tuple[Evaluation, list[ClusterFacts]]:
    facts = fleet_facts(session, now, timedelta(hours=ctx.settings.fact_ttl_hours))
    evaluation = evaluate(
        snapshot(facts), ctx.prices, thresholds=ctx.thresholds, constants=ctx.constants
    )
    return evaluation, facts


def evaluate_now(ctx: Context) -> Evaluation:
    """Evaluate the latest facts without touching the stored findings."""
    with reading(ctx.sessions) as session:
        return _evaluate(ctx, session, utcnow())[0]


def scan(ctx: Context) -> ScanResult:
    """Evaluate the fleet from the latest facts and reconcile the stored findings."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        _lock(session)
        evaluation, facts = _evaluate(ctx, session, now)
        summaries = {finding.fingerprint: summary(finding) for finding in evaluation.findings}
        plans = {
            finding.fingerprint: plan_for(finding).model_dump(mode="json")
            for finding in evaluation.findings
        }
        reconciled = reconcile(
            session,
            ctx.signer,
            evaluation.findings,
            summaries,
            plans=plans,
            now=now,
            policy=LifecyclePolicy(
                change_fraction=ctx.settings.finding_change_fraction,
                regrow_factor=ctx.settings.finding_regrow_factor,
            ),
        )
        outcomes = check_outcomes(session, ctx, evaluation, facts, now)
    notify_scan(ctx, reconciled)
    return ScanResult(evaluation, reconciled, now, outcomes)


def ingest_and_evaluate(
    ctx: Context, cluster_name: str, parsed: ParsedPayload, source: str
) -> list[dict[str, Any]]:
    """Store a push, evaluate, and answer piqc's way: each workload with its open findings."""
    store_payload(ctx, cluster_name, parsed, source)
    result = scan(ctx)
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for row in result.reconciled.current:
        if row.status != "open":
            continue
        touched = {claim["resource"] for claim in row.claims}
        if row.cluster == cluster_name:
            touched.add(f"{cluster_name}|{row.subject}")
        for resource in touched:
            cluster, _, workload_id = resource.partition("|")
            if cluster == cluster_name:
                by_workload.setdefault(workload_id, []).append(
                    {
                        "id": row.public_id,
                        "rule": row.rule,
                        "monthly_usd": float(row.monthly_usd),
                        "summary": row.summary,
                    }
                )
    return [
        {"workloadId": workload_id, "recommendations": by_workload.get(workload_id, [])}
        for workload_id, _ in parsed.workloads
    ]
