"""What a rule sees: the evaluation's settings, one workload, one cluster, or the whole fleet."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.capacity import (
    Candidate,
    CapacityConstants,
    Demand,
    ModelProfile,
    build_profile,
    candidates,
    demand,
)
from engine.catalog import Catalog, GpuSpec
from engine.facts import Confidence, Fact, FactReader, Workload
from engine.findings import Claim, Finding, Gap, Kind, Level, Recommendation
from engine.prices import PriceBook
from engine.thresholds import Thresholds
from engine.units import HOURS_PER_MONTH

Role = Literal["model", "node", "pod"]
Result = list[Finding | Gap]
_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
_BY_RANK: tuple[Confidence, ...] = ("low", "medium", "high")
# Slack for floating-point dust, so a saving of exactly 20 % or a ratio of exactly 2 holds.
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Env:
    """Everything an evaluation is relative to: catalog, prices, thresholds, constants."""

    catalog: Catalog
    prices: PriceBook
    thresholds: Thresholds
    constants: CapacityConstants
    offered: tuple[Candidate, ...]

    @classmethod
    def create(
        cls,
        catalog: Catalog,
        prices: PriceBook,
        thresholds: Thresholds,
        constants: CapacityConstants,
    ) -> Env:
        """An environment with the price book's candidate configurations ranked once."""
        return cls(catalog, prices, thresholds, constants, candidates(catalog, prices, constants))

    def threshold(self, *names: str) -> dict[str, Any]:
        """The named thresholds and their values, for evidence."""
        return {name: getattr(self.thresholds, name) for name in names}


def role_of(workload: Workload) -> Role | None:
    """How the rules see a workload: a served model, a GPU node, a pending pod, or not at all."""
    kind = workload.kind
    if kind == "node":
        return "node"
    if kind == "pod":
        return "pod"
    if kind == "deployment" or "model.name" in workload.facts:
        return "model"
    return None


@dataclass(slots=True)
class WorkloadContext:
    """One workload of one cluster, with its model profile built once for every rule."""

    cluster: str
    region: str
    workload: Workload
    role: Role
    env: Env
    _profile: ModelProfile | None = None
    _demand: Demand | None = None
    _demand_done: bool = False

    @property
    def workload_id(self) -> str:
        """The workload's id."""
        return self.workload.workload_id

    @property
    def resource(self) -> str:
        """The claim key of this workload's GPU spend."""
        return f"{self.cluster}|{self.workload.workload_id}"

    @property
    def profile(self) -> ModelProfile:
        """The workload's model profile (built on first use)."""
        if self._profile is None:
            self._profile = build_profile(self.workload, self.env.catalog, self.env.constants)
        return self._profile

    @property
    def demand(self) -> Demand | None:
        """The capacity model's demand with observed load, or None when a figure is unknown."""
        if not self._demand_done:
            self._demand = demand(self.profile, self.env.constants)
            self._demand_done = True
        return self._demand

    def reader(self) -> FactReader:
        """A fresh fact reader for this workload."""
        return self.workload.reader()

    def gap(self, rule: str, missing: list[str]) -> Gap:
        """A gap about this workload."""
        return Gap(cluster=self.cluster, subject=self.workload_id, rule=rule, missing=missing)

    def gpu_spec(self, raw: str | None) -> GpuSpec | None:
        """The catalog spec for a vendor GPU string, or None."""
        if raw is None:
            return None
        gpu_id = self.env.catalog.normalise_gpu(raw)
        return None if gpu_id is None else self.env.catalog.gpu(gpu_id)


@dataclass(slots=True)
class ClusterView:
    """One cluster's workloads, for rules that compare workloads sharing a node."""

    name: str
    region: str
    workloads: list[WorkloadContext]


@dataclass(slots=True)
class FleetView:
    """Every cluster, for rules across clusters."""

    clusters: list[ClusterView]
    by_role: dict[Role, list[WorkloadContext]] = field(default_factory=dict)


# --- money, evidence and confidence, shared by every rule ---------------------------------


def ceil_ratio(value: float) -> int:
    """Ceiling that ignores floating-point dust (2.0000000001 → 2)."""
    return math.ceil(value - EPS)


