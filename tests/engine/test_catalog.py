"""GPU vendor strings and model names resolve to catalog entries, or to nothing."""

from __future__ import annotations

import pytest

from engine.catalog import DEFAULT_CATALOG, default_catalog, normalise_gpu

SPEC_IDS = {
    "B200-180GB",
    "H200-141GB",
    "H100-SXM-80GB",
    "H100-PCIE-80GB",
    "A100-SXM-80GB",
    "A100-40GB",
    "L40S-48GB",
    "L4-24GB",
    "A10G-24GB",
    "A10-24GB",
    "T4-16GB",
    "V100-32GB",
    "MI300X-192GB",
}


def test_catalog_has_exactly_the_spec_gpu_ids() -> None:
    assert set(default_catalog().gpu_ids) == SPEC_IDS
    assert DEFAULT_CATALOG is default_catalog()


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("NVIDIA-H100-80GB-HBM3", "H100-SXM-80GB"),
        ("H100-SXM5-80GB", "H100-SXM-80GB"),
        ("nvidia-h100-80gb", "H100-SXM-80GB"),
        ("H100", "H100-SXM-80GB"),
        ("NVIDIA H100 80GB HBM3", "H100-SXM-80GB"),
        ("NVIDIA H100 PCIe", "H100-PCIE-80GB"),
        ("Tesla-T4", "T4-16GB"),
        ("Tesla T4", "T4-16GB"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-A100-SXM4-80GB", "A100-SXM-80GB"),
        ("NVIDIA-A100-SXM4-80GB-SHARED", "A100-SXM-80GB"),
        ("NVIDIA-L4", "L4-24GB"),
        ("NVIDIA-L40S", "L40S-48GB"),
        ("NVIDIA-A10G", "A10G-24GB"),
        ("NVIDIA A10", "A10-24GB"),
        ("Tesla V100-SXM2-32GB", "V100-32GB"),
        ("AMD Instinct MI300X", "MI300X-192GB"),
        ("nvidia-b200", "B200-180GB"),
        ("NVIDIA H200", "H200-141GB"),
        # GKE accelerator labels
        ("nvidia-tesla-t4", "T4-16GB"),
        ("nvidia-l4", "L4-24GB"),
        ("nvidia-tesla-a100", "A100-40GB"),
        ("nvidia-a100-80gb", "A100-SXM-80GB"),
        ("nvidia-h100-80gb", "H100-SXM-80GB"),
        ("nvidia-h100-mega-80gb", "H100-SXM-80GB"),
        # cloud instance types
        ("p5.48xlarge", "H100-SXM-80GB"),
        ("p5en.48xlarge", "H200-141GB"),
        ("p4d.24xlarge", "A100-40GB"),
        ("p4de.24xlarge", "A100-SXM-80GB"),
        ("g6e.xlarge", "L40S-48GB"),
        ("g5.xlarge", "A10G-24GB"),
        ("g6.xlarge", "L4-24GB"),
        ("g4dn.xlarge", "T4-16GB"),
        ("a3-highgpu-8g", "H100-SXM-80GB"),
        ("a2-ultragpu-1g", "A100-SXM-80GB"),
        ("g2-standard-4", "L4-24GB"),
        ("Standard_ND96isr_H100_v5", "H100-SXM-80GB"),
        ("Standard_NC4as_T4_v3", "T4-16GB"),
    ],
)
def test_vendor_strings_normalise_to_catalog_ids(vendor: str, expected: str) -> None:
    assert normalise_gpu(vendor) == expected


@pytest.mark.parametrize(
    "vendor",
    [
        "A100",  # 40 or 80 GB: unknown
        "V100",  # 16 or 32 GB
        "Tesla V100-SXM2-16GB",
        "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb",  # a slice, not a GPU
        "H100 NVL",
        "L40",
        "NVIDIA GeForce RTX 4090",
        "",
        "gpu",
    ],
)
def test_uncertain_vendor_strings_normalise_to_nothing(vendor: str) -> None:
    assert normalise_gpu(vendor) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
        ("Meta-Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
        ("llama-3.1-8b", "Llama-3.1-8B"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "Llama-3.1-8B"),
        ("meta-llama/Llama-3.3-70B-Instruct", "Llama-3.1-70B"),
        ("meta-llama/Llama-3.2-1B-Instruct", "Llama-3.2-1B"),
        ("meta-llama/Llama-2-7b-chat-hf", "Llama-2-7B"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "Mistral-7B"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
        ("Qwen/Qwen2.5-32B-Instruct", "Qwen2.5-32B"),
        ("Qwen/Qwen2.5-7B-Instruct-AWQ", "Qwen2.5-7B"),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "TinyLlama-1.1B"),
        ("google/gemma-2-9b-it", "Gemma-2-9B"),
        ("microsoft/Phi-3-mini-4k-instruct", "Phi-3-mini"),
        ("mistralai/Mistral-Nemo-Instruct-2407", "Mistral-Nemo-12B"),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "Llama-3.1-8B"),
    ],
)
def test_model_names_and_aliases_resolve(name: str, expected: str) -> None:
    spec = default_catalog().model(name)
    assert spec is not None and spec.name == expected


@pytest.mark.parametrize("name", ["acme/secret-13b", "Qwen/Qwen2-57B-A14B", "llama"])
def test_unknown_models_resolve_to_nothing(name: str) -> None:
    assert default_catalog().model(name) is None


def test_reference_architectures_are_in_the_catalog() -> None:
    catalog = default_catalog()
    tiny = catalog.model("TinyLlama-1.1B")
    mixtral = catalog.model("Mixtral-8x7B")
    assert tiny is not None and (tiny.layers, tiny.kv_heads, tiny.head_dim) == (22, 4, 64)
    assert mixtral is not None and mixtral.is_moe and mixtral.parameters > 46e9
    for name in [
        "Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B", "Llama-3.2-1B", "Llama-2-7B",
        "Mistral-7B", "Qwen2.5-1.5B", "Qwen2.5-7B", "Qwen2.5-32B", "Qwen2.5-72B",
    ]:  # fmt: skip
        assert catalog.model(name) is not None, name
