"""Model-level rules: conditions, threshold boundaries, dollars and recommendations."""

from __future__ import annotations

import pytest

from engine.prices import default_price_book
from tests.engine.enginekit import L4, MONTH, found, gaps, run, served

# Llama-3.2-1B (bf16) on an L40S with light load: L4 is the cheapest fit (v14).
SMALL = {
    "model.name": "meta-llama/Llama-3.2-1B-Instruct",
    "model.parameterCount": 1235814400,
    "model.numLayers": 16,
    "model.numKvHeads": 8,
    "model.headDim": 64,
    "hardware.gpuType": "NVIDIA-L40S",
    "k8s.replicas": 1,
    "obs.vllm.kvCacheUsagePct": 1,
    "obs.vllm.requestsRunning": 2,
    "obs.vllm.tokensPerSec": 60,
}


# --- tier_misplacement ---------------------------------------------------------------------


def test_tier_recommends_the_cheapest_fitting_gpu() -> None:
    [finding] = found(run(served("llama-1b", SMALL)), "tier_misplacement")
    assert finding.recommendation.action == "move_tier"
    assert (finding.recommendation.target_gpu, finding.recommendation.target_gpu_count) == (
        "L4-24GB",
        1,
    )
    assert finding.monthly_usd == pytest.approx((1.861 - 0.805) * MONTH)
    assert finding.kind == "savings"
    assert finding.claims[0].resource == "prod|ns/chat/deployment/llama-1b"
    rejected = {(r["gpu"], r["fails"]) for r in finding.evidence["rejected"]}
    assert ("T4-16GB", "dtype") in rejected
    assert finding.evidence["threshold"] == {"min_savings_fraction": 0.2}


def test_tier_dollars_scale_with_replicas() -> None:
    [finding] = found(run(served("llama-1b", {**SMALL, "k8s.replicas": 3})), "tier_misplacement")
    assert finding.monthly_usd == pytest.approx(round((1.861 - 0.805) * 3 * MONTH, 2))


def test_tier_saving_of_exactly_twenty_percent_fires() -> None:
    prices = {"L40S-48GB": 1.0, "L4-24GB": 0.8}
    [finding] = found(run(served("llama-1b", SMALL), prices=prices), "tier_misplacement")
    assert finding.monthly_usd == pytest.approx(0.2 * MONTH)


def test_tier_saving_just_under_twenty_percent_does_not_fire() -> None:
    prices = {"L40S-48GB": 1.0, "L4-24GB": 0.8001}
    assert not found(run(served("llama-1b", SMALL), prices=prices), "tier_misplacement")


def test_tier_confidence_is_capped_when_memory_utilisation_is_assumed() -> None:
    [finding] = found(run(served("llama-1b", SMALL)), "tier_misplacement")
    assert finding.confidence == "medium"
    assert any("gpuMemoryUtilization" in a for a in finding.evidence["assumptions"])
    stated = {**SMALL, "vllm.gpuMemoryUtilization": 0.9, "vllm.kvCacheDtype": "auto"}
    [finding] = found(run(served("llama-1b", stated)), "tier_misplacement")
    assert finding.confidence == "high"


def test_tier_without_model_size_claims_nothing_and_reports_a_gap() -> None:
    unknown = {**SMALL, "model.name": "acme/secret-1b", "model.parameterCount": None}
    evaluation = run(served("secret", unknown))
    assert not found(evaluation, "tier_misplacement")
    [gap] = gaps(evaluation, "tier_misplacement")
    assert "model.parameterCount" in gap.missing


def test_tier_takes_architecture_from_the_catalog_at_medium_confidence() -> None:
    values = {**SMALL, "model.numLayers": None, "model.numKvHeads": None, "model.headDim": None}
    [finding] = found(run(served("llama-1b", values)), "tier_misplacement")
    assert finding.confidence == "medium"
    assert any("catalog entry Llama-3.2-1B" in a for a in finding.evidence["assumptions"])


