"""Model-level rules: is this model on the right hardware, with the right replicas and limits."""

from __future__ import annotations

import math
from typing import Any

from engine.capacity import (
    ARCHITECTURE,
    DEMAND_FIELDS,
    DEMAND_FIELDS_WITH_LOAD,
    LOAD,
    PLACEMENT,
    SIZE,
    check,
    demand,
    search,
)
from engine.findings import Recommendation
from engine.rules.context import (
    EPS,
    Env,
    Result,
    WorkloadContext,
    ceil_ratio,
    spend,
    workload_finding,
)
from engine.units import GB, HOURS_PER_MONTH

TIER_NEEDS = (*SIZE, *ARCHITECTURE, "kv_bytes_per_element", "max_model_len", *LOAD, *PLACEMENT)


def tier_misplacement(ctx: WorkloadContext, env: Env) -> Result:
    """A cheaper configuration in the price book carries this model's memory and load."""
    rule = "tier_misplacement"
    p = ctx.profile
    missing = p.missing((*TIER_NEEDS, "replicas"))
    if missing:
        return [ctx.gap(rule, missing)]
    need = ctx.demand
    assert need is not None and p.gpu_id is not None and p.gpu_count is not None
    assert p.max_model_len is not None and p.replicas is not None
    if need.current_capacity_tokens < p.max_model_len or p.replicas == 0:
        return []  # a configuration that cannot start is oom_risk's; no replicas, no spend
    price = env.prices.price(p.gpu_id)
    if price is None:
        return [ctx.gap(rule, [f"price:{p.gpu_id}"])]
    current_hourly = price * p.gpu_count
    keep = 1 - env.constants.min_savings_fraction
    found = search(need, env.offered, env.constants, below_usd_per_hour=current_hourly * keep + EPS)
    target = found.fit
    if target is None or target.usd_per_hour is None:
        return []
    monthly = (current_hourly - target.usd_per_hour) * p.replicas * HOURS_PER_MONTH
    if monthly <= 0:
        return []
    target_price = env.prices.price(target.gpu_id)
    assert target_price is not None
    # Any-valued, so mypy does not match these figures against workload_finding's keywords.
    figures: dict[str, Any] = need.as_evidence()
    return [
        workload_finding(
            ctx,
            rule,
            level="model",
            kind="savings",
            monthly=monthly,
            fields=(*DEMAND_FIELDS_WITH_LOAD, "replicas"),
            threshold={"min_savings_fraction": env.constants.min_savings_fraction},
            prices={p.gpu_id: price, target.gpu_id: target_price},
            recommendation=Recommendation(
                action="move_tier",
                target_gpu=target.gpu_id,
                target_gpu_count=target.gpu_count,
                replicas=p.replicas,
                params={"current_gpu": p.gpu_id, "current_gpu_count": p.gpu_count},
            ),
            model=p.model.name if p.model else p.model_name,
            **figures,
            current=check(need, p.gpu, p.gpu_count, price, env.constants).as_evidence(),
            target=target.as_evidence(),
            rejected=[r.as_evidence() for r in found.rejected],
            savings_fraction=round(1 - target.usd_per_hour / current_hourly, 4),
        )
    ]


def oom_risk(ctx: WorkloadContext, env: Env) -> Result:
    """Weights, the reserve and one maxModelLen sequence do not fit the current GPUs."""
    rule = "oom_risk"
    p = ctx.profile
    missing = p.missing(DEMAND_FIELDS)
    if missing:
        return [ctx.gap(rule, missing)]
    need = demand(p, env.constants, with_load=False)
    assert need is not None and p.max_model_len is not None
    if need.current_capacity_tokens >= p.max_model_len:
        return []
    money, gap = spend(ctx, rule, need_replicas=False)
    if money is None:
        return [gap] if gap else []
    replicas = max(1, p.replicas or 0)
    monthly = money.replica_monthly_usd * replicas
    # Sized for one full sequence and no observed load: a configuration that cannot hold
    # one sequence tells nothing about its traffic.
    found = search(need, env.offered, env.constants)
    prices = {money.gpu_id: money.price}
    params: dict[str, object] = {"current_gpu": money.gpu_id, "current_gpu_count": money.gpu_count}
    target = found.fit
    if target is not None:
        target_price = env.prices.price(target.gpu_id)
        assert target_price is not None
        prices[target.gpu_id] = target_price
    else:
        params["reason"] = "no configuration in the price book holds the weights and one sequence"
    return [
        workload_finding(
            ctx,
            rule,
            level="model",
            kind="risk",
            monthly=monthly,
            fields=(*DEMAND_FIELDS, "gpu_memory_utilization", "replicas"),
            threshold={"reserve_gb_per_gpu": env.constants.reserve_gb_per_gpu},
            prices=prices,
            recommendation=Recommendation(
                action="resize_config",
                target_gpu=None if target is None else target.gpu_id,
                target_gpu_count=None if target is None else target.gpu_count,
                replicas=p.replicas,
                params=params,
            ),
            model=p.model.name if p.model else p.model_name,
            weights_gb=round(need.weights_gb, 2),
            kv_bytes_per_token=round(need.kv_bytes_per_token),
            kv_capacity_tokens=math.floor(need.current_capacity_tokens),
            max_model_len=p.max_model_len,
            needed_gb_per_replica=round(
                need.weights_gb
                + p.max_model_len * need.kv_bytes_per_token / GB
                + env.constants.reserve_gb_per_gpu * money.gpu_count,
                2,
            ),
            usable_gb_per_replica=round(
                (p.gpu.vram_gb if p.gpu else 0) * p.gpu_memory_utilization * money.gpu_count,
                2,
            ),
            current=check(need, p.gpu, money.gpu_count, money.price, env.constants).as_evidence(),
            target=None if target is None else target.as_evidence(),
        )
    ]


