"""Fleet-level rules: the same model idle in several clusters, pods pending beside dark GPUs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.facts import Confidence
from engine.findings import Claim, Finding, Gap, Recommendation
from engine.rules.context import (
    EPS,
    Env,
    FleetView,
    Result,
    Spend,
    WorkloadContext,
    ceil_ratio,
    confidence_of,
    evidence,
    facts_evidence,
    spend,
)
from engine.rules.node import unallocated_gpus, whole
from engine.units import HOURS_PER_MONTH


def allocate(total: int, items: list[tuple[str, float, int]], minimum: int) -> dict[str, int]:
    """Split `total` across (key, load, cap) items in proportion to load, by largest remainder.

    Each item gets at least `minimum` and at most its cap; ties go to the smaller key.
    """
    if not items:
        return {}
    load_sum = sum(load for _, load, _ in items)
    quota = {
        key: total * load / load_sum if load_sum > 0 else total / len(items)
        for key, load, _ in items
    }
    cap = {key: c for key, _, c in items}
    alloc = {key: min(cap[key], max(minimum, math.floor(quota[key] + EPS))) for key in quota}
    diff = total - sum(alloc.values())
    while diff != 0:
        step = 1 if diff > 0 else -1
        # Largest remainder first when adding; largest excess first when taking away.
        order = sorted(quota, key=lambda k: (-(quota[k] - alloc[k]) * step, k))
        moved = False
        for key in order:
            if diff == 0:
                break
            if (step > 0 and alloc[key] < cap[key]) or (step < 0 and alloc[key] > minimum):
                alloc[key] += step
                diff -= step
                moved = True
        if not moved:
            break
    return alloc


@dataclass(slots=True)
class _Member:
    ctx: WorkloadContext
    util: float
    replicas: int
    money: Spend


def fleet_rebalance(fleet: FleetView, env: Env) -> Result:
    """One model served in several clusters, each mostly idle: consolidate its replicas."""
    rule = "fleet_rebalance"
    th = env.thresholds
    groups: dict[str, list[WorkloadContext]] = {}
    for ctx in fleet.by_role.get("model", ()):
        name = ctx.profile.model_name
        if name is not None:
            groups.setdefault(name, []).append(ctx)
    out: Result = []
    for name in sorted(groups):
        members = groups[name]
        if len({ctx.cluster for ctx in members}) < th.fleet_min_clusters:
            continue
        # A deployment scaled to zero serves nothing: its utilisation does not matter.
        missing = [
            f"{ctx.cluster}/{ctx.workload_id}:{key}"
            for ctx in members
            if ctx.profile.replicas != 0
            for key in ctx.profile.missing(("gpu_util", "replicas"))
        ]
        if missing:
            out.append(Gap(cluster=None, subject=name, rule=rule, missing=missing))
            continue
        serving = [ctx for ctx in members if ctx.profile.replicas]
        by_cluster: dict[str, list[WorkloadContext]] = {}
        for ctx in serving:
            by_cluster.setdefault(ctx.cluster, []).append(ctx)
        if len(by_cluster) < th.fleet_min_clusters:
            continue
        util = {cl: _weighted_util(ctxs) for cl, ctxs in by_cluster.items()}
        if any(u >= th.fleet_util_pct for u in util.values()):
            continue
        priced: list[_Member] = []
        unpriced: list[str] = []
        for ctx in serving:
            money, gap = spend(ctx, rule)
            if money is None:
                if gap is not None:
                    unpriced.extend(f"{ctx.cluster}/{ctx.workload_id}:{m}" for m in gap.missing)
                continue
            p = ctx.profile
            assert p.gpu_util is not None and p.replicas is not None
            priced.append(_Member(ctx, p.gpu_util, p.replicas, money))
        if unpriced:
            out.append(Gap(cluster=None, subject=name, rule=rule, missing=unpriced))
            continue
        finding = _rebalance(name, priced, util, env)
        if finding is not None:
            out.append(finding)
    return out


def _weighted_util(ctxs: list[WorkloadContext]) -> float:
    replicas = sum(ctx.profile.replicas or 0 for ctx in ctxs)
    load = sum((ctx.profile.replicas or 0) * (ctx.profile.gpu_util or 0.0) for ctx in ctxs)
    return load / replicas if replicas else 0.0


def _rebalance(
    name: str, members: list[_Member], util: dict[str, float], env: Env
) -> Finding | None:
    th = env.thresholds
    by_cluster: dict[str, list[_Member]] = {}
    for m in members:
        by_cluster.setdefault(m.ctx.cluster, []).append(m)
    load = {cl: sum(m.replicas * m.util for m in ms) for cl, ms in by_cluster.items()}
    replicas = {cl: sum(m.replicas for m in ms) for cl, ms in by_cluster.items()}
    total_load = sum(load.values())
    current = sum(replicas.values())
    target = max(len(by_cluster), ceil_ratio(total_load / th.fleet_target_util_pct))
    if target >= current:
        return None
    cluster_targets = allocate(
        target, [(cl, load[cl], replicas[cl]) for cl in sorted(by_cluster)], 1
    )
    per_workload: dict[str, int] = {}
    claims: list[Claim] = []
    monthly = 0.0
    facts: dict[str, dict[str, Any]] = {}
    prices: dict[str, float] = {}
    for cl in sorted(by_cluster):
        ms = sorted(by_cluster[cl], key=lambda m: m.ctx.workload_id)
        floor = 1 if cluster_targets[cl] >= len(ms) else 0
        split = allocate(
            cluster_targets[cl],
            [(m.ctx.resource, m.replicas * m.util, m.replicas) for m in ms],
            floor,
        )
        for m in ms:
            keep = split[m.ctx.resource]
            per_workload[m.ctx.resource] = keep
            saved = (m.replicas - keep) * m.money.replica_monthly_usd
            prices[m.money.gpu_id] = m.money.price
            if saved > 0:
                monthly += saved
                claims.append(Claim(resource=m.ctx.resource, usd=saved))
            for key, item in m.ctx.profile.fact_evidence(
                ("model_name", "gpu_util", "replicas", "gpu", "gpu_count")
            ).items():
                facts[f"{m.ctx.resource}|{key}"] = item
    if monthly <= 0:
        return None
    assumptions: list[str] = []
    confidence: Confidence = confidence_of(facts, assumptions)
    return Finding(
        rule="fleet_rebalance",
        level="fleet",
        cluster=None,
        subject=name,
        monthly_usd=monthly,
        kind="savings",
        confidence=confidence,
        evidence=evidence(
            env,
            facts=facts,
            assumptions=assumptions,
            threshold=env.threshold("fleet_util_pct", "fleet_target_util_pct"),
            prices=prices,
            clusters={
                cl: {
                    "replicas": replicas[cl],
                    "gpu_util_pct": round(util[cl], 2),
                    "target_replicas": cluster_targets[cl],
                }
                for cl in sorted(by_cluster)
            },
            current_replicas=current,
            target_replicas=target,
            load_replica_pct=round(total_load, 2),
        ),
        recommendation=Recommendation(
            action="rebalance_fleet",
            replicas=target,
            params={
                "per_cluster": dict(sorted(cluster_targets.items())),
                "per_workload": dict(sorted(per_workload.items())),
                "current_replicas": current,
            },
        ),
        claims=claims,
    )


PENDING_KEYS = ("job.pendingGpuCount", "job.pendingSinceMinutes", "hardware.gpuType")


@dataclass(slots=True)
class _Pool:
    """Unallocated GPUs of one type in one cluster, node by node."""

    cluster: str
    region: str
    remaining: float
    nodes: list[tuple[str, str, float]]  # (node workloadId, claim resource, unallocated)


def regional_capacity_gap(fleet: FleetView, env: Env) -> Result:
    """GPU pods pend in one region while another region has enough idle GPUs of their type."""
    rule = "regional_capacity_gap"
    th = env.thresholds
    pools: dict[str, dict[str, _Pool]] = {}
    for ctx in fleet.by_role.get("node", ()):
        r = ctx.reader()
        free = unallocated_gpus(r)
        gpu = ctx.gpu_spec(r.text("hardware.gpuType"))
        if free is None or free <= 0 or gpu is None or not ctx.region:
            continue
        pool = pools.setdefault(gpu.id, {}).setdefault(
            ctx.cluster, _Pool(ctx.cluster, ctx.region, 0.0, [])
        )
        pool.remaining += free
        pool.nodes.append((ctx.workload_id, ctx.resource, free))
    for by_cluster in pools.values():
        for pool in by_cluster.values():
            pool.nodes.sort(key=lambda node: (-node[2], node[0]))
    out: Result = []
    pods = sorted(fleet.by_role.get("pod", ()), key=lambda c: (c.cluster, c.workload_id))
    for ctx in pods:
        r = ctx.reader()
        pending = r.num("job.pendingGpuCount")
        since = r.num("job.pendingSinceMinutes")
        raw = r.text("hardware.gpuType")
        values = (pending, since, raw)
        missing = [key for key, value in zip(PENDING_KEYS, values, strict=True) if value is None]
        if missing:
            out.append(ctx.gap(rule, missing))
            continue
        assert pending is not None and since is not None
        if pending <= 0 or since < th.pending_minutes:
            continue
        gpu = ctx.gpu_spec(raw)
        if gpu is None:
            out.append(ctx.gap(rule, [f"hardware.gpuType:unknown({raw})"]))
            continue
        if not ctx.region:
            out.append(ctx.gap(rule, ["cluster.region"]))
            continue
        options = [
            pool
            for pool in pools.get(gpu.id, {}).values()
            if pool.region != ctx.region and pool.remaining >= pending
        ]
        if not options:
            continue
        price = env.prices.price(gpu.id)
        if price is None:
            out.append(ctx.gap(rule, [f"price:{gpu.id}"]))
            continue
        pool = min(options, key=lambda p: (-p.remaining, p.cluster))
        out.append(_place(ctx, r.used, pool, pending, since, gpu.id, price, env))
    return out


def _place(
    ctx: WorkloadContext,
    used: dict[str, Any],
    pool: _Pool,
    pending: float,
    since: float,
    gpu_id: str,
    price: float,
    env: Env,
) -> Finding:
    need = pending
    taken: dict[str, int | float] = {}
    claims: list[Claim] = []
    for i, (node_id, resource, free) in enumerate(pool.nodes):
        if need <= 0:
            break
        take = min(free, need)
        if take <= 0:
            continue
        need -= take
        pool.nodes[i] = (node_id, resource, free - take)
        taken[node_id] = whole(take)
        claims.append(Claim(resource=resource, usd=take * price * HOURS_PER_MONTH))
    pool.remaining -= pending
    monthly = pending * price * HOURS_PER_MONTH
    facts = facts_evidence(used)
    return Finding(
        rule="regional_capacity_gap",
        level="fleet",
        cluster=None,
        subject=f"{ctx.cluster}/{ctx.workload_id}",
        monthly_usd=monthly,
        kind="savings",
        confidence=confidence_of(facts, []),
        evidence=evidence(
            env,
            facts=facts,
            assumptions=[],
            threshold=env.threshold("pending_minutes"),
            prices={gpu_id: price},
            gpu=gpu_id,
            pending_gpus=whole(pending),
            pending_minutes=since,
            source_cluster=ctx.cluster,
            source_region=ctx.region,
            target_cluster=pool.cluster,
            target_region=pool.region,
            target_nodes=taken,
        ),
        recommendation=Recommendation(
            action="place_in_region",
            target_gpu=gpu_id,
            target_gpu_count=int(pending),
            params={
                "target_cluster": pool.cluster,
                "target_region": pool.region,
                "target_nodes": sorted(taken),
                "pod": ctx.workload_id,
            },
        ),
        claims=claims,
    )