def test_tier_prefers_the_catalog_over_an_inferred_size() -> None:
    # piqc reads Mixtral-8x7B as 7B (medium confidence); the catalog knows 46.7B.
    values = {
        "model.name": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "model.parameterCount": 7_000_000_000,
        "hardware.gpuType": "NVIDIA-A100-SXM4-80GB",
        "hardware.gpuCount": 2,
        "k8s.replicas": 1,
        "obs.vllm.kvCacheUsagePct": 40,
        "obs.vllm.tokensPerSec": 120,
        "model.maxModelLen": 32768,
    }
    w = served("mixtral", values)
    w.facts["model.parameterCount"] = w.facts["model.parameterCount"].model_copy(
        update={"dataConfidence": "medium"}
    )
    assert not found(run(w), "tier_misplacement")


def test_tier_needs_a_price_for_the_current_gpu() -> None:
    evaluation = run(served("llama-1b", SMALL), prices={"L4-24GB": 0.805})
    assert not found(evaluation, "tier_misplacement")
    assert gaps(evaluation, "tier_misplacement")[0].missing == ["price:L40S-48GB"]


def test_unknown_gpu_string_is_a_gap() -> None:
    evaluation = run(served("llama-1b", {**SMALL, "hardware.gpuType": "Quantum-QPU-9000"}))
    assert not evaluation.findings
    [gap] = gaps(evaluation, "tier_misplacement")
    assert gap.missing == ["hardware.gpuType:unknown(Quantum-QPU-9000)"]


def test_tier_does_not_fire_when_the_current_config_cannot_start() -> None:
    values = {
        "model.name": "meta-llama/Llama-3.1-70B-Instruct",
        "model.parameterCount": 70553706496,
    }
    values |= {"model.numLayers": 80, "obs.gpu.utilAvgPct": 0}
    evaluation = run(served("llama-70b", values))
    assert not found(evaluation, "tier_misplacement")
    assert found(evaluation, "oom_risk")


# --- oom_risk ------------------------------------------------------------------------------


def test_oom_risk_prices_the_spend_at_risk_and_recommends_a_config_that_fits() -> None:
    values = {
        "model.name": "meta-llama/Llama-3.1-70B-Instruct",
        "model.parameterCount": 70553706496,
        "model.numLayers": 80,
        "k8s.replicas": 1,
    }
    [finding] = found(run(served("llama-70b", values)), "oom_risk")
    assert finding.kind == "risk"
    assert finding.monthly_usd == pytest.approx(L4 * MONTH)
    rec = finding.recommendation
    assert rec.action == "resize_config"
    assert (rec.target_gpu, rec.target_gpu_count) == ("L4-24GB", 8)
    assert finding.evidence["weights_gb"] == pytest.approx(141.11, abs=0.01)


def test_oom_risk_counts_at_least_one_replica() -> None:
    values = {
        "model.name": "meta-llama/Llama-3.1-70B-Instruct",
        "model.parameterCount": 70553706496,
        "model.numLayers": 80,
        "k8s.replicas": 0,
    }
    [finding] = found(run(served("llama-70b", values)), "oom_risk")
    assert finding.monthly_usd == pytest.approx(L4 * MONTH)


def test_oom_risk_boundary_is_one_max_length_sequence() -> None:
    # Llama-8B on one L4: 27,004 tokens of KV after weights at u = 0.9.
    assert not found(run(served(changes={"model.maxModelLen": 27004})), "oom_risk")
    assert found(run(served(changes={"model.maxModelLen": 27005})), "oom_risk")


# --- kv_cache_pressure ---------------------------------------------------------------------

PRESSURE = {
    "model.name": "meta-llama/Llama-3.1-70B-Instruct",
    "model.parameterCount": 70553706496,
    "model.numLayers": 80,
    "hardware.gpuType": "NVIDIA-A100-SXM4-80GB",
    "hardware.gpuCount": 4,
    "k8s.replicas": 1,
    "obs.gpu.utilAvgPct": 88,
    "obs.vllm.kvCacheUsagePct": 96,
    "obs.vllm.requestsRunning": 48,
    "obs.vllm.requestsWaiting": 12,
    "obs.vllm.tokensPerSec": 700,
    "model.maxModelLen": 32768,
}


