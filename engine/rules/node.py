"""Node-level rules: CPU against GPU, NUMA placement, noisy neighbours, idle GPU nodes."""

from __future__ import annotations

from typing import Any

from engine.facts import FactReader
from engine.findings import Claim, Finding, Recommendation
from engine.rules.context import (
    ClusterView,
    Env,
    Result,
    WorkloadContext,
    confidence_of,
    evidence,
    facts_evidence,
    model_evidence,
    spend,
)
from engine.units import HOURS_PER_MONTH


def cpu_gpu_imbalance(ctx: WorkloadContext, env: Env) -> Result:
    """GPUs wait on saturated CPUs (tool calls, tokenisation): add CPU, not GPUs."""
    rule = "cpu_gpu_imbalance"
    th = env.thresholds
    p = ctx.profile
    missing = p.missing(("gpu_util", "cpu_util"))
    if missing:
        return [ctx.gap(rule, missing)]
    assert p.gpu_util is not None and p.cpu_util is not None
    if p.gpu_util >= th.gpu_low_util_pct or p.cpu_util < th.cpu_saturation_pct:
        return []
    money, gap = spend(ctx, rule)
    if money is None:
        return [gap] if gap else []
    wasted = (th.gpu_low_util_pct - p.gpu_util) / th.gpu_low_util_pct
    monthly = money.monthly_usd * wasted
    if monthly <= 0:
        return []
    r = ctx.reader()
    node = r.text("placement.nodeName")
    workload_class = r.text("workload.class")
    fields = ("gpu_util", "cpu_util", "gpu", "gpu_count", "replicas")
    facts, assumptions, confidence = model_evidence(ctx, fields, r)
    return [
        Finding(
            rule=rule,
            level="node",
            cluster=ctx.cluster,
            subject=ctx.workload_id,
            monthly_usd=monthly,
            kind="savings",
            confidence=confidence,
            evidence=evidence(
                env,
                facts=facts,
                assumptions=assumptions,
                threshold=env.threshold("gpu_low_util_pct", "cpu_saturation_pct"),
                prices={money.gpu_id: money.price},
                node=node,
                workload_class=workload_class,
                gpu_spend_monthly_usd=round(money.monthly_usd, 2),
                idle_fraction=round(wasted, 4),
            ),
            recommendation=Recommendation(
                action="add_cpu",
                params={
                    "target_gpu_util_pct": th.gpu_low_util_pct,
                    "cpu_util_pct": p.cpu_util,
                    "node": node,
                },
            ),
            claims=[Claim(resource=ctx.resource, usd=monthly)],
        )
    ]


NUMA_KEYS = ("placement.gpuNumaNodes", "placement.cpuNumaNodes")


def numa_misalignment(ctx: WorkloadContext, env: Env) -> Result:
    """The workload's CPUs sit on another NUMA node than its GPUs."""
    rule = "numa_misalignment"
    if not any(key in ctx.workload.facts for key in NUMA_KEYS):
        return []  # topology not reported: nothing to check
    r = ctx.reader()
    gpu_nodes = r.ints("placement.gpuNumaNodes")
    cpu_nodes = r.ints("placement.cpuNumaNodes")
    if gpu_nodes is None or cpu_nodes is None:
        missing = [k for k, v in zip(NUMA_KEYS, (gpu_nodes, cpu_nodes), strict=True) if v is None]
        return [ctx.gap(rule, missing)]
    if set(gpu_nodes) <= set(cpu_nodes):
        return []
    money, gap = spend(ctx, rule)
    if money is None:
        return [gap] if gap else []
    fraction = env.thresholds.numa_spend_fraction
    monthly = money.monthly_usd * fraction
    if monthly <= 0:
        return []
    node = r.text("placement.nodeName")
    facts, assumptions, confidence = model_evidence(ctx, ("gpu", "gpu_count", "replicas"), r)
    return [
        Finding(
            rule=rule,
            level="node",
            cluster=ctx.cluster,
            subject=ctx.workload_id,
            monthly_usd=monthly,
            kind="savings",
            confidence=confidence,
            evidence=evidence(
                env,
                facts=facts,
                assumptions=assumptions,
                threshold=env.threshold("numa_spend_fraction"),
                prices={money.gpu_id: money.price},
                node=node,
                gpu_numa_nodes=sorted(set(gpu_nodes)),
                cpu_numa_nodes=sorted(set(cpu_nodes)),
                gpu_spend_monthly_usd=round(money.monthly_usd, 2),
            ),
            recommendation=Recommendation(
                action="topology_aware_placement",
                params={"topology_manager_policy": "single-numa-node", "node": node},
            ),
            claims=[Claim(resource=ctx.resource, usd=monthly)],
        )
    ]


LATENCY_KEYS = ("slo.latencyP99Ms", "obs.requestLatency.p99Ms", "placement.nodeName")


