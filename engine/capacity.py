"""The capacity model (SPEC §5): does a model fit a GPU configuration, and how fast it decodes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from engine.catalog import Catalog, GpuSpec, ModelSpec, default_catalog
from engine.facts import Confidence, Fact, Workload, as_number, as_text
from engine.prices import PriceBook, default_price_book
from engine.units import GB

Origin = Literal["fact", "catalog", "default", "derived"]
FailReason = Literal["memory", "throughput", "dtype", "vendor", "no price", "unknown gpu"]
_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
_BY_RANK: tuple[Confidence, ...] = ("low", "medium", "high")


class CapacityConstants(BaseModel):
    """Every constant of the capacity model, named."""

    model_config = ConfigDict(frozen=True)

    bytes_per_param: dict[str, float] = {
        "fp32": 4.0,
        "fp16": 2.0,
        "bf16": 2.0,
        "fp8": 1.0,
        "int8": 1.0,
        "int4": 0.5,
        "awq": 0.5,
        "gptq": 0.5,
    }
    # Spellings vLLM and piqc use for the same dtype.
    dtype_aliases: dict[str, str] = {
        "bfloat16": "bf16",
        "float16": "fp16",
        "half": "fp16",
        "float32": "fp32",
        "float": "fp32",
        "float8": "fp8",
        "fp8_e4m3": "fp8",
        "fp8_e5m2": "fp8",
        "awq_marlin": "awq",
        "gptq_marlin": "gptq",
    }
    # Bytes per KV element: vLLM's `auto` keeps the 16-bit model dtype; fp8 halves it.
    kv_bytes_per_element: dict[str, float] = {"auto": 2.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0}
    default_kv_cache_dtype: str = "auto"
    default_gpu_memory_utilization: float = 0.90
    reserve_gb_per_gpu: float = 2.0
    observed_headroom: float = 1.25
    decode_efficiency: float = 0.6
    throughput_headroom: float = 1.25
    candidate_gpu_counts: tuple[int, ...] = (1, 2, 4, 8)
    min_savings_fraction: float = 0.20

    def dtype(self, raw: str | None) -> str | None:
        """The canonical dtype name for a spelling, or None when unknown."""
        if raw is None:
            return None
        name = raw.strip().lower()
        name = self.dtype_aliases.get(name, name)
        return name if name in self.bytes_per_param else None


DEFAULT_CONSTANTS = CapacityConstants()


# --- the formulas of SPEC §5, one function each -------------------------------------------


def weights_gb(parameters: float, bytes_per_param: float) -> float:
    """Resident weights in GB (all experts of a mixture-of-experts model)."""
    return parameters * bytes_per_param / GB


def kv_bytes_per_token(
    layers: int, kv_heads: int, head_dim: int, bytes_per_element: float
) -> float:
    """KV cache bytes per token: K and V for every layer and KV head."""
    return 2 * layers * kv_heads * head_dim * bytes_per_element


def usable_gb_per_gpu(vram_gb: float, utilization: float, constants: CapacityConstants) -> float:
    """GB per GPU the engine may use: VRAM × utilisation minus the activation reserve."""
    return vram_gb * utilization - constants.reserve_gb_per_gpu


def kv_capacity_tokens(n: int, usable_gb: float, weights: float, kv_per_token: float) -> float:
    """Tokens of KV cache n GPUs hold after the weights (negative when the weights do not fit)."""
    return (n * usable_gb - weights) * GB / kv_per_token


def observed_tokens(kv_usage_pct: float, capacity_tokens: float) -> float:
    """Tokens in the KV cache now: usage × the current configuration's capacity."""
    return kv_usage_pct / 100 * max(0.0, capacity_tokens)


def required_tokens(observed: float, max_model_len: float, constants: CapacityConstants) -> float:
    """Tokens a configuration must hold: observed with headroom, or one full sequence."""
    return max(constants.observed_headroom * observed, max_model_len)


