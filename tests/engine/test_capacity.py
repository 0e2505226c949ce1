"""The capacity model reproduces the worked figures of the scenarios (SPEC §5)."""

from __future__ import annotations

import math

import pytest

from engine.capacity import (
    DEFAULT_CONSTANTS,
    CapacityConstants,
    build_profile,
    candidates,
    cheapest_fit,
    decode_rate,
    demand,
    fits,
    kv_bytes_per_token,
    kv_capacity_tokens,
    observed_tokens,
    required_tokens,
    search,
    supports,
    usable_gb_per_gpu,
    weights_gb,
)
from engine.catalog import default_catalog
from engine.prices import PriceBook, default_price_book
from tests.engine.enginekit import workload

C = DEFAULT_CONSTANTS
V01_PRICES = PriceBook.from_mapping({**default_price_book().prices, "H100-SXM-80GB": 5.39})


def v01() -> dict[str, object]:
    return {
        "model.name": "mistralai/Mistral-7B-Instruct-v0.3",
        "runtime.dtype": "bf16",
        "model.parameterCount": 7248023552,
        "model.numLayers": 32,
        "model.numKvHeads": 8,
        "model.headDim": 128,
        "hardware.gpuType": "NVIDIA-H100-80GB-HBM3",
        "hardware.gpuCount": 1,
        "k8s.replicas": 1,
        "obs.vllm.kvCacheUsagePct": 3,
        "obs.vllm.requestsRunning": 4,
        "obs.vllm.tokensPerSec": 60,
        "model.maxModelLen": 8192,
    }


def v14() -> dict[str, object]:
    return {
        "model.name": "meta-llama/Llama-3.2-1B-Instruct",
        "runtime.dtype": "bf16",
        "model.parameterCount": 1235814400,
        "model.numLayers": 16,
        "model.numKvHeads": 8,
        "model.headDim": 64,
        "hardware.gpuType": "NVIDIA-L40S",
        "hardware.gpuCount": 1,
        "k8s.replicas": 1,
        "obs.vllm.kvCacheUsagePct": 1,
        "obs.vllm.requestsRunning": 2,
        "obs.vllm.tokensPerSec": 60,
        "model.maxModelLen": 8192,
    }


def test_formulas_reproduce_v01_figures() -> None:
    w = weights_gb(7248023552, 2)
    k = kv_bytes_per_token(32, 8, 128, 2)
    current = kv_capacity_tokens(1, usable_gb_per_gpu(80, 0.9, C), w, k)
    observed = observed_tokens(3, current)
    need = required_tokens(observed, 8192, C)
    a10g = kv_capacity_tokens(1, usable_gb_per_gpu(24, 0.9, C), w, k)
    assert round(w, 1) == 14.5
    assert math.floor(need) == 15879
    assert math.floor(a10g) == 38940
    assert round(decode_rate(4, 1, 600, w, observed, k, C), 1) == 89.1
    # L4 holds the tokens but cannot carry 1.25 × 60 tok/s at batch 4.
    assert decode_rate(4, 1, 300, w, observed, k, C) < 1.25 * 60


def test_search_reproduces_v01_choice_and_rejections() -> None:
    profile = build_profile(workload("ns/chat/deployment/mistral-7b", v01()), default_catalog())
    need = demand(profile, C)
    assert need is not None
    result = search(need, candidates(default_catalog(), V01_PRICES, C), C)
    assert result.fit is not None
    assert (result.fit.gpu_id, result.fit.gpu_count) == ("A10G-24GB", 1)
    assert math.floor(result.fit.kv_capacity_tokens or 0) == 38940
    assert round(result.fit.decode_rate or 0, 1) == 89.1
    assert [(r.gpu_id, r.reason) for r in result.rejected] == [
        ("T4-16GB", "dtype"),
        ("L4-24GB", "throughput"),
    ]


def test_formulas_reproduce_v14_figures() -> None:
    profile = build_profile(workload("ns/chat/deployment/llama-1b", v14()), default_catalog())
    need = demand(profile, C)
    assert need is not None
    assert round(need.weights_gb, 2) == 2.47
    assert math.floor(need.required_tokens) == 14773
    l4 = fits(profile, "L4-24GB", 1, catalog=default_catalog(), prices=default_price_book())
    t4 = fits(profile, "T4-16GB", 1, catalog=default_catalog(), prices=default_price_book())
    assert l4 is not None and l4.ok
    assert math.floor(l4.kv_capacity_tokens or 0) == 522716
    assert round(l4.decode_rate or 0, 1) == 125.9
    assert t4 is not None and t4.reason == "dtype"
    fit = cheapest_fit(profile, default_catalog(), default_price_book())
    assert fit is not None and (fit.gpu_id, fit.gpu_count) == ("L4-24GB", 1)


