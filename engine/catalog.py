"""The GPU and model catalog: specs, vendor-string normalisation and model lookup."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

_SEPARATORS = re.compile(r"[\s_]+")
_MEMORY = re.compile(r"^(\d+)GB?$")
_INSTANCE_SIZE = re.compile(r"(\.[a-z0-9]+|-\d+g|-\d+)$")
# Words a vendor string carries that say nothing about which GPU it is.
_NOISE = frozenset({"NVIDIA", "TESLA", "AMD", "INSTINCT", "HBM2", "HBM2E", "HBM3", "HBM3E", "GPU"})
# Time-slicing marks a shared but whole GPU; MIG profiles, which are slices, are not read.
_SHARED = "SHARED"
_FORMS = {"SXM": "SXM", "SXM2": "SXM", "SXM4": "SXM", "SXM5": "SXM", "PCIE": "PCIE", "MEGA": "MEGA"}
# Trailing name parts that do not change a model's architecture.
_MODEL_SUFFIXES = frozenset(
    {
        "instruct",
        "chat",
        "hf",
        "it",
        "base",
        "awq",
        "gptq",
        "fp8",
        "fp16",
        "bf16",
        "int4",
        "int8",
        "bnb",
        "4bit",
        "8bit",
        "gguf",
        "dynamic",
        "w4a16",
        "w8a8",
        "w8a16",
    }
)
# Lookups are cached up to this many distinct strings, so odd input cannot grow memory.
_CACHE_LIMIT = 4096
_MODEL_VERSION = re.compile(r"^(v\d+(\.\d+)*|\d{4})$")


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One GPU model's data-sheet figures."""

    id: str
    vendor: str
    family: str
    vram_gb: float
    bandwidth_gbs: float
    bf16_tflops: float
    bf16: bool
    fp8: bool
    compute_capability: str
    product_label: str
    aliases: tuple[str, ...] = ()
    forms: tuple[str, ...] = ("",)
    memory_alternates: tuple[int, ...] = ()
    memory_required: bool = False


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model's size and attention architecture."""

    name: str
    parameters: int
    layers: int
    kv_heads: int
    head_dim: int
    active_parameters: int | None = None
    aliases: tuple[str, ...] = ()

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.active_parameters is not None


def model_key(name: str) -> str:
    """The lookup key of a model name: no organisation, no suffixes, no separators."""
    text = _SEPARATORS.sub("-", name.strip().lower()).rsplit("/", 1)[-1]
    parts = [part for part in text.split("-") if part]
    while len(parts) > 1 and (parts[-1] in _MODEL_SUFFIXES or _MODEL_VERSION.match(parts[-1])):
        parts.pop()
    if len(parts) > 1 and parts[0] == "meta" and parts[1].startswith("llama"):
        parts.pop(0)
    return "".join(parts)


def _instance_key(text: str) -> str:
    key = _SEPARATORS.sub("-", text.strip().lower())
    key = key.removeprefix("standard-")
    return _INSTANCE_SIZE.sub("", key)