def decode_rate(
    running: float,
    n: int,
    bandwidth_gbs: float,
    weights: float,
    observed: float,
    kv_per_token: float,
    constants: CapacityConstants,
) -> float:
    """Generation tokens/s: every decode step reads the weights and the live KV cache."""
    bytes_per_step_gb = weights + observed * kv_per_token / GB
    return max(1.0, running) * constants.decode_efficiency * n * bandwidth_gbs / bytes_per_step_gb


def supports(gpu: GpuSpec, dtype: str | None, quantization: str | None) -> bool:
    """True when the GPU runs the weights' dtype natively (bf16 needs Ampere; fp8 needs Ada)."""
    needs = {dtype, quantization}
    if "bf16" in needs and not gpu.bf16:
        return False
    return not ("fp8" in needs and not gpu.fp8)


# --- what a workload says ----------------------------------------------------------------


class Source(NamedTuple):
    """Where one profile figure came from."""

    origin: Origin
    ref: str  # the fact key, the catalog model name, or the constant's name
    confidence: Confidence


# Profile field → the fact key a user would add to supply it.
FACT_KEYS: dict[str, str] = {
    "model_name": "model.name",
    "parameters": "model.parameterCount",
    "dtype": "runtime.dtype",
    "bytes_per_param": "runtime.dtype",
    "quantization": "model.quantization",
    "layers": "model.numLayers",
    "kv_heads": "model.numKvHeads",
    "head_dim": "model.headDim",
    "kv_cache_dtype": "vllm.kvCacheDtype",
    "kv_bytes_per_element": "vllm.kvCacheDtype",
    "max_model_len": "model.maxModelLen",
    "kv_usage_pct": "obs.vllm.kvCacheUsagePct",
    "requests_running": "obs.vllm.requestsRunning",
    "requests_waiting": "obs.vllm.requestsWaiting",
    "tokens_per_sec": "obs.vllm.tokensPerSec",
    "gpu_util": "obs.gpu.utilAvgPct",
    "cpu_util": "obs.cpu.utilAvgPct",
    "gpu_memory_utilization": "vllm.gpuMemoryUtilization",
    "gpu": "hardware.gpuType",
    "gpu_count": "hardware.gpuCount",
    "replicas": "k8s.replicas",
}
SIZE = ("parameters", "bytes_per_param")
ARCHITECTURE = ("layers", "kv_heads", "head_dim")
LOAD = ("kv_usage_pct", "requests_running", "tokens_per_sec")
PLACEMENT = ("gpu", "gpu_count")


@dataclass(slots=True)
class ModelProfile:
    """What a workload says about its model, load and placement, and where each figure came from."""

    workload_id: str
    model_name: str | None = None
    model: ModelSpec | None = None
    parameters: float | None = None
    dtype: str | None = None
    quantization: str | None = None
    bytes_per_param: float | None = None
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    kv_cache_dtype: str | None = None
    kv_bytes_per_element: float | None = None
    max_model_len: float | None = None
    kv_usage_pct: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    tokens_per_sec: float | None = None
    gpu_util: float | None = None
    cpu_util: float | None = None
    gpu_memory_utilization: float = DEFAULT_CONSTANTS.default_gpu_memory_utilization
    gpu_raw: str | None = None
    gpu_id: str | None = None
    gpu: GpuSpec | None = None
    gpu_count: int | None = None
    replicas: int | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    facts: dict[str, Fact] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def missing(self, fields: tuple[str, ...]) -> list[str]:
        """The fact keys that would supply the fields still unknown."""
        out: list[str] = []
        for name in fields:
            if getattr(self, name) is None:
                note = self.notes.get(name)
                out.append(note or FACT_KEYS.get(name, name))
        return out

    def fact_evidence(self, fields: tuple[str, ...]) -> dict[str, dict[str, object]]:
        """The facts behind `fields`: key → value and confidence."""
        out: dict[str, dict[str, object]] = {}
        for name in fields:
            source = self.sources.get(name)
            if source is not None and source.origin == "fact":
                fact = self.facts[source.ref]
                out[source.ref] = {"value": fact.value, "confidence": fact.dataConfidence}
        return out

    def assumptions(self, fields: tuple[str, ...]) -> list[str]:
        """What had to be taken from the catalog or a default for `fields`."""
        out: list[str] = []
        for name in fields:
            source = self.sources.get(name)
            if source is None or source.origin == "fact":
                continue
            key = FACT_KEYS.get(name, name)
            if source.origin == "catalog":
                out.append(f"{key} from the catalog entry {source.ref}")
            elif source.origin == "default":
                out.append(f"{key} not reported; assumed {source.ref}")
        return list(dict.fromkeys(out))

    def confidence(self, fields: tuple[str, ...]) -> Confidence:
        """The lowest confidence of the figures used; medium at most when any was assumed."""
        rank = 2
        for name in fields:
            source = self.sources.get(name)
            if source is None:
                continue
            rank = min(rank, _RANK[source.confidence])
            if source.origin in ("catalog", "default"):
                rank = min(rank, 1)
        return _BY_RANK[rank]