def test_kv_pressure_on_gpu_without_fp8_adds_a_replica() -> None:
    [finding] = found(run(served("llama-70b", PRESSURE)), "kv_cache_pressure")
    rec = finding.recommendation
    assert rec.action == "add_replica"
    assert (rec.target_gpu, rec.target_gpu_count, rec.replicas) == ("A100-SXM-80GB", 4, 2)
    assert finding.monthly_usd == pytest.approx(4 * 3.43 * MONTH)
    assert finding.kind == "risk"
    assert [o["action"] for o in finding.evidence["options"]] == [
        "fp8_kv_cache",
        "reduce_max_model_len",
        "add_replica",
    ]


def test_kv_pressure_on_fp8_gpu_switches_the_kv_cache_to_fp8_for_free() -> None:
    values = {**PRESSURE, "hardware.gpuType": "NVIDIA-H100-80GB-HBM3"}
    [finding] = found(run(served("llama-70b", values)), "kv_cache_pressure")
    assert finding.recommendation.action == "fp8_kv_cache"
    assert finding.monthly_usd == 0


def test_kv_pressure_already_fp8_falls_through_to_a_replica() -> None:
    values = {**PRESSURE, "hardware.gpuType": "NVIDIA-H100-80GB-HBM3", "vllm.kvCacheDtype": "fp8"}
    [finding] = found(run(served("llama-70b", values)), "kv_cache_pressure")
    assert finding.recommendation.action == "add_replica"


def test_kv_pressure_shortens_max_length_when_the_max_length_drives_the_need() -> None:
    # Only reachable with a lowered threshold: at ≥ 90 % usage the observed tokens
    # with headroom always exceed the capacity.
    values = {
        "hardware.gpuType": "NVIDIA-A10G",
        "vllm.gpuMemoryUtilization": 0.8453,
        "obs.vllm.kvCacheUsagePct": 75,
        "obs.vllm.requestsWaiting": 2,
        "model.maxModelLen": 32768,
    }
    evaluation = run(served(changes=values), thresholds={"kv_pressure_pct": 70})
    [finding] = found(evaluation, "kv_cache_pressure")
    assert finding.recommendation.action == "reduce_max_model_len"
    assert finding.recommendation.params == {"max_model_len": 16384, "current_max_model_len": 32768}
    assert finding.monthly_usd == 0


@pytest.mark.parametrize(
    ("usage", "waiting", "fires"), [(90, 1, True), (89.9, 1, False), (95, 0, False)]
)
def test_kv_pressure_thresholds(usage: float, waiting: int, fires: bool) -> None:
    values = {**PRESSURE, "obs.vllm.kvCacheUsagePct": usage, "obs.vllm.requestsWaiting": waiting}
    assert bool(found(run(served("llama-70b", values)), "kv_cache_pressure")) is fires


def test_kv_pressure_without_architecture_still_adds_a_replica_at_medium_confidence() -> None:
    values = {**PRESSURE, "model.name": "acme/secret-70b", "model.numLayers": None}
    [finding] = found(run(served("x", values)), "kv_cache_pressure")
    assert finding.recommendation.action == "add_replica"
    assert finding.confidence == "medium"
    assert "not assessed" in finding.evidence["assumptions"][-1]


# --- idle_allocation -----------------------------------------------------------------------


@pytest.mark.parametrize(("util", "fires"), [(10, False), (9.99, True), (0, True)])
def test_idle_threshold_is_strictly_below_ten(util: float, fires: bool) -> None:
    values = {"obs.gpu.utilAvgPct": util, "k8s.replicas": 4}
    assert bool(found(run(served(changes=values)), "idle_allocation")) is fires


def test_idle_keeps_enough_replicas_for_half_utilisation() -> None:
    values = {"obs.gpu.utilAvgPct": 3, "k8s.replicas": 4}
    [finding] = found(run(served(changes=values)), "idle_allocation")
    assert finding.recommendation.replicas == 1
    assert finding.monthly_usd == pytest.approx(3 * L4 * MONTH)
    assert finding.evidence["threshold"] == {"idle_util_pct": 10.0, "idle_target_util_pct": 50.0}
    values = {"obs.gpu.utilAvgPct": 9, "k8s.replicas": 20}
    [finding] = found(run(served(changes=values)), "idle_allocation")
    assert finding.recommendation.replicas == 4  # ⌈20 × 9 / 50⌉


