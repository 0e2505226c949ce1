"""A synthetic GPU fleet for benchmarks: clusters of GPU nodes running served models.

Realistic mixes of the catalog's GPUs and models: deployments sized to fit their GPUs,
some idle or CPU-bound, nodes with unallocated GPUs, pods pending for GPUs, and the
same models served in several clusters.
"""

from __future__ import annotations

import math
import random
from typing import Any

from engine.catalog import Catalog, ModelSpec, default_catalog
from engine.facts import ClusterSnapshot, Fact, FleetSnapshot, Workload

GPUS_PER_NODE = 8
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1")
# Vendor strings as scanners report them, weighted by how common each GPU is.
GPU_MIX: tuple[tuple[str, str, int], ...] = (
    ("H100-SXM-80GB", "NVIDIA-H100-80GB-HBM3", 25),
    ("A100-SXM-80GB", "NVIDIA-A100-SXM4-80GB", 15),
    ("A100-40GB", "NVIDIA-A100-SXM4-40GB", 10),
    ("H200-141GB", "NVIDIA-H200", 5),
    ("L40S-48GB", "NVIDIA-L40S", 10),
    ("L4-24GB", "NVIDIA-L4", 15),
    ("A10G-24GB", "NVIDIA-A10G", 12),
    ("T4-16GB", "Tesla T4", 8),
)
MODEL_NAMES: dict[str, str] = {
    "Llama-3.1-8B": "meta-llama/Llama-3.1-8B-Instruct",
    "Llama-3.1-70B": "meta-llama/Llama-3.1-70B-Instruct",
    "Llama-3.2-1B": "meta-llama/Llama-3.2-1B-Instruct",
    "Llama-3.2-3B": "meta-llama/Llama-3.2-3B-Instruct",
    "Mistral-7B": "mistralai/Mistral-7B-Instruct-v0.3",
    "Mixtral-8x7B": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "Qwen2.5-7B": "Qwen/Qwen2.5-7B-Instruct",
    "Qwen2.5-14B": "Qwen/Qwen2.5-14B-Instruct",
    "Qwen2.5-32B": "Qwen/Qwen2.5-32B-Instruct",
    "Qwen2.5-72B": "Qwen/Qwen2.5-72B-Instruct",
    "Gemma-2-9B": "google/gemma-2-9b-it",
    "Mistral-Nemo-12B": "mistralai/Mistral-Nemo-Instruct-2407",
}
CLASSES = ("online", "online", "online", "agentic", "batch", "embedding")


def _fact(value: Any, confidence: str = "high") -> Fact:
    return Fact(value=value, dataConfidence=confidence)  # type: ignore[arg-type]


def _replica_gpus(model: ModelSpec, vram_gb: float, bytes_per_param: float) -> int | None:
    # Smallest tensor-parallel size whose usable memory holds the weights with room for KV.
    weights = model.parameters * bytes_per_param / 1e9
    for n in (1, 2, 4, 8):
        if n * (vram_gb * 0.9 - 2) > weights * 1.3:
            return n
    return None


def _deployment(
    rng: random.Random,
    name: str,
    model: ModelSpec,
    vendor: str,
    n: int,
    replicas: int,
    node: str,
    dtype: str,
) -> Workload:
    util = rng.choice((rng.uniform(0, 10), rng.uniform(10, 50), rng.uniform(50, 95)))
    kv = min(99.0, rng.uniform(0, 100))
    facts: dict[str, Fact] = {
        "model.name": _fact(MODEL_NAMES[model.name]),
        "runtime.engineType": _fact("vllm"),
        "runtime.dtype": _fact(dtype),
        "model.maxModelLen": _fact(rng.choice((4096, 8192, 8192, 16384))),
        "hardware.gpuType": _fact(vendor),
        "hardware.gpuCount": _fact(n),
        "k8s.replicas": _fact(replicas),
        "obs.gpu.utilAvgPct": _fact(round(util, 1)),
        "obs.cpu.utilAvgPct": _fact(round(rng.uniform(5, 99), 1)),
        "obs.vllm.kvCacheUsagePct": _fact(round(kv, 1)),
        "obs.vllm.requestsRunning": _fact(rng.randint(0, 32)),
        "obs.vllm.requestsWaiting": _fact(rng.choice((0, 0, 0, rng.randint(1, 20)))),
        "obs.vllm.tokensPerSec": _fact(round(rng.uniform(1, 400), 1)),
        "workload.class": _fact(rng.choice(CLASSES)),
        "placement.nodeName": _fact(node),
    }
    # piqc infers the size from the name; Steward-annotated workloads state the architecture.
    if rng.random() < 0.5:
        facts["model.parameterCount"] = _fact(model.parameters)
        facts["model.numLayers"] = _fact(model.layers)
        facts["model.numKvHeads"] = _fact(model.kv_heads)
        facts["model.headDim"] = _fact(model.head_dim)
    else:
        facts["model.parameterCount"] = _fact(model.parameters, "medium")
    if rng.random() < 0.2:
        facts["obs.requestLatency.p99Ms"] = _fact(rng.randint(200, 4000))
        facts["slo.latencyP99Ms"] = _fact(1000)
    if rng.random() < 0.1:
        facts["placement.gpuNumaNodes"] = _fact([rng.randint(0, 1)])
        facts["placement.cpuNumaNodes"] = _fact([rng.randint(0, 1)])
    if rng.random() < 0.05:
        facts["autoscaling.minReplicas"] = _fact(0)
        facts["obs.coldStart.p95Sec"] = _fact(rng.randint(20, 300))
        facts["slo.coldStartSec"] = _fact(60)
    return Workload(workload_id=f"ns/serve/deployment/{name}", facts=facts)