def build_profile(
    workload: Workload, catalog: Catalog, constants: CapacityConstants = DEFAULT_CONSTANTS
) -> ModelProfile:
    """Read a served-model workload's facts into a profile, filling gaps from the catalog."""
    facts = workload.facts
    p = ModelProfile(workload_id=workload.workload_id, facts=facts)

    def read(name: str, key: str) -> Fact | None:
        found = facts.get(key)
        if found is not None:
            p.sources[name] = Source("fact", key, found.dataConfidence)
        return found

    def number(name: str, key: str) -> float | None:
        found = read(name, key)
        value = None if found is None else as_number(found.value)
        if value is None:
            p.sources.pop(name, None)
        return value

    def count(name: str, key: str, minimum: int) -> int | None:
        value = number(name, key)
        if value is None or value != int(value) or value < minimum:
            p.sources.pop(name, None)
            return None
        return int(value)

    # Model identity and size.
    name_fact = read("model_name", "model.name")
    p.model_name = as_text(name_fact.value) if name_fact else None
    p.model = catalog.model(p.model_name) if p.model_name else None
    size_fact = facts.get("model.parameterCount")
    size = as_number(size_fact.value) if size_fact else None
    if size is not None and size > 0 and size_fact is not None:
        # piqc infers the size from the name (it reads Mixtral-8x7B as 7B): a known
        # catalog entry beats an inferred figure.
        if size_fact.dataConfidence != "high" and p.model is not None:
            p.parameters = float(p.model.parameters)
            p.sources["parameters"] = Source("catalog", p.model.name, "high")
        else:
            p.parameters = size
            p.sources["parameters"] = Source(
                "fact", "model.parameterCount", size_fact.dataConfidence
            )
    elif p.model is not None:
        p.parameters = float(p.model.parameters)
        p.sources["parameters"] = Source("catalog", p.model.name, "high")

    # Weights dtype: a quantisation decides the bytes per parameter, the dtype the hardware.
    dtype_key = "runtime.dtype" if "runtime.dtype" in facts else "vllm.dtype"
    dtype_fact = read("dtype", dtype_key)
    if dtype_fact is not None:
        p.dtype = constants.dtype(as_text(dtype_fact.value))
        if p.dtype is None:
            p.sources.pop("dtype", None)
            p.notes["dtype"] = f"{dtype_key}:unknown({dtype_fact.value})"
    quant_fact = read("quantization", "model.quantization")
    quant_text = as_text(quant_fact.value) if quant_fact else None
    if quant_text is not None and quant_text.lower() in ("none", "null"):
        quant_text = None
    if quant_text is None:
        p.sources.pop("quantization", None)
    else:
        p.quantization = constants.dtype(quant_text)
        if p.quantization is None:
            p.sources.pop("quantization", None)
            p.notes["bytes_per_param"] = f"model.quantization:unknown({quant_text})"
    if quant_text is not None:
        if p.quantization is not None:
            p.bytes_per_param = constants.bytes_per_param[p.quantization]
            p.sources["bytes_per_param"] = p.sources["quantization"]
    elif p.dtype is not None:
        p.bytes_per_param = constants.bytes_per_param[p.dtype]
        p.sources["bytes_per_param"] = p.sources["dtype"]

    # Attention architecture: facts first, then the catalog by model name.
    for name, key in (("layers", "model.numLayers"), ("kv_heads", "model.numKvHeads")):
        setattr(p, name, count(name, key, 1))
    p.head_dim = count("head_dim", "model.headDim", 1)
    if p.model is not None:
        for name in ARCHITECTURE:
            if getattr(p, name) is None:
                setattr(p, name, getattr(p.model, name))
                p.sources[name] = Source("catalog", p.model.name, "high")

    kv_fact = read("kv_cache_dtype", "vllm.kvCacheDtype")
    kv_text = (as_text(kv_fact.value) if kv_fact else None) or None
    if kv_text is None:
        p.sources["kv_cache_dtype"] = Source(
            "default", f"{constants.default_kv_cache_dtype} (16-bit)", "high"
        )
        kv_text = constants.default_kv_cache_dtype
    kv_name = kv_text.lower()
    kv_name = kv_name if kv_name == "auto" else (constants.dtype(kv_name) or kv_name)
    p.kv_cache_dtype = kv_name
    p.kv_bytes_per_element = constants.kv_bytes_per_element.get(kv_name)
    if p.kv_bytes_per_element is None:
        p.notes["kv_bytes_per_element"] = f"vllm.kvCacheDtype:unknown({kv_text})"
    else:
        p.sources["kv_bytes_per_element"] = p.sources["kv_cache_dtype"]

    # Load and limits.
    length_key = "model.maxModelLen" if "model.maxModelLen" in facts else "vllm.maxModelLen"
    p.max_model_len = number("max_model_len", length_key)
    if p.max_model_len is not None and p.max_model_len <= 0:
        p.max_model_len = None
    p.kv_usage_pct = number("kv_usage_pct", "obs.vllm.kvCacheUsagePct")
    p.requests_running = number("requests_running", "obs.vllm.requestsRunning")
    p.requests_waiting = number("requests_waiting", "obs.vllm.requestsWaiting")
    p.tokens_per_sec = number("tokens_per_sec", "obs.vllm.tokensPerSec")
    p.gpu_util = number("gpu_util", "obs.gpu.utilAvgPct")
    p.cpu_util = number("cpu_util", "obs.cpu.utilAvgPct")
    u = number("gpu_memory_utilization", "vllm.gpuMemoryUtilization")
    if u is not None and 1 < u <= 100:
        u = u / 100  # the same fraction written as a percentage
    if u is None or not 0 < u <= 1:
        p.sources["gpu_memory_utilization"] = Source(
            "default", str(constants.default_gpu_memory_utilization), "high"
        )
        u = constants.default_gpu_memory_utilization
    p.gpu_memory_utilization = u

    # Placement.
    gpu_fact = read("gpu", "hardware.gpuType")
    p.gpu_raw = as_text(gpu_fact.value) if gpu_fact else None
    if p.gpu_raw is not None:
        p.gpu_id = catalog.normalise_gpu(p.gpu_raw)
        p.gpu = catalog.gpu(p.gpu_id) if p.gpu_id else None
        if p.gpu is None:
            p.sources.pop("gpu", None)
            p.notes["gpu"] = f"hardware.gpuType:unknown({p.gpu_raw})"
    p.gpu_count = count("gpu_count", "hardware.gpuCount", 1)
    p.replicas = count("replicas", "k8s.replicas", 0)
    return p


