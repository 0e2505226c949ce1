"""Builders for engine tests: facts, workloads, clusters, and one-call evaluation."""

from __future__ import annotations

from typing import Any

from engine.evaluate import evaluate
from engine.facts import ClusterSnapshot, Fact, FleetSnapshot, Workload
from engine.findings import Evaluation, Finding, Gap
from engine.prices import PriceBook, default_price_book
from engine.thresholds import Thresholds

# A healthy Llama-3.1-8B on one L4 per replica: no rule fires on it as it is.
HEALTHY: dict[str, Any] = {
    "model.name": "meta-llama/Llama-3.1-8B-Instruct",
    "runtime.dtype": "bf16",
    "model.parameterCount": 8030261248,
    "model.numLayers": 32,
    "model.numKvHeads": 8,
    "model.headDim": 128,
    "model.maxModelLen": 8192,
    "hardware.gpuType": "NVIDIA-L4",
    "hardware.gpuCount": 1,
    "k8s.replicas": 2,
    "obs.gpu.utilAvgPct": 60,
    "obs.cpu.utilAvgPct": 20,
    "obs.vllm.kvCacheUsagePct": 30,
    "obs.vllm.requestsRunning": 6,
    "obs.vllm.requestsWaiting": 0,
    "obs.vllm.tokensPerSec": 100,
    "workload.class": "online",
}
L4 = 0.805
MONTH = 730


def facts(values: dict[str, Any], confidence: str = "high") -> dict[str, Fact]:
    """Wrap plain values as facts; a value of None drops the key."""
    return {
        key: Fact(value=value, dataConfidence=confidence)  # type: ignore[arg-type]
        for key, value in values.items()
        if value is not None
    }


def workload(workload_id: str, values: dict[str, Any], confidence: str = "high") -> Workload:
    """A workload from plain fact values."""
    return Workload(workload_id=workload_id, facts=facts(values, confidence))


def served(
    name: str = "llama-8b", changes: dict[str, Any] | None = None, namespace: str = "chat"
) -> Workload:
    """The healthy served model with some facts changed (None removes a fact)."""
    return workload(f"ns/{namespace}/deployment/{name}", {**HEALTHY, **(changes or {})})


def node(name: str, gpu: str = "nvidia-h100-80gb", total: int = 8, free: int = 8) -> Workload:
    """A GPU node workload."""
    return workload(
        f"ns/gpu-pool/node/{name}",
        {
            "hardware.gpuType": gpu,
            "hardware.gpuCount": total,
            "node.allocatedGpuCount": total - free,
            "node.unallocatedGpuCount": free,
        },
    )


def pod(
    name: str, gpus: int = 4, minutes: float = 95, gpu: str = "NVIDIA-H100-80GB-HBM3"
) -> Workload:
    """A pending GPU pod."""
    return workload(
        f"ns/training/pod/{name}",
        {"hardware.gpuType": gpu, "job.pendingGpuCount": gpus, "job.pendingSinceMinutes": minutes},
    )


def cluster(name: str, *workloads: Workload, region: str = "us-east-1") -> ClusterSnapshot:
    """A cluster snapshot."""
    return ClusterSnapshot(name=name, provider="aws", region=region, workloads=list(workloads))


def run(
    *items: Workload | ClusterSnapshot,
    prices: PriceBook | dict[str, float] | None = None,
    thresholds: dict[str, Any] | None = None,
) -> Evaluation:
    """Evaluate workloads (in one cluster 'prod') and/or whole clusters."""
    clusters = [item for item in items if isinstance(item, ClusterSnapshot)]
    loose = [item for item in items if isinstance(item, Workload)]
    if loose:
        clusters.append(cluster("prod", *loose))
    book = (
        prices
        if isinstance(prices, PriceBook)
        else PriceBook.from_mapping(prices)
        if prices is not None
        else default_price_book()
    )
    return evaluate(
        FleetSnapshot(clusters=clusters),
        book,
        thresholds=None if thresholds is None else Thresholds.model_validate(thresholds),
    )


def found(evaluation: Evaluation, rule: str) -> list[Finding]:
    """The findings of one rule."""
    return [f for f in evaluation.findings if f.rule == rule]


def gaps(evaluation: Evaluation, rule: str) -> list[Gap]:
    """The gaps of one rule."""
    return [g for g in evaluation.gaps if g.rule == rule]
