"""Node-level rules: CPU against GPU, NUMA, noisy neighbours and dark GPUs."""

from __future__ import annotations

import pytest

from tests.engine.enginekit import L4, MONTH, cluster, found, gaps, node, run, served

# --- cpu_gpu_imbalance ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("util", "cpu", "fires"),
    [(49.99, 85, True), (50, 95, False), (34, 84.99, False), (0, 100, True)],
)
def test_cpu_gpu_imbalance_boundaries(util: float, cpu: float, fires: bool) -> None:
    values = {"obs.gpu.utilAvgPct": util, "obs.cpu.utilAvgPct": cpu}
    assert bool(found(run(served(changes=values)), "cpu_gpu_imbalance")) is fires


def test_cpu_bound_agent_is_imbalance_not_batch_gap_idle_or_tier() -> None:
    values = {
        "model.name": "Qwen/Qwen2.5-32B-Instruct",
        "model.parameterCount": 32763876352,
        "model.numLayers": 64,
        "hardware.gpuType": "NVIDIA-A100-SXM4-80GB",
        "hardware.gpuCount": 2,
        "k8s.replicas": 2,
        "obs.gpu.utilAvgPct": 34,
        "obs.cpu.utilAvgPct": 95,
        "obs.vllm.kvCacheUsagePct": 40,
        "obs.vllm.tokensPerSec": 90,
        "model.maxModelLen": 32768,
        "workload.class": "agentic",
    }
    evaluation = run(served("qwen-32b-agent", values, namespace="coding"))
    assert [f.rule for f in evaluation.findings] == ["cpu_gpu_imbalance"]
    [finding] = evaluation.findings
    assert finding.level == "node"
    assert finding.monthly_usd == pytest.approx(round(3.43 * 4 * MONTH * 16 / 50, 2))


def test_batch_at_low_cpu_is_batch_gap_not_imbalance() -> None:
    values = {"workload.class": "batch", "obs.gpu.utilAvgPct": 34, "k8s.replicas": 3}
    evaluation = run(served(changes=values))
    assert found(evaluation, "batch_scheduling_gap")
    assert not found(evaluation, "cpu_gpu_imbalance")


def test_cpu_gpu_imbalance_without_cpu_is_a_gap() -> None:
    evaluation = run(served(changes={"obs.cpu.utilAvgPct": None}))
    assert gaps(evaluation, "cpu_gpu_imbalance")[0].missing == ["obs.cpu.utilAvgPct"]


# --- numa_misalignment ---------------------------------------------------------------------


def test_numa_misalignment_names_the_node() -> None:
    values = {
        "placement.nodeName": "gpu-a-3",
        "placement.gpuNumaNodes": [1],
        "placement.cpuNumaNodes": [0],
        "k8s.replicas": 1,
    }
    [finding] = found(run(served(changes=values)), "numa_misalignment")
    assert finding.subject == "ns/chat/deployment/llama-8b"
    assert finding.evidence["node"] == "gpu-a-3"
    assert finding.monthly_usd == pytest.approx(round(0.1 * L4 * MONTH, 2))
    assert finding.recommendation.params["topology_manager_policy"] == "single-numa-node"


@pytest.mark.parametrize(("gpu", "cpu"), [([0], [0, 1]), ([0, 1], [0, 1]), ("1", "0-1")])
def test_numa_aligned_does_not_fire(gpu: object, cpu: object) -> None:
    values = {"placement.gpuNumaNodes": gpu, "placement.cpuNumaNodes": cpu}
    assert not found(run(served(changes=values)), "numa_misalignment")


def test_numa_with_one_side_reported_is_a_gap_and_with_none_is_silent() -> None:
    evaluation = run(served(changes={"placement.gpuNumaNodes": [1]}))
    assert gaps(evaluation, "numa_misalignment")[0].missing == ["placement.cpuNumaNodes"]
    assert not gaps(run(served()), "numa_misalignment")


# --- colocation_conflict -------------------------------------------------------------------

CHAT = {
    "placement.nodeName": "gpu-b-1",
    "obs.requestLatency.p99Ms": 2400,
    "slo.latencyP99Ms": 1000,
    "k8s.replicas": 1,
}
NOISY = {"placement.nodeName": "gpu-b-1", "obs.cpu.utilAvgPct": 92, "workload.class": "batch"}


def test_colocation_conflict_names_node_and_neighbour() -> None:
    evaluation = run(served("chat", CHAT), served("embed", NOISY, namespace="offline"))
    [finding] = found(evaluation, "colocation_conflict")
    assert finding.subject == "ns/chat/deployment/chat"
    assert finding.evidence["node"] == "gpu-b-1"
    assert finding.evidence["neighbour"] == "ns/offline/deployment/embed"
    assert finding.recommendation.action == "separate_workloads"
    assert finding.monthly_usd == pytest.approx(round(0.1 * L4 * MONTH, 2))


@pytest.mark.parametrize(
    ("chat", "noisy"),
    [
        ({}, {"obs.cpu.utilAvgPct": 84.9}),
        ({}, {"placement.nodeName": "gpu-b-2"}),
        ({"obs.requestLatency.p99Ms": 1000}, {}),
    ],
)
def test_colocation_needs_late_workload_and_saturated_neighbour_on_the_same_node(
    chat: dict[str, object], noisy: dict[str, object]
) -> None:
    evaluation = run(served("chat", {**CHAT, **chat}), served("embed", {**NOISY, **noisy}))
    assert not found(evaluation, "colocation_conflict")


def test_same_node_name_in_another_cluster_is_not_a_neighbour() -> None:
    evaluation = run(cluster("a", served("chat", CHAT)), cluster("b", served("embed", NOISY)))
    assert not found(evaluation, "colocation_conflict")


def test_colocation_with_slo_but_no_latency_is_a_gap() -> None:
    evaluation = run(served("chat", {**CHAT, "obs.requestLatency.p99Ms": None}))
    assert gaps(evaluation, "colocation_conflict")[0].missing == ["obs.requestLatency.p99Ms"]


# --- dark_capacity -------------------------------------------------------------------------


def test_dark_capacity_prices_unallocated_gpus() -> None:
    [finding] = found(run(node("h100-node-07")), "dark_capacity")
    assert finding.subject == "ns/gpu-pool/node/h100-node-07"
    assert finding.monthly_usd == pytest.approx(40179.2)
    assert finding.recommendation.action == "scale_pool_down"
    assert finding.claims[0].resource == "prod|ns/gpu-pool/node/h100-node-07"


def test_fully_allocated_node_is_not_dark() -> None:
    assert not run(node("n", free=0)).findings


def test_unallocated_is_derived_from_capacity_and_allocation() -> None:
    w = node("n", free=3)
    del w.facts["node.unallocatedGpuCount"]
    [finding] = found(run(w), "dark_capacity")
    assert finding.monthly_usd == pytest.approx(3 * 6.88 * MONTH)


def test_dark_capacity_gaps_for_unknown_gpu_and_missing_price() -> None:
    evaluation = run(node("n", gpu="Quantum-QPU"), node("m", gpu="AMD Instinct MI300X"))
    assert not evaluation.findings
    assert sorted(g.missing[0] for g in gaps(evaluation, "dark_capacity")) == [
        "hardware.gpuType:unknown(Quantum-QPU)",
        "price:MI300X-192GB",
    ]
