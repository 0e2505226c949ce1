"""After actuation: did the change land, did the condition go, what did it save?"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.context import Context
from engine.catalog import normalise_gpu
from engine.facts import as_number
from engine.findings import Evaluation
from engine.plans import KV_CACHE_DTYPE_ARG, MAX_MODEL_LEN_ARG, ActionPlan, Target
from engine.units import monthly
from store.audit import append
from store.facts import ClusterFacts
from store.findings import FindingRow

VERIFIED = "verified"
UNVERIFIED = "unverified"

Facts = Mapping[str, Any]


def _value(facts: Facts, key: str) -> Any:
    entry = facts.get(key)
    return entry.get("value") if isinstance(entry, dict) else None


def _same_number(actual: Any, expected: Any) -> bool:
    number = as_number(actual)
    return number is not None and expected is not None and number == float(expected)


def in_place(facts: Facts | None, target: Target) -> bool:
    """True when the latest facts of the target show every change applied."""
    if facts is None:
        return False
    for change in target.changes:
        if change.kind == "replicas":
            ok = _same_number(_value(facts, "k8s.replicas"), change.after)
        elif change.kind == "node_selector":
            reported = _value(facts, "hardware.gpuType")
            ok = reported is not None and normalise_gpu(str(reported)) == normalise_gpu(
                str(change.after)
            )
        elif change.kind == "gpu_limit":
            ok = _same_number(_value(facts, "hardware.gpuCount"), change.after)
        elif change.key == KV_CACHE_DTYPE_ARG:
            ok = str(_value(facts, "vllm.kvCacheDtype")) == str(change.after)
        elif change.key == MAX_MODEL_LEN_ARG:
            ok = _same_number(_value(facts, "model.maxModelLen"), change.after)
        else:
            ok = True  # tensor parallelism follows the GPU count checked above
        if not ok:
            return False
    return True


def _side_spend(ctx: Context, facts: Facts, target: Target, side: str) -> Decimal | None:
    gpu = normalise_gpu(str(_value(facts, "hardware.gpuType") or ""))
    count = as_number(_value(facts, "hardware.gpuCount"))
    replicas = as_number(_value(facts, "k8s.replicas"))
    for change in target.changes:
        value = change.before if side == "before" else change.after
        if change.kind == "node_selector":
            gpu = normalise_gpu(str(value))
        elif change.kind == "gpu_limit":
            count = as_number(value)
        elif change.kind == "replicas":
            replicas = as_number(value)
    price = ctx.prices.price(gpu) if gpu else None
    if price is None or count is None or replicas is None:
        return None
    return Decimal(str(round(monthly(price * count * replicas), 2)))


def realised_saving(
    ctx: Context, latest: Mapping[tuple[str, str], Facts], plan: ActionPlan
) -> Decimal | None:
    """Monthly GPU spend before the change minus after it, priced with today's book."""
    total = Decimal(0)
    for target in plan.targets:
        facts = latest.get((target.cluster, target.workload_id))
        if facts is None:
            return None
        before = _side_spend(ctx, facts, target, "before")
        after = _side_spend(ctx, facts, target, "after")
        if before is None or after is None:
            return None
        total += before - after
    return total


def check_outcomes(
    session: Session,
    ctx: Context,
    evaluation: Evaluation,
    facts: list[ClusterFacts],
    now: datetime,
) -> list[FindingRow]:
    """Mark actuated findings verified (change in place, condition gone) or unverified."""
    present = {finding.fingerprint for finding in evaluation.findings}
    latest = {
        (cluster.name, workload.workload_id): workload.facts
        for cluster in facts
        for workload in cluster.workloads
    }
    window = timedelta(hours=ctx.settings.outcome_window_hours)
    decided: list[FindingRow] = []
    rows = session.scalars(
        select(FindingRow).where(FindingRow.status == "actuated", FindingRow.outcome.is_(None))
    )
    for row in rows:
        plan = ActionPlan.model_validate(row.plan) if row.plan else None
        if plan is None:
            continue
        landed = all(in_place(latest.get((t.cluster, t.workload_id)), t) for t in plan.targets)
        if landed and row.fingerprint not in present:
            row.outcome, row.outcome_at = VERIFIED, now
            row.realised_usd = realised_saving(ctx, latest, plan)
        elif row.actuated_at is not None and now - row.actuated_at > window:
            row.outcome, row.outcome_at = UNVERIFIED, now
        else:
            continue
        entry = append(
            session,
            ctx.signer,
            actor="engine",
            action=f"outcome.{row.outcome}",
            subject=f"finding:{row.public_id}",
            body={
                "finding": row.public_id,
                "realised_usd": str(row.realised_usd) if row.realised_usd is not None else None,
                "change_in_place": landed,
                "condition_gone": row.fingerprint not in present,
            },
        )
        row.audit_seq = entry.seq
        decided.append(row)
    return decided
