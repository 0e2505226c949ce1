"""The rule table: every rule's id, level, scope, function and the thresholds it reads.

Adding a rule is adding a function and a row here, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.findings import Level
from engine.rules import fleet, model, node
from engine.rules.context import Result, Role

Scope = Literal["workload", "cluster", "fleet"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule: what it is called, where it looks, and which thresholds decide it.

    `function` takes (WorkloadContext, Env) for scope "workload" (called for each workload
    whose role is in `roles`), (ClusterView, Env) for "cluster", (FleetView, Env) for "fleet".
    """

    id: str
    level: Level
    scope: Scope
    function: Callable[[Any, Any], Result]
    thresholds: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ("model",)


RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        "tier_misplacement", "model", "workload", model.tier_misplacement, ("min_savings_fraction",)
    ),
    RuleSpec("oom_risk", "model", "workload", model.oom_risk, ("reserve_gb_per_gpu",)),
    RuleSpec(
        "kv_cache_pressure",
        "model",
        "workload",
        model.kv_cache_pressure,
        ("kv_pressure_pct", "kv_waiting_requests"),
    ),
    RuleSpec(
        "idle_allocation",
        "model",
        "workload",
        model.idle_allocation,
        ("idle_util_pct", "idle_target_util_pct"),
    ),
    RuleSpec("cold_start", "model", "workload", model.cold_start),
    RuleSpec(
        "batch_scheduling_gap",
        "model",
        "workload",
        model.batch_scheduling_gap,
        ("batch_util_min_pct", "batch_util_max_pct", "cpu_saturation_pct"),
    ),
    RuleSpec(
        "cpu_gpu_imbalance",
        "node",
        "workload",
        node.cpu_gpu_imbalance,
        ("gpu_low_util_pct", "cpu_saturation_pct"),
    ),
    RuleSpec(
        "numa_misalignment", "node", "workload", node.numa_misalignment, ("numa_spend_fraction",)
    ),
    RuleSpec(
        "colocation_conflict",
        "node",
        "cluster",
        node.colocation_conflict,
        ("cpu_saturation_pct", "colocation_spend_fraction"),
    ),
    RuleSpec("dark_capacity", "node", "workload", node.dark_capacity, roles=("node",)),
    RuleSpec(
        "fleet_rebalance",
        "fleet",
        "fleet",
        fleet.fleet_rebalance,
        ("fleet_util_pct", "fleet_target_util_pct", "fleet_min_clusters"),
    ),
    RuleSpec(
        "regional_capacity_gap",
        "fleet",
        "fleet",
        fleet.regional_capacity_gap,
        ("pending_minutes",),
        roles=("pod", "node"),
    ),
)
RULE_IDS: tuple[str, ...] = tuple(spec.id for spec in RULES)


def rule(rule_id: str) -> RuleSpec:
    """The spec of one rule by id."""
    for spec in RULES:
        if spec.id == rule_id:
            return spec
    raise KeyError(f"no rule '{rule_id}'; rules: {', '.join(RULE_IDS)}")
