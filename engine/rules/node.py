"""Node-level rules: CPU against GPU, NUMA placement, noisy neighbours, idle GPU nodes."""

from __future__ import annotations

from engine.facts import FactReader
from engine.findings import Recommendation
from engine.rules.context import (
    ClusterView,
    Env,
    Result,
    WorkloadContext,
    facts_evidence,
    spend,
    workload_finding,
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
    return [
        workload_finding(
            ctx,
            rule,
            level="node",
            kind="savings",
            monthly=monthly,
            fields=("gpu_util", "cpu_util", "gpu", "gpu_count", "replicas"),
            reader=r,
            threshold=env.threshold("gpu_low_util_pct", "cpu_saturation_pct"),
            prices={money.gpu_id: money.price},
            recommendation=Recommendation(
                action="add_cpu",
                params={
                    "target_gpu_util_pct": th.gpu_low_util_pct,
                    "cpu_util_pct": p.cpu_util,
                    "node": node,
                },
            ),
            node=node,
            workload_class=r.text("workload.class"),
            gpu_spend_monthly_usd=round(money.monthly_usd, 2),
            idle_fraction=round(wasted, 4),
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
    return [
        workload_finding(
            ctx,
            rule,
            level="node",
            kind="savings",
            monthly=monthly,
            fields=("gpu", "gpu_count", "replicas"),
            reader=r,
            threshold=env.threshold("numa_spend_fraction"),
            prices={money.gpu_id: money.price},
            recommendation=Recommendation(
                action="topology_aware_placement",
                params={"topology_manager_policy": "single-numa-node", "node": node},
            ),
            node=node,
            gpu_numa_nodes=sorted(set(gpu_nodes)),
            cpu_numa_nodes=sorted(set(cpu_nodes)),
            gpu_spend_monthly_usd=round(money.monthly_usd, 2),
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
        neighbour_facts = {
            wid: facts_evidence({"obs.cpu.utilAvgPct": nr.used["obs.cpu.utilAvgPct"]})
            for _, wid, nr in noisy
        }
        neighbour = noisy[0][1]
        out.append(
            workload_finding(
                ctx,
                rule,
                level="node",
                kind="risk",
                monthly=monthly,
                fields=("gpu", "gpu_count", "replicas"),
                reader=r,
                rated_facts={
                    f"neighbour:{key}": fact
                    for cpu_facts in neighbour_facts.values()
                    for key, fact in cpu_facts.items()
                },
                threshold={
                    **env.threshold("cpu_saturation_pct", "colocation_spend_fraction"),
                    "slo.latencyP99Ms": slo,
                },
                prices={money.gpu_id: money.price},
                recommendation=Recommendation(
                    action="separate_workloads", params={"node": node, "neighbour": neighbour}
                ),
                node=node,
                latency_p99_ms=p99,
                neighbour=neighbour,
                neighbours={wid: cpu for cpu, wid, _ in noisy},
                neighbour_facts=neighbour_facts,
                gpu_spend_monthly_usd=round(money.monthly_usd, 2),
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
    gpus = whole(unallocated)
    reported = "node.unallocatedGpuCount" in r.used
    return [
        workload_finding(
            ctx,
            rule,
            level="node",
            kind="savings",
            monthly=unallocated * price * HOURS_PER_MONTH,
            fields=(),
            reader=r,
            threshold={"node.unallocatedGpuCount": 0},
            prices={gpu.id: price},
            recommendation=Recommendation(
                action="scale_pool_down",
                target_gpu=gpu.id,
                params={"node": ctx.workload.name, "remove_gpus": gpus},
            ),
            node=ctx.workload.name,
            gpu=gpu.id,
            unallocated_gpus=gpus,
            unallocated_from="reported"
            if reported
            else "hardware.gpuCount - node.allocatedGpuCount",
        )
    ]