# --- fitting a profile to a configuration ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Demand:
    """What any configuration must carry for one workload, from its current configuration."""

    weights_gb: float
    kv_bytes_per_token: float
    current_capacity_tokens: float
    observed_tokens: float
    required_tokens: float
    required_rate: float
    running: float
    utilization: float
    vendor: str
    dtype: str | None
    quantization: str | None

    def as_evidence(self) -> dict[str, float]:
        """The demand figures, rounded for people."""
        return {
            "weights_gb": round(self.weights_gb, 2),
            "kv_bytes_per_token": round(self.kv_bytes_per_token),
            "kv_capacity_tokens": math.floor(self.current_capacity_tokens),
            "observed_tokens": math.floor(self.observed_tokens),
            "required_tokens": math.floor(self.required_tokens),
            "required_tokens_per_sec": round(self.required_rate, 1),
            "gpu_memory_utilization": self.utilization,
        }


# The profile fields a demand needs, with and without observed load.
DEMAND_FIELDS = (*SIZE, *ARCHITECTURE, "kv_bytes_per_element", "max_model_len", *PLACEMENT)
DEMAND_FIELDS_WITH_LOAD = (*DEMAND_FIELDS, *LOAD, "gpu_memory_utilization", "kv_cache_dtype")


def demand(
    profile: ModelProfile, constants: CapacityConstants, *, with_load: bool = True
) -> Demand | None:
    """The memory and throughput a workload needs; None when a needed figure is unknown.

    Without load (for a configuration that does not even start), nothing is observed
    and no throughput is required.
    """
    p = profile
    if (
        p.parameters is None
        or p.bytes_per_param is None
        or p.layers is None
        or p.kv_heads is None
        or p.head_dim is None
        or p.kv_bytes_per_element is None
        or p.max_model_len is None
        or p.gpu is None
        or p.gpu_count is None
    ):
        return None
    if with_load and (
        p.kv_usage_pct is None or p.requests_running is None or p.tokens_per_sec is None
    ):
        return None
    w = weights_gb(p.parameters, p.bytes_per_param)
    k = kv_bytes_per_token(p.layers, p.kv_heads, p.head_dim, p.kv_bytes_per_element)
    usable = usable_gb_per_gpu(p.gpu.vram_gb, p.gpu_memory_utilization, constants)
    capacity = kv_capacity_tokens(p.gpu_count, usable, w, k)
    observed = observed_tokens(p.kv_usage_pct or 0.0, capacity) if with_load else 0.0
    return Demand(
        weights_gb=w,
        kv_bytes_per_token=k,
        current_capacity_tokens=capacity,
        observed_tokens=observed,
        required_tokens=required_tokens(observed, p.max_model_len, constants),
        required_rate=constants.throughput_headroom * (p.tokens_per_sec or 0.0)
        if with_load
        else 0.0,
        running=(p.requests_running or 0.0) if with_load else 0.0,
        utilization=p.gpu_memory_utilization,
        vendor=p.gpu.vendor,
        dtype=p.dtype,
        quantization=p.quantization,
    )