def colocation_conflict(cluster: ClusterView, env: Env) -> Result:
    """A workload over its latency SLO shares a node with a CPU-saturated neighbour."""
    rule = "colocation_conflict"
    th = env.thresholds
    by_node: dict[str, list[tuple[WorkloadContext, FactReader]]] = {}
    late: list[tuple[WorkloadContext, FactReader, str, float, float]] = []
    out: Result = []
    for ctx in cluster.workloads:
        present = ctx.workload.facts
        if "placement.nodeName" not in present and "slo.latencyP99Ms" not in present:
            continue
        r = ctx.reader()
        node = r.text("placement.nodeName")
        if node is not None:
            by_node.setdefault(node, []).append((ctx, r))
        if "slo.latencyP99Ms" not in present:
            continue  # no latency SLO: this workload can only be the neighbour
        slo = r.num("slo.latencyP99Ms")
        p99 = r.num("obs.requestLatency.p99Ms")
        missing = [
            key for key, value in zip(LATENCY_KEYS, (slo, p99, node), strict=True) if value is None
        ]
        if missing:
            out.append(ctx.gap(rule, missing))
        elif p99 is not None and slo is not None and node is not None and p99 > slo:
            late.append((ctx, r, node, p99, slo))
    for ctx, r, node, p99, slo in late:
        noisy: list[tuple[float, str, FactReader]] = []
        for other, other_reader in by_node.get(node, ()):
            if other is ctx:
                continue
            cpu = other_reader.num("obs.cpu.utilAvgPct")
            if cpu is not None and cpu >= th.cpu_saturation_pct:
                noisy.append((cpu, other.workload_id, other_reader))
        if not noisy:
            continue
        noisy.sort(key=lambda item: (-item[0], item[1]))
        money, gap = spend(ctx, rule)
        if money is None:
            if gap:
                out.append(gap)
            continue
        fraction = th.colocation_spend_fraction
        monthly = money.monthly_usd * fraction
        if monthly <= 0:
            continue
        facts, assumptions, _ = model_evidence(ctx, ("gpu", "gpu_count", "replicas"), r)
        neighbour_facts = {
            wid: facts_evidence({"obs.cpu.utilAvgPct": nr.used["obs.cpu.utilAvgPct"]})
            for _, wid, nr in noisy
        }
        all_facts: dict[str, Any] = dict(facts)
        for item in neighbour_facts.values():
            all_facts.update({f"neighbour:{k}": v for k, v in item.items()})
        confidence = confidence_of(all_facts, assumptions)
        neighbour = noisy[0][1]
        out.append(
            Finding(
                rule=rule,
                level="node",
                cluster=ctx.cluster,
                subject=ctx.workload_id,
                monthly_usd=monthly,
                kind="risk",
                confidence=confidence,
                evidence=evidence(
                    env,
                    facts=facts,
                    assumptions=assumptions,
                    threshold={
                        **env.threshold("cpu_saturation_pct", "colocation_spend_fraction"),
                        "slo.latencyP99Ms": slo,
                    },
                    prices={money.gpu_id: money.price},
                    node=node,
                    latency_p99_ms=p99,
                    neighbour=neighbour,
                    neighbours={wid: cpu for cpu, wid, _ in noisy},
                    neighbour_facts=neighbour_facts,
                    gpu_spend_monthly_usd=round(money.monthly_usd, 2),
                ),
                recommendation=Recommendation(
                    action="separate_workloads",
                    params={"node": node, "neighbour": neighbour},
                ),
                claims=[Claim(resource=ctx.resource, usd=monthly)],
            )
        )
    return out


def whole(count: float) -> int | float:
    """A GPU count as an int when it is whole (as counts are), for readable evidence."""
    return int(count) if count.is_integer() else count


def unallocated_gpus(reader: FactReader) -> float | None:
    """Unallocated GPUs on a node: reported, or GPUs minus allocated GPUs."""
    reported = reader.num("node.unallocatedGpuCount")
    if reported is not None:
        return reported
    total = reader.num("hardware.gpuCount")
    allocated = reader.num("node.allocatedGpuCount")
    if total is None or allocated is None:
        return None
    return max(0.0, total - allocated)


def dark_capacity(ctx: WorkloadContext, env: Env) -> Result:
    """A GPU node has GPUs no pod uses: scale the pool down."""
    rule = "dark_capacity"
    r = ctx.reader()
    unallocated = unallocated_gpus(r)
    if unallocated is None:
        return [ctx.gap(rule, ["node.unallocatedGpuCount"])]
    if unallocated <= 0:
        return []
    raw = r.text("hardware.gpuType")
    gpu = ctx.gpu_spec(raw)
    if gpu is None:
        note = "hardware.gpuType" if raw is None else f"hardware.gpuType:unknown({raw})"
        return [ctx.gap(rule, [note])]
    price = env.prices.price(gpu.id)
    if price is None:
        return [ctx.gap(rule, [f"price:{gpu.id}"])]
    monthly = unallocated * price * HOURS_PER_MONTH
    gpus = whole(unallocated)
    facts = facts_evidence(r.used)
    reported = "node.unallocatedGpuCount" in r.used
    return [
        Finding(
            rule=rule,
            level="node",
            cluster=ctx.cluster,
            subject=ctx.workload_id,
            monthly_usd=monthly,
            kind="savings",
            confidence=confidence_of(facts, []),
            evidence=evidence(
                env,
                facts=facts,
                assumptions=[],
                threshold={"node.unallocatedGpuCount": 0},
                prices={gpu.id: price},
                node=ctx.workload.name,
                gpu=gpu.id,
                unallocated_gpus=gpus,
                unallocated_from="reported"
                if reported
                else "hardware.gpuCount - node.allocatedGpuCount",
            ),
            recommendation=Recommendation(
                action="scale_pool_down",
                target_gpu=gpu.id,
                params={"node": ctx.workload.name, "remove_gpus": gpus},
            ),
            claims=[Claim(resource=ctx.resource, usd=monthly)],
        )
    ]
