"""Evaluate a fleet: every rule over every workload, cluster and the fleet, in a stable order."""

from __future__ import annotations

from engine.capacity import DEFAULT_CONSTANTS, CapacityConstants
from engine.catalog import Catalog, default_catalog
from engine.facts import FleetSnapshot
from engine.findings import Evaluation, Finding, Gap
from engine.prices import PriceBook
from engine.rules import RULES
from engine.rules.context import ClusterView, Env, FleetView, Role, WorkloadContext, role_of
from engine.thresholds import DEFAULT_THRESHOLDS, Thresholds


def build_view(fleet: FleetSnapshot, env: Env) -> FleetView:
    """Wrap every workload once, clusters and workloads sorted so input order never matters."""
    clusters: list[ClusterView] = []
    by_role: dict[Role, list[WorkloadContext]] = {"model": [], "node": [], "pod": []}
    for cluster in sorted(fleet.clusters, key=lambda c: (c.name, c.region, c.provider)):
        contexts: list[WorkloadContext] = []
        for workload in sorted(cluster.workloads, key=lambda w: w.workload_id):
            role = role_of(workload)
            if role is None:
                continue
            ctx = WorkloadContext(cluster.name, cluster.region, workload, role, env)
            contexts.append(ctx)
            by_role[role].append(ctx)
        clusters.append(ClusterView(cluster.name, cluster.region, contexts))
    return FleetView(clusters, by_role)


def evaluate(
    fleet: FleetSnapshot,
    prices: PriceBook,
    *,
    catalog: Catalog | None = None,
    thresholds: Thresholds | None = None,
    constants: CapacityConstants | None = None,
) -> Evaluation:
    """Findings and gaps for a fleet snapshot; a pure, deterministic function of its inputs."""
    env = Env.create(
        catalog or default_catalog(),
        prices,
        thresholds or DEFAULT_THRESHOLDS,
        constants or DEFAULT_CONSTANTS,
    )
    view = build_view(fleet, env)
    findings: list[Finding] = []
    gaps: list[Gap] = []
    for spec in RULES:
        if spec.scope == "workload":
            results = [
                item
                for role in spec.roles
                for ctx in view.by_role[role]
                for item in spec.function(ctx, env)
            ]
        elif spec.scope == "cluster":
            results = [item for cluster in view.clusters for item in spec.function(cluster, env)]
        else:
            results = spec.function(view, env)
        for item in results:
            if isinstance(item, Finding):
                findings.append(item)
            else:
                gaps.append(item)
    findings.sort(key=Finding.sort_key)
    gaps.sort(key=Gap.sort_key)
    return Evaluation(findings=findings, gaps=gaps)