@dataclass(frozen=True, slots=True)
class FitCheck:
    """One candidate configuration checked against a demand."""

    gpu_id: str
    gpu_count: int
    usd_per_hour: float | None
    kv_capacity_tokens: float | None
    decode_rate: float | None
    required_tokens: float
    required_rate: float
    reason: FailReason | None

    @property
    def ok(self) -> bool:
        """True when the configuration fits."""
        return self.reason is None

    def as_evidence(self) -> dict[str, object]:
        """The check's figures, rounded for people."""
        return {
            "gpu": self.gpu_id,
            "gpu_count": self.gpu_count,
            "usd_per_hour": None if self.usd_per_hour is None else round(self.usd_per_hour, 4),
            "kv_capacity_tokens": None
            if self.kv_capacity_tokens is None
            else math.floor(self.kv_capacity_tokens),
            "decode_tokens_per_sec": None
            if self.decode_rate is None
            else round(self.decode_rate, 1),
            "fails": self.reason,
        }


Fit = FitCheck  # a FitCheck whose reason is None


def check(
    need: Demand,
    gpu: GpuSpec | None,
    n: int,
    price: float | None,
    constants: CapacityConstants,
    *,
    gpu_id: str = "",
) -> FitCheck:
    """Whether n GPUs of one type carry the demand, and if not, why."""
    usd = None if price is None else price * n
    if gpu is None:
        return FitCheck(
            gpu_id, n, usd, None, None, need.required_tokens, need.required_rate, "unknown gpu"
        )
    base = (gpu.id, n, usd)
    if gpu.vendor != need.vendor:
        return FitCheck(*base, None, None, need.required_tokens, need.required_rate, "vendor")
    if not supports(gpu, need.dtype, need.quantization):
        return FitCheck(*base, None, None, need.required_tokens, need.required_rate, "dtype")
    usable = usable_gb_per_gpu(gpu.vram_gb, need.utilization, constants)
    capacity = kv_capacity_tokens(n, usable, need.weights_gb, need.kv_bytes_per_token)
    rate = decode_rate(
        need.running,
        n,
        gpu.bandwidth_gbs,
        need.weights_gb,
        need.observed_tokens,
        need.kv_bytes_per_token,
        constants,
    )
    reason: FailReason | None = None
    if capacity < need.required_tokens:
        reason = "memory"
    elif rate < need.required_rate:
        reason = "throughput"
    elif price is None:
        reason = "no price"
    return FitCheck(*base, capacity, rate, need.required_tokens, need.required_rate, reason)


