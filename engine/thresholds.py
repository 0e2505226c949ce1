"""Every threshold the rules use, in one configurable place (SPEC §6)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """Rule thresholds; override any of them with `Thresholds.model_validate({...})`."""

    # Unknown names are rejected so a misspelt override cannot silently do nothing.
    model_config = ConfigDict(frozen=True, extra="forbid")

    idle_util_pct: float = Field(10.0, ge=0, le=100, description="idle_allocation: GPU util below")
    idle_target_util_pct: float = Field(
        50.0, gt=0, le=100, description="idle_allocation: util the remaining replicas may reach"
    )
    batch_util_min_pct: float = Field(
        10.0, ge=0, le=100, description="batch_scheduling_gap: GPU util at least"
    )
    batch_util_max_pct: float = Field(
        50.0, gt=0, le=100, description="batch_scheduling_gap: GPU util below; also the target"
    )
    cpu_saturation_pct: float = Field(
        85.0, ge=0, le=100, description="CPU util at which the CPU is the bottleneck"
    )
    gpu_low_util_pct: float = Field(
        50.0, gt=0, le=100, description="cpu_gpu_imbalance: GPU util below; also the target"
    )
    kv_pressure_pct: float = Field(
        90.0, ge=0, le=100, description="kv_cache_pressure: KV cache usage at least"
    )
    kv_waiting_requests: float = Field(
        0.0, ge=0, description="kv_cache_pressure: requests waiting above"
    )
    fleet_util_pct: float = Field(
        30.0, ge=0, le=100, description="fleet_rebalance: every cluster's GPU util below"
    )
    fleet_target_util_pct: float = Field(
        50.0, gt=0, le=100, description="fleet_rebalance: util the remaining replicas may reach"
    )
    fleet_min_clusters: int = Field(2, ge=2, description="fleet_rebalance: clusters serving it")
    pending_minutes: float = Field(
        30.0, ge=0, description="regional_capacity_gap: pods pending at least this long"
    )
    numa_spend_fraction: float = Field(
        0.10, ge=0, le=1, description="numa_misalignment: share of GPU spend lost"
    )
    colocation_spend_fraction: float = Field(
        0.10, ge=0, le=1, description="colocation_conflict: share of GPU spend at risk"
    )


DEFAULT_THRESHOLDS = Thresholds()