def kv_cache_pressure(ctx: WorkloadContext, env: Env) -> Result:
    """The KV cache is full and requests queue: fp8 KV, a shorter max length, or a replica."""
    rule = "kv_cache_pressure"
    p = ctx.profile
    th = env.thresholds
    missing = p.missing(("kv_usage_pct", "requests_waiting"))
    if missing:
        return [ctx.gap(rule, missing)]
    assert p.kv_usage_pct is not None and p.requests_waiting is not None
    if p.kv_usage_pct < th.kv_pressure_pct or p.requests_waiting <= th.kv_waiting_requests:
        return []
    money, gap = spend(ctx, rule, need_replicas=False)
    if money is None:
        return [gap] if gap else []
    need = ctx.demand
    options: list[dict[str, object]] = []
    choice: Recommendation | None = None
    cost = 0.0
    extra: list[str] = []
    if need is not None and p.gpu is not None and p.max_model_len is not None:
        capacity = need.current_capacity_tokens
        if not p.gpu.fp8:
            options.append({"action": "fp8_kv_cache", "fits": False, "why": "no fp8 on the GPU"})
        elif p.kv_cache_dtype == "fp8":
            options.append({"action": "fp8_kv_cache", "fits": False, "why": "already fp8"})
        else:
            fp8_bytes = env.constants.kv_bytes_per_element["fp8"]
            fp8_capacity = capacity * (p.kv_bytes_per_element or fp8_bytes) / fp8_bytes
            fits = fp8_capacity >= need.required_tokens
            options.append(
                {
                    "action": "fp8_kv_cache",
                    "fits": fits,
                    "kv_capacity_tokens": math.floor(fp8_capacity),
                }
            )
            if fits:
                choice = Recommendation(action="fp8_kv_cache", params={"kv_cache_dtype": "fp8"})
        if choice is None:
            observed_need = env.constants.observed_headroom * need.observed_tokens
            shorter = _shorter_length(p.max_model_len, observed_need, capacity)
            options.append(
                {
                    "action": "reduce_max_model_len",
                    "fits": shorter is not None,
                    "max_model_len": shorter,
                }
            )
            if shorter is not None:
                choice = Recommendation(
                    action="reduce_max_model_len",
                    params={"max_model_len": shorter, "current_max_model_len": p.max_model_len},
                )
    else:
        missing_fit = p.missing(TIER_NEEDS)
        extra.append(
            "capacity model unavailable (missing "
            + ", ".join(missing_fit)
            + "): fp8 KV cache and a shorter max length not assessed"
        )
    if choice is None:
        cost = money.replica_monthly_usd
        choice = Recommendation(
            action="add_replica",
            target_gpu=money.gpu_id,
            target_gpu_count=money.gpu_count,
            replicas=None if p.replicas is None else p.replicas + 1,
            params={"add_replicas": 1},
        )
        options.append({"action": "add_replica", "fits": True, "monthly_usd": round(cost, 2)})
    fields: tuple[str, ...] = (*DEMAND_FIELDS_WITH_LOAD, "requests_waiting", "replicas")
    if need is None:
        fields = ("kv_usage_pct", "requests_waiting", "gpu", "gpu_count", "replicas")
    figures: dict[str, Any] = need.as_evidence() if need is not None else {}
    return [
        workload_finding(
            ctx,
            rule,
            level="model",
            kind="risk",
            monthly=cost,
            fields=fields,
            extra_assumptions=tuple(extra),
            threshold=env.threshold("kv_pressure_pct", "kv_waiting_requests"),
            prices={money.gpu_id: money.price},
            recommendation=choice,
            **figures,
            options=options,
        )
    ]


def _shorter_length(max_model_len: float, observed_need: float, capacity: float) -> int | None:
    """The longest power-of-two max length below the current one that the KV cache holds."""
    if max_model_len <= observed_need:
        return None  # the observed load, not the max length, drives what is required
    ceiling = min(capacity, max_model_len - 1)
    if ceiling < 1:
        return None
    length = 1 << math.floor(math.log2(ceiling))
    return length if length >= observed_need and length >= 1 else None