def fits(
    profile: ModelProfile,
    gpu_id: str,
    n: int,
    *,
    catalog: Catalog | None = None,
    prices: PriceBook | None = None,
    constants: CapacityConstants = DEFAULT_CONSTANTS,
) -> FitCheck | None:
    """Check one configuration for a workload; None when the workload's demand is unknown."""
    need = demand(profile, constants)
    if need is None:
        return None
    cat = catalog or default_catalog()
    book = prices or default_price_book()
    return check(need, cat.gpu(gpu_id), n, book.price(gpu_id), constants, gpu_id=gpu_id)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A configuration the price book offers: n GPUs of one type and its hourly cost."""

    gpu: GpuSpec
    n: int
    price: float

    @property
    def usd_per_hour(self) -> float:
        """Hourly cost of the whole configuration."""
        return self.price * self.n


def candidates(
    catalog: Catalog, prices: PriceBook, constants: CapacityConstants
) -> tuple[Candidate, ...]:
    """Every priced catalog GPU at every candidate count, cheapest first (ties: fewer GPUs, id)."""
    out = [
        Candidate(gpu, n, price)
        for gpu_id, price in prices.prices.items()
        if (gpu := catalog.gpu(gpu_id)) is not None
        for n in constants.candidate_gpu_counts
    ]
    return tuple(sorted(out, key=lambda c: (c.usd_per_hour, c.n, c.gpu.id)))


@dataclass(frozen=True, slots=True)
class Search:
    """The cheapest fitting configuration and the cheaper ones that were rejected."""

    fit: FitCheck | None
    rejected: tuple[FitCheck, ...]


def search(
    need: Demand,
    offered: tuple[Candidate, ...],
    constants: CapacityConstants,
    *,
    below_usd_per_hour: float | None = None,
) -> Search:
    """Walk the candidates cheapest first; stop at the first fit or at the cost bound."""
    rejected: list[FitCheck] = []
    for cand in offered:
        if below_usd_per_hour is not None and cand.usd_per_hour >= below_usd_per_hour:
            break
        result = check(need, cand.gpu, cand.n, cand.price, constants)
        if result.ok:
            return Search(result, tuple(rejected))
        rejected.append(result)
    return Search(None, tuple(rejected))


def cheapest_fit(
    profile: ModelProfile,
    catalog: Catalog,
    prices: PriceBook,
    constants: CapacityConstants = DEFAULT_CONSTANTS,
) -> Fit | None:
    """The cheapest configuration in the price book that carries the workload, or None."""
    need = demand(profile, constants)
    if need is None:
        return None
    return search(need, candidates(catalog, prices, constants), constants).fit