@pytest.mark.parametrize("replicas", [0, 1])
def test_idle_never_fires_below_two_replicas(replicas: int) -> None:
    values = {"obs.gpu.utilAvgPct": 0, "k8s.replicas": replicas}
    assert not found(run(served(changes=values)), "idle_allocation")


def test_idle_without_utilisation_is_a_gap() -> None:
    evaluation = run(served(changes={"obs.gpu.utilAvgPct": None}))
    assert gaps(evaluation, "idle_allocation")[0].missing == ["obs.gpu.utilAvgPct"]


# --- cold_start ----------------------------------------------------------------------------

COLD = {
    "autoscaling.enabled": True,
    "autoscaling.minReplicas": 0,
    "obs.coldStart.p95Sec": 240,
    "slo.coldStartSec": 60,
    "hardware.gpuType": "NVIDIA-H100-80GB-HBM3",
    "hardware.gpuCount": 4,
    "k8s.replicas": 0,
}


def test_cold_start_keeps_one_warm_replica() -> None:
    [finding] = found(run(served("sls", COLD)), "cold_start")
    assert finding.kind == "risk"
    assert finding.recommendation.action == "keep_warm_replica"
    assert finding.recommendation.params == {"min_replicas": 1}
    assert finding.monthly_usd == pytest.approx(4 * 6.88 * MONTH)


@pytest.mark.parametrize("change", [{"obs.coldStart.p95Sec": 60}, {"autoscaling.minReplicas": 1}])
def test_cold_start_within_slo_or_warm_does_not_fire(change: dict[str, object]) -> None:
    assert not found(run(served("sls", {**COLD, **change})), "cold_start")


def test_cold_start_with_partial_facts_is_a_gap_and_without_any_is_silent() -> None:
    evaluation = run(served("sls", {**COLD, "slo.coldStartSec": None}))
    assert gaps(evaluation, "cold_start")[0].missing == ["slo.coldStartSec"]
    assert not gaps(run(served()), "cold_start")


# --- batch_scheduling_gap ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("util", "cpu", "fires"),
    [
        (10, 20, True),
        (9.99, 20, False),
        (49.99, 20, True),
        (50, 20, False),
        (34, 85, False),
        (34, 84.9, True),
    ],
)
def test_batch_gap_boundaries(util: float, cpu: float, fires: bool) -> None:
    values = {"workload.class": "batch", "obs.gpu.utilAvgPct": util, "obs.cpu.utilAvgPct": cpu}
    assert bool(found(run(served(changes=values)), "batch_scheduling_gap")) is fires


def test_batch_gap_prices_the_idle_share_of_gpu_spend() -> None:
    values = {"workload.class": "batch", "obs.gpu.utilAvgPct": 34, "k8s.replicas": 3}
    [finding] = found(run(served(changes=values)), "batch_scheduling_gap")
    assert finding.monthly_usd == pytest.approx(round(3 * L4 * MONTH * 16 / 50, 2))
    assert finding.recommendation.action == "raise_batch_size"


def test_batch_gap_ignores_online_workloads() -> None:
    values = {"workload.class": "online", "obs.gpu.utilAvgPct": 34}
    assert not found(run(served(changes=values)), "batch_scheduling_gap")


def test_low_confidence_fact_lowers_the_finding_confidence() -> None:
    w = served(changes={"workload.class": "batch", "obs.gpu.utilAvgPct": 34})
    w.facts["obs.gpu.utilAvgPct"] = w.facts["obs.gpu.utilAvgPct"].model_copy(
        update={"dataConfidence": "low"}
    )
    [finding] = found(run(w), "batch_scheduling_gap")
    assert finding.confidence == "low"
    assert finding.evidence["facts"]["obs.gpu.utilAvgPct"] == {"value": 34, "confidence": "low"}


def test_rules_need_a_price_for_the_gpu() -> None:
    values = {"obs.gpu.utilAvgPct": 3, "k8s.replicas": 4}
    book = default_price_book().model_copy(update={"prices": {"T4-16GB": 0.526}})
    evaluation = run(served(changes=values), prices=book)
    assert not found(evaluation, "idle_allocation")
    assert gaps(evaluation, "idle_allocation")[0].missing == ["price:L4-24GB"]