@dataclass(frozen=True, slots=True)
class Spend:
    """A workload's GPU price and count: what its GPUs cost per month."""

    gpu_id: str
    price: float
    gpu_count: int
    replicas: int

    @property
    def monthly_usd(self) -> float:
        """GPU spend per month across replicas."""
        return self.price * self.gpu_count * self.replicas * HOURS_PER_MONTH

    @property
    def replica_monthly_usd(self) -> float:
        """GPU spend per month of one replica."""
        return self.price * self.gpu_count * HOURS_PER_MONTH


def spend(
    ctx: WorkloadContext, rule: str, *, need_replicas: bool = True
) -> tuple[Spend | None, Gap | None]:
    """A model workload's spend, or the gap that keeps it from being priced."""
    p = ctx.profile
    fields = ("gpu", "gpu_count", "replicas") if need_replicas else ("gpu", "gpu_count")
    missing = p.missing(fields)
    if missing:
        return None, ctx.gap(rule, missing)
    assert p.gpu_id is not None and p.gpu_count is not None
    price = ctx.env.prices.price(p.gpu_id)
    if price is None:
        return None, ctx.gap(rule, [f"price:{p.gpu_id}"])
    return Spend(p.gpu_id, price, p.gpu_count, p.replicas or 0), None


def facts_evidence(used: dict[str, Fact]) -> dict[str, dict[str, Any]]:
    """Facts as evidence: key → value and confidence."""
    return {
        key: {"value": fact.value, "confidence": fact.dataConfidence}
        for key, fact in sorted(used.items())
    }


def confidence_of(facts: dict[str, dict[str, Any]], assumptions: list[str]) -> Confidence:
    """The lowest confidence of the facts used; at most medium when anything was assumed."""
    rank = 1 if assumptions else 2
    for item in facts.values():
        rank = min(rank, _RANK.get(str(item["confidence"]), 0))
    return _BY_RANK[rank]


def model_evidence(
    ctx: WorkloadContext,
    fields: tuple[str, ...],
    reader: FactReader | None = None,
    extra_assumptions: tuple[str, ...] = (),
) -> tuple[dict[str, dict[str, Any]], list[str], Confidence]:
    """Facts, assumptions and confidence for a rule that used profile fields and read facts."""
    facts: dict[str, dict[str, Any]] = {}
    assumptions: list[str] = []
    if fields:  # rules that only read facts (a node's) need no model profile
        facts.update(ctx.profile.fact_evidence(fields))
        assumptions.extend(ctx.profile.assumptions(fields))
    if reader is not None:
        facts.update(facts_evidence(reader.used))
    facts = dict(sorted(facts.items()))
    assumptions.extend(extra_assumptions)
    return facts, assumptions, confidence_of(facts, assumptions)


def evidence(
    env: Env,
    *,
    facts: dict[str, dict[str, Any]],
    assumptions: list[str],
    threshold: dict[str, Any],
    prices: dict[str, float],
    **figures: Any,
) -> dict[str, Any]:
    """A finding's evidence in the shape every rule shares."""
    return {
        "facts": facts,
        **figures,
        "prices": prices,
        "price_source": f"{env.prices.source} ({env.prices.as_of})"
        if env.prices.as_of
        else env.prices.source,
        "threshold": threshold,
        "assumptions": assumptions,
    }


def workload_finding(
    ctx: WorkloadContext,
    rule: str,
    *,
    level: Level,
    kind: Kind,
    monthly: float,
    fields: tuple[str, ...],
    reader: FactReader | None = None,
    extra_assumptions: tuple[str, ...] = (),
    rated_facts: dict[str, dict[str, Any]] | None = None,
    threshold: dict[str, Any],
    prices: dict[str, float],
    recommendation: Recommendation,
    **figures: Any,
) -> Finding:
    """A finding about one workload that claims its `monthly` dollars.

    Its facts are the profile `fields` and what `reader` read; `rated_facts` (about other
    workloads, shown among the figures) lower its confidence without joining its facts.
    """
    facts, assumptions, confidence = model_evidence(ctx, fields, reader, extra_assumptions)
    if rated_facts:
        confidence = confidence_of({**facts, **rated_facts}, assumptions)
    return Finding(
        rule=rule,
        level=level,
        cluster=ctx.cluster,
        subject=ctx.workload_id,
        monthly_usd=monthly,
        kind=kind,
        confidence=confidence,
        evidence=evidence(
            ctx.env,
            facts=facts,
            assumptions=assumptions,
            threshold=threshold,
            prices=prices,
            **figures,
        ),
        recommendation=recommendation,
        claims=[Claim(resource=ctx.resource, usd=monthly)],
    )
