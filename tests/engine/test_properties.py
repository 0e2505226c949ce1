"""Properties that hold for any fleet: no negative savings, targets that fit, determinism."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.capacity import DEFAULT_CONSTANTS, build_profile, check, demand
from engine.catalog import default_catalog
from engine.evaluate import evaluate
from engine.facts import ClusterSnapshot, Fact, FleetSnapshot, Workload
from engine.findings import Evaluation
from engine.prices import default_price_book

MODELS = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "Qwen/Qwen2.5-32B-Instruct",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "acme/unknown-13b",
]
GPUS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4", "NVIDIA-A10G", "Tesla T4",
        "NVIDIA-L40S", "A100", "AMD Instinct MI300X"]  # fmt: skip
PCT = st.floats(min_value=0, max_value=100, allow_nan=False)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Mostly present, so rules that need many facts get to decide.
    return st.one_of(st.none(), strategy, strategy, strategy)


SERVED = st.fixed_dictionaries(
    {
        "model.name": st.sampled_from(MODELS),
        "runtime.dtype": maybe(st.sampled_from(["bf16", "float16", "fp32"])),
        "model.quantization": st.one_of(st.none(), st.sampled_from(["awq", "fp8", "int8"])),
        "model.maxModelLen": maybe(st.sampled_from([1024, 4096, 8192, 32768, 131072])),
        "hardware.gpuType": st.sampled_from(GPUS),
        "hardware.gpuCount": st.sampled_from([1, 2, 4, 8]),
        "k8s.replicas": st.integers(0, 8),
        "obs.gpu.utilAvgPct": maybe(PCT),
        "obs.cpu.utilAvgPct": maybe(PCT),
        "obs.vllm.kvCacheUsagePct": maybe(PCT),
        "obs.vllm.requestsRunning": maybe(st.integers(0, 64)),
        "obs.vllm.requestsWaiting": maybe(st.integers(0, 10)),
        "obs.vllm.tokensPerSec": maybe(st.floats(0, 2000)),
        "workload.class": maybe(st.sampled_from(["online", "batch", "agentic"])),
        "placement.nodeName": maybe(st.sampled_from(["n1", "n2"])),
        "slo.latencyP99Ms": maybe(st.sampled_from([500, 1000])),
        "obs.requestLatency.p99Ms": maybe(st.integers(100, 3000)),
        "vllm.gpuMemoryUtilization": maybe(st.floats(0.5, 0.95)),
    }
)
NODE = st.fixed_dictionaries(
    {
        "hardware.gpuType": st.sampled_from(GPUS),
        "hardware.gpuCount": st.just(8),
        "node.unallocatedGpuCount": st.integers(0, 8),
    }
)
POD = st.fixed_dictionaries(
    {
        "hardware.gpuType": st.sampled_from(GPUS),
        "job.pendingGpuCount": st.integers(1, 8),
        "job.pendingSinceMinutes": st.integers(0, 120),
    }
)


def to_workload(kind: str, index: int, values: dict[str, Any]) -> Workload:
    facts = {k: Fact(value=v, dataConfidence="high") for k, v in values.items() if v is not None}
    namespace = "gpu-pool" if kind == "node" else "ns1"
    return Workload(workload_id=f"ns/{namespace}/{kind}/w{index}", facts=facts)


@st.composite
def fleets(draw: st.DrawFn) -> FleetSnapshot:
    clusters = []
    for c in range(draw(st.integers(1, 3))):
        workloads = [
            to_workload("deployment", i, v)
            for i, v in enumerate(draw(st.lists(SERVED, max_size=5)))
        ]
        workloads += [
            to_workload("node", i, v) for i, v in enumerate(draw(st.lists(NODE, max_size=2)))
        ]
        workloads += [
            to_workload("pod", i, v) for i, v in enumerate(draw(st.lists(POD, max_size=2)))
        ]
        region = draw(st.sampled_from(["us-east-1", "us-west-2"]))
        clusters.append(ClusterSnapshot(name=f"c{c}", region=region, workloads=workloads))
    return FleetSnapshot(clusters=clusters)


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRICES = default_price_book()


def dump(evaluation: Evaluation) -> dict[str, Any]:
    return evaluation.model_dump(mode="json")


@PROPERTY
@given(fleets())
def test_savings_are_never_negative(fleet: FleetSnapshot) -> None:
    evaluation = evaluate(fleet, PRICES)
    for finding in evaluation.findings:
        json.dumps(finding.evidence, allow_nan=False)
        assert finding.monthly_usd >= 0
        assert all(claim.usd >= 0 for claim in finding.claims)
    assert evaluation.savings_total_usd() >= 0


@PROPERTY
@given(fleets())
def test_savings_total_never_exceeds_the_sum_of_savings_findings(fleet: FleetSnapshot) -> None:
    evaluation = evaluate(fleet, PRICES)
    total = sum(f.monthly_usd for f in evaluation.findings if f.kind == "savings")
    assert evaluation.savings_total_usd() <= total + 0.01


@PROPERTY
@given(fleets())
def test_recommended_targets_fit_by_the_capacity_model(fleet: FleetSnapshot) -> None:
    evaluation = evaluate(fleet, PRICES)
    catalog = default_catalog()
    workloads = {(c.name, w.workload_id): w for c in fleet.clusters for w in c.workloads}
    for finding in evaluation.findings:
        rec = finding.recommendation
        if finding.rule not in ("tier_misplacement", "oom_risk") or rec.target_gpu is None:
            continue
        assert finding.cluster is not None and rec.target_gpu_count is not None
        profile = build_profile(workloads[(finding.cluster, finding.subject)], catalog)
        need = demand(profile, DEFAULT_CONSTANTS, with_load=finding.rule == "tier_misplacement")
        assert need is not None
        target = catalog.gpu(rec.target_gpu)
        result = check(
            need, target, rec.target_gpu_count, PRICES.price(rec.target_gpu), DEFAULT_CONSTANTS
        )
        assert result.ok, (finding.rule, result)


@PROPERTY
@given(fleets(), st.randoms(use_true_random=False))
def test_evaluation_is_deterministic_and_order_independent(
    fleet: FleetSnapshot, rnd: random.Random
) -> None:
    first = dump(evaluate(fleet, PRICES))
    assert dump(evaluate(fleet, PRICES)) == first
    clusters = [
        c.model_copy(update={"workloads": rnd.sample(c.workloads, len(c.workloads))})
        for c in fleet.clusters
    ]
    shuffled = FleetSnapshot(clusters=rnd.sample(clusters, len(clusters)))
    assert dump(evaluate(shuffled, PRICES)) == first


FULL = st.fixed_dictionaries(
    {
        "model.name": st.sampled_from(MODELS[:-1]),
        "runtime.dtype": st.sampled_from(["bf16", "float16"]),
        "model.maxModelLen": st.sampled_from([1024, 4096, 8192, 32768]),
        "hardware.gpuType": st.sampled_from(GPUS[:6]),
        "hardware.gpuCount": st.sampled_from([1, 2, 4, 8]),
        "k8s.replicas": st.integers(1, 8),
        "obs.vllm.kvCacheUsagePct": PCT,
        "obs.vllm.requestsRunning": st.integers(0, 64),
        "obs.vllm.tokensPerSec": st.floats(0, 500),
        "vllm.gpuMemoryUtilization": st.floats(0.5, 0.95),
    }
)


@PROPERTY
@given(st.lists(FULL, min_size=1, max_size=6))
def test_tier_targets_fit_for_fully_described_models(served: list[dict[str, Any]]) -> None:
    workloads = [to_workload("deployment", i, values) for i, values in enumerate(served)]
    fleet = FleetSnapshot(clusters=[ClusterSnapshot(name="c", workloads=workloads)])
    evaluation = evaluate(fleet, PRICES)
    catalog = default_catalog()
    by_id = {w.workload_id: w for w in workloads}
    for finding in evaluation.findings:
        if finding.rule != "tier_misplacement":
            continue
        rec = finding.recommendation
        assert rec.target_gpu is not None and rec.target_gpu_count is not None
        need = demand(build_profile(by_id[finding.subject], catalog), DEFAULT_CONSTANTS)
        assert need is not None
        result = check(
            need, catalog.gpu(rec.target_gpu), rec.target_gpu_count, PRICES.price(rec.target_gpu),
            DEFAULT_CONSTANTS,
        )  # fmt: skip
        assert result.ok
        current = PRICES.price(str(rec.params["current_gpu"]))
        assert current is not None
        saved = 1 - (PRICES.price(rec.target_gpu) or 0) * rec.target_gpu_count / (
            current * int(rec.params["current_gpu_count"])
        )
        assert saved >= DEFAULT_CONSTANTS.min_savings_fraction - 1e-9
