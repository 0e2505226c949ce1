"""The fact store: the latest fact set per (cluster, workload) and a bounded history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from store.models import Cluster, FactHistory, WorkloadFacts

_IN_CHUNK = 500  # stay well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class StoredWorkload:
    """One workload's latest facts as read back for evaluation."""

    workload_id: str
    facts: dict[str, Any]
    observed_at: datetime


@dataclass(frozen=True)
class ClusterFacts:
    """A cluster and the workloads it currently reports."""

    name: str
    provider: str
    region: str
    workloads: list[StoredWorkload]


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def store_facts(
    session: Session,
    cluster: Cluster,
    workloads: Sequence[tuple[str, dict[str, Any]]],
    *,
    source: str,
    now: datetime,
    history_limit: int,
) -> None:
    """Replace the latest facts of each workload named, and keep the history bounded.

    Runs inside the caller's transaction, so a push is stored whole or not at all.
    """
    ids = [workload_id for workload_id, _ in workloads]
    existing: dict[str, WorkloadFacts] = {}
    for chunk in _chunks(ids):
        rows = session.scalars(
            select(WorkloadFacts).where(
                WorkloadFacts.cluster_id == cluster.id, WorkloadFacts.workload_id.in_(chunk)
            )
        )
        existing.update({row.workload_id: row for row in rows})
    for workload_id, facts in workloads:
        row = existing.get(workload_id)
        if row is None:
            session.add(
                WorkloadFacts(
                    cluster_id=cluster.id,
                    workload_id=workload_id,
                    facts=facts,
                    source=source,
                    observed_at=now,
                )
            )
        else:
            row.facts, row.source, row.observed_at = facts, source, now
    session.add_all(
        FactHistory(
            cluster_id=cluster.id,
            workload_id=workload_id,
            facts=facts,
            source=source,
            observed_at=now,
        )
        for workload_id, facts in workloads
    )
    cluster.last_facts_at = now
    session.flush()
    _prune_history(session, cluster.id, history_limit)


def _prune_history(session: Session, cluster_id: int, keep: int) -> None:
    ranked = (
        select(
            FactHistory.id,
            func.row_number()
            .over(partition_by=FactHistory.workload_id, order_by=FactHistory.id.desc())
            .label("rank"),
        )
        .where(FactHistory.cluster_id == cluster_id)
        .subquery()
    )
    doomed = select(ranked.c.id).where(ranked.c.rank > keep)
    session.execute(delete(FactHistory).where(FactHistory.id.in_(doomed)))


def fleet_facts(session: Session, now: datetime, ttl: timedelta) -> list[ClusterFacts]:
    """Every cluster with the workloads reported within `ttl`, read in one snapshot."""
    clusters = session.scalars(select(Cluster).order_by(Cluster.name)).all()
    by_cluster: dict[int, list[StoredWorkload]] = {cluster.id: [] for cluster in clusters}
    rows = session.execute(
        select(
            WorkloadFacts.cluster_id,
            WorkloadFacts.workload_id,
            WorkloadFacts.facts,
            WorkloadFacts.observed_at,
        )
        .where(WorkloadFacts.observed_at >= now - ttl)
        .order_by(WorkloadFacts.cluster_id, WorkloadFacts.workload_id)
    )
    for cluster_id, workload_id, facts, observed_at in rows:
        by_cluster[cluster_id].append(StoredWorkload(workload_id, facts, observed_at))
    return [
        ClusterFacts(cluster.name, cluster.provider, cluster.region, by_cluster[cluster.id])
        for cluster in clusters
    ]


def history(session: Session, cluster: Cluster, workload_id: str) -> list[FactHistory]:
    """A workload's stored fact sets, oldest first."""
    return list(
        session.scalars(
            select(FactHistory)
            .where(FactHistory.cluster_id == cluster.id, FactHistory.workload_id == workload_id)
            .order_by(FactHistory.id)
        )
    )


def prune_history_before(session: Session, cutoff: datetime) -> int:
    """Delete fact history observed before `cutoff`; returns how many rows went."""
    result = session.execute(delete(FactHistory).where(FactHistory.observed_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