def _node(name: str, vendor: str, free: int) -> Workload:
    return Workload(
        workload_id=f"ns/gpu-pool/node/{name}",
        facts={
            "hardware.gpuType": _fact(vendor),
            "hardware.gpuCount": _fact(GPUS_PER_NODE),
            "node.allocatedGpuCount": _fact(GPUS_PER_NODE - free),
            "node.unallocatedGpuCount": _fact(free),
        },
    )


def _pod(name: str, vendor: str, gpus: int, minutes: int) -> Workload:
    return Workload(
        workload_id=f"ns/training/pod/{name}",
        facts={
            "hardware.gpuType": _fact(vendor),
            "job.pendingGpuCount": _fact(gpus),
            "job.pendingSinceMinutes": _fact(minutes),
        },
    )


def generate_cluster(
    rng: random.Random, name: str, region: str, gpus: int, catalog: Catalog
) -> ClusterSnapshot:
    """One cluster of about `gpus` GPUs: pools of 8-GPU nodes, deployments filling them."""
    models = [m for key in MODEL_NAMES if (m := catalog.model(key)) is not None]
    weights = [w for _, _, w in GPU_MIX]
    workloads: list[Workload] = []
    nodes = max(1, gpus // GPUS_PER_NODE)
    deployment = 0
    for index in range(nodes):
        gpu_id, vendor, _ = rng.choices(GPU_MIX, weights)[0]
        spec = catalog.gpu(gpu_id)
        assert spec is not None
        node_name = f"{name}-{gpu_id.lower()}-{index}"
        free = GPUS_PER_NODE
        # A few nodes stay dark; the rest are filled with replicas that fit.
        if rng.random() >= 0.05:
            for _ in range(8):
                model = rng.choice(models)
                dtype = "bf16" if spec.bf16 else "fp16"
                n = _replica_gpus(model, spec.vram_gb, 2.0)
                if n is None or n > free:
                    continue
                replicas = max(1, min(free // n, rng.randint(1, 4)))
                # Replicas of one deployment spread over nodes of the pool; count them here.
                workloads.append(
                    _deployment(
                        rng,
                        f"{model.name.lower()}-{deployment}",
                        model,
                        vendor,
                        n,
                        replicas,
                        node_name,
                        dtype,
                    )
                )
                deployment += 1
                free -= n * replicas
                if free == 0:
                    break
        workloads.append(_node(node_name, vendor, free))
    for index in range(max(1, nodes // 200)):
        gpu_id, vendor, _ = rng.choices(GPU_MIX, weights)[0]
        workloads.append(
            _pod(f"{name}-job-{index}", vendor, rng.choice((1, 2, 4, 8)), rng.randint(5, 240))
        )
    return ClusterSnapshot(name=name, provider="aws", region=region, workloads=workloads)


def generate_fleet(
    total_gpus: int, *, seed: int = 7, gpus_per_cluster: int = 2000, catalog: Catalog | None = None
) -> FleetSnapshot:
    """A fleet of about `total_gpus` GPUs split into clusters across regions."""
    rng = random.Random(seed)
    cat = catalog or default_catalog()
    count = max(2, math.ceil(total_gpus / gpus_per_cluster))
    per_cluster = total_gpus // count
    clusters = [
        generate_cluster(rng, f"cluster-{i:03d}", REGIONS[i % len(REGIONS)], per_cluster, cat)
        for i in range(count)
    ]
    return FleetSnapshot(clusters=clusters)


def gpu_count(fleet: FleetSnapshot) -> int:
    """GPUs on the fleet's nodes."""
    return sum(
        int(w.facts["hardware.gpuCount"].value)
        for c in fleet.clusters
        for w in c.workloads
        if w.kind == "node"
    )