class Catalog:
    """GPU specs and model architectures, with lookups by vendor string and model name."""

    def __init__(self, gpus: list[GpuSpec], models: list[ModelSpec]) -> None:
        self._gpus = {gpu.id: gpu for gpu in gpus}
        self._by_family: dict[str, list[GpuSpec]] = {}
        self._aliases: dict[str, str] = {}
        for gpu in gpus:
            self._by_family.setdefault(gpu.family.upper(), []).append(gpu)
            for alias in gpu.aliases:
                self._aliases[_instance_key(alias)] = gpu.id
        self._models: dict[str, ModelSpec] = {}
        for model in models:
            for name in (model.name, *model.aliases):
                key = model_key(name)
                other = self._models.get(key)
                if other is not None and other.name != model.name:
                    raise ValueError(
                        f"model alias '{name}' names both {other.name} and {model.name}"
                    )
                self._models[key] = model
        # Fleets repeat the same few strings: remember each answer.
        self._normalised: dict[str, str | None] = {}
        self._by_name: dict[str, ModelSpec | None] = {}

    @classmethod
    def from_toml(cls, gpus_toml: str, models_toml: str) -> Catalog:
        """A catalog from the text of a GPU table and a model table."""
        gpu_data = tomllib.loads(gpus_toml)["gpus"]
        model_data = tomllib.loads(models_toml)["models"]
        gpus = [_gpu(gpu_id, spec) for gpu_id, spec in gpu_data.items()]
        models = [_model(name, spec) for name, spec in model_data.items()]
        return cls(gpus, models)

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """Every catalog GPU id."""
        return tuple(self._gpus)

    def gpus(self) -> tuple[GpuSpec, ...]:
        """Every GPU spec."""
        return tuple(self._gpus.values())

    def models(self) -> tuple[ModelSpec, ...]:
        """Every model spec (once each)."""
        return tuple({m.name: m for m in self._models.values()}.values())

    def gpu(self, gpu_id: str) -> GpuSpec | None:
        """The spec of a catalog GPU id, or None."""
        return self._gpus.get(gpu_id)

    def model(self, name: str) -> ModelSpec | None:
        """The model a Hugging Face name or common alias refers to, or None."""
        if name in self._by_name:
            return self._by_name[name]
        found = self._models.get(model_key(name))
        if len(self._by_name) < _CACHE_LIMIT:
            self._by_name[name] = found
        return found

    def normalise_gpu(self, vendor_string: str) -> str | None:
        """The catalog id a vendor GPU string names, or None when it is not certain."""
        if vendor_string in self._normalised:
            return self._normalised[vendor_string]
        found = self._aliases.get(_instance_key(vendor_string)) or self._parse(vendor_string)
        if len(self._normalised) < _CACHE_LIMIT:
            self._normalised[vendor_string] = found
        return found

    def _parse(self, vendor_string: str) -> str | None:
        tokens = [t for t in _SEPARATORS.sub("-", vendor_string.strip().upper()).split("-") if t]
        family: str | None = None
        memory: int | None = None
        form = ""
        for token in tokens:
            if token in _NOISE or token == _SHARED:
                continue
            if token in self._by_family and family is None:
                family = token
            elif token in _FORMS and not form:
                form = _FORMS[token]
            elif (match := _MEMORY.match(token)) and memory is None:
                memory = int(match.group(1))
            else:
                return None  # a word we do not understand: never guess
        if family is None:
            return None
        fits = [
            gpu
            for gpu in self._by_family[family]
            if form in gpu.forms
            and (
                (memory is None and not gpu.memory_required)
                or memory == gpu.vram_gb
                or memory in gpu.memory_alternates
            )
        ]
        return fits[0].id if len(fits) == 1 else None


def _gpu(gpu_id: str, spec: dict[str, Any]) -> GpuSpec:
    return GpuSpec(
        id=gpu_id,
        vendor=str(spec["vendor"]),
        family=str(spec["family"]),
        vram_gb=float(spec["vram_gb"]),
        bandwidth_gbs=float(spec["bandwidth_gbs"]),
        bf16_tflops=float(spec["bf16_tflops"]),
        bf16=bool(spec["bf16"]),
        fp8=bool(spec["fp8"]),
        compute_capability=str(spec["compute_capability"]),
        product_label=str(spec["product_label"]),
        aliases=tuple(spec.get("aliases", ())),
        forms=tuple(spec.get("forms", ("",))),
        memory_alternates=tuple(int(m) for m in spec.get("memory_alternates", ())),
        memory_required=bool(spec.get("memory_required", False)),
    )


def _model(name: str, spec: dict[str, Any]) -> ModelSpec:
    active = spec.get("active_parameters")
    return ModelSpec(
        name=name,
        parameters=int(spec["parameters"]),
        layers=int(spec["layers"]),
        kv_heads=int(spec["kv_heads"]),
        head_dim=int(spec["head_dim"]),
        active_parameters=None if active is None else int(active),
        aliases=tuple(spec.get("aliases", ())),
    )


def _data(name: str) -> str:
    return resources.files("engine").joinpath("data", name).read_text(encoding="utf-8")


class _Lazy:
    """Loads the bundled catalog on first use, so importing the engine reads no file."""

    _catalog: Catalog | None = None

    def get(self) -> Catalog:
        """The bundled catalog, read on the first call."""
        if self._catalog is None:
            self._catalog = Catalog.from_toml(_data("gpus.toml"), _data("models.toml"))
        return self._catalog


_DEFAULT = _Lazy()


def default_catalog() -> Catalog:
    """The catalog bundled with the engine."""
    return _DEFAULT.get()


if TYPE_CHECKING:
    DEFAULT_CATALOG: Catalog


def __getattr__(name: str) -> Any:
    # DEFAULT_CATALOG is loaded lazily, on first attribute access.
    if name == "DEFAULT_CATALOG":
        return default_catalog()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def normalise_gpu(vendor_string: str) -> str | None:
    """The bundled catalog's id for a vendor GPU string, or None."""
    return default_catalog().normalise_gpu(vendor_string)