@pytest.mark.parametrize(
    ("dtype", "quantization", "gpu", "ok"),
    [
        ("bf16", None, "T4-16GB", False),
        ("bf16", None, "V100-32GB", False),
        ("bf16", None, "A10G-24GB", True),
        ("fp16", None, "T4-16GB", True),
        ("fp16", "fp8", "A100-SXM-80GB", False),
        ("fp16", "fp8", "L4-24GB", True),
        ("fp16", "awq", "T4-16GB", True),
    ],
)
def test_dtype_support(dtype: str, quantization: str | None, gpu: str, ok: bool) -> None:
    spec = default_catalog().gpu(gpu)
    assert spec is not None
    assert supports(spec, dtype, quantization) is ok


def test_candidates_are_cheapest_first_at_every_count() -> None:
    offered = candidates(default_catalog(), default_price_book(), C)
    assert len(offered) == 9 * 4
    costs = [c.usd_per_hour for c in offered]
    assert costs == sorted(costs)
    assert (offered[0].gpu.id, offered[0].n) == ("T4-16GB", 1)


def test_other_vendor_is_never_a_candidate() -> None:
    values = {**v01(), "hardware.gpuType": "AMD Instinct MI300X"}
    profile = build_profile(workload("ns/a/deployment/b", values), default_catalog())
    book = PriceBook.from_mapping({"MI300X-192GB": 6.0, "L4-24GB": 0.8})
    check = fits(profile, "L4-24GB", 1, catalog=default_catalog(), prices=book)
    assert check is not None and check.reason == "vendor"


def test_quantisation_decides_bytes_per_parameter() -> None:
    values = {**v01(), "model.quantization": "awq"}
    profile = build_profile(workload("ns/a/deployment/b", values), default_catalog())
    assert profile.bytes_per_param == 0.5


def test_fp8_kv_cache_halves_kv_bytes() -> None:
    values = {**v01(), "vllm.kvCacheDtype": "fp8"}
    profile = build_profile(workload("ns/a/deployment/b", values), default_catalog())
    need = demand(profile, C)
    assert need is not None and need.kv_bytes_per_token == 65536


def test_memory_utilisation_fact_replaces_the_default() -> None:
    values = {**v01(), "vllm.gpuMemoryUtilization": 0.5}
    profile = build_profile(workload("ns/a/deployment/b", values), default_catalog())
    assert profile.gpu_memory_utilization == 0.5
    assert profile.sources["gpu_memory_utilization"].origin == "fact"
    default = build_profile(workload("ns/a/deployment/b", v01()), default_catalog())
    assert default.sources["gpu_memory_utilization"].origin == "default"
    assert default.confidence(("gpu_memory_utilization",)) == "medium"


def test_architecture_falls_back_to_the_catalog_and_is_marked_assumed() -> None:
    values = {**v01(), "model.numLayers": None, "model.numKvHeads": None, "model.headDim": None}
    profile = build_profile(workload("ns/a/deployment/b", values), default_catalog())
    assert (profile.layers, profile.kv_heads, profile.head_dim) == (32, 8, 128)
    assert profile.sources["layers"].origin == "catalog"
    assert any("catalog entry Mistral-7B" in a for a in profile.assumptions(("layers",)))


def test_inferred_size_yields_to_the_catalog() -> None:
    values = {
        **v01(),
        "model.name": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "model.parameterCount": None,
    }
    w = workload("ns/a/deployment/b", values)
    w.facts["model.parameterCount"] = type(w.facts["runtime.dtype"])(
        value=7_000_000_000, dataConfidence="medium"
    )
    profile = build_profile(w, default_catalog())
    assert profile.parameters == 46702792704
    assert profile.sources["parameters"].origin == "catalog"


def test_unknown_model_size_leaves_demand_unknown() -> None:
    values = {**v01(), "model.name": "acme/secret-13b", "model.parameterCount": None}
    profile = build_profile(workload("ns/a/deployment/b", values), default_catalog())
    assert profile.missing(("parameters",)) == ["model.parameterCount"]
    assert demand(profile, C) is None


def test_constants_are_frozen_and_named() -> None:
    constants = CapacityConstants()
    assert constants.candidate_gpu_counts == (1, 2, 4, 8)
    assert constants.min_savings_fraction == 0.20
    with pytest.raises(ValueError):
        constants.reserve_gb_per_gpu = 3  # type: ignore[misc]