def idle_allocation(ctx: WorkloadContext, env: Env) -> Result:
    """Replicas sit idle: fewer would carry the load at the target utilisation."""
    rule = "idle_allocation"
    p = ctx.profile
    th = env.thresholds
    missing = p.missing(("gpu_util", "replicas"))
    if missing:
        return [ctx.gap(rule, missing)]
    assert p.gpu_util is not None and p.replicas is not None
    if p.replicas == 0 or p.gpu_util >= th.idle_util_pct:
        return []
    target = max(1, ceil_ratio(p.replicas * p.gpu_util / th.idle_target_util_pct))
    if target >= p.replicas:
        return []
    money, gap = spend(ctx, rule)
    if money is None:
        return [gap] if gap else []
    removed = p.replicas - target
    return [
        workload_finding(
            ctx,
            rule,
            level="model",
            kind="savings",
            monthly=removed * money.replica_monthly_usd,
            fields=("gpu_util", "replicas", "gpu", "gpu_count"),
            threshold=env.threshold("idle_util_pct", "idle_target_util_pct"),
            prices={money.gpu_id: money.price},
            recommendation=Recommendation(
                action="scale_replicas", replicas=target, params={"current_replicas": p.replicas}
            ),
            current_replicas=p.replicas,
            target_replicas=target,
            removed_replicas=removed,
        )
    ]


COLD_START_KEYS = ("autoscaling.minReplicas", "obs.coldStart.p95Sec", "slo.coldStartSec")


def cold_start(ctx: WorkloadContext, env: Env) -> Result:
    """Scale-to-zero with cold starts slower than the SLO: keep one replica warm."""
    rule = "cold_start"
    facts_present = [key for key in COLD_START_KEYS if key in ctx.workload.facts]
    if not facts_present:
        return []  # no autoscaling SLO declared: nothing to check
    r = ctx.reader()
    min_replicas = r.num("autoscaling.minReplicas")
    p95 = r.num("obs.coldStart.p95Sec")
    slo = r.num("slo.coldStartSec")
    values = dict(zip(COLD_START_KEYS, (min_replicas, p95, slo), strict=True))
    missing = [key for key, value in values.items() if value is None]
    if missing:
        return [ctx.gap(rule, missing)]
    assert p95 is not None and slo is not None
    if min_replicas != 0 or p95 <= slo:
        return []
    money, gap = spend(ctx, rule, need_replicas=False)
    if money is None:
        return [gap] if gap else []
    monthly = money.replica_monthly_usd
    return [
        workload_finding(
            ctx,
            rule,
            level="model",
            kind="risk",
            monthly=monthly,
            fields=("gpu", "gpu_count"),
            reader=r,
            threshold={"slo.coldStartSec": slo},
            prices={money.gpu_id: money.price},
            recommendation=Recommendation(
                action="keep_warm_replica",
                target_gpu=money.gpu_id,
                target_gpu_count=money.gpu_count,
                params={"min_replicas": 1},
            ),
            cold_start_p95_sec=p95,
            warm_replica_monthly_usd=round(monthly, 2),
        )
    ]


def batch_scheduling_gap(ctx: WorkloadContext, env: Env) -> Result:
    """A batch workload leaves its GPUs half idle while its CPUs are not the limit."""
    rule = "batch_scheduling_gap"
    th = env.thresholds
    r = ctx.reader()
    workload_class = r.text("workload.class")
    if workload_class is None or workload_class.lower() != "batch":
        return []
    p = ctx.profile
    missing = p.missing(("gpu_util", "cpu_util"))
    if missing:
        return [ctx.gap(rule, missing)]
    assert p.gpu_util is not None and p.cpu_util is not None
    if not th.batch_util_min_pct <= p.gpu_util < th.batch_util_max_pct:
        return []
    if p.cpu_util >= th.cpu_saturation_pct:
        return []  # CPU-bound: cpu_gpu_imbalance's case
    money, gap = spend(ctx, rule)
    if money is None:
        return [gap] if gap else []
    wasted = (th.batch_util_max_pct - p.gpu_util) / th.batch_util_max_pct
    monthly = money.monthly_usd * wasted
    if monthly <= 0:
        return []
    return [
        workload_finding(
            ctx,
            rule,
            level="model",
            kind="savings",
            monthly=monthly,
            fields=("gpu_util", "cpu_util", "gpu", "gpu_count", "replicas"),
            reader=r,
            threshold=env.threshold(
                "batch_util_min_pct", "batch_util_max_pct", "cpu_saturation_pct"
            ),
            prices={money.gpu_id: money.price},
            recommendation=Recommendation(
                action="raise_batch_size", params={"target_gpu_util_pct": th.batch_util_max_pct}
            ),
            gpu_spend_monthly_usd=round(money.monthly_usd, 2),
            idle_fraction=round(wasted, 4),
        )
    ]
