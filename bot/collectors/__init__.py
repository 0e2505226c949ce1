"""Pulling facts from clusters' registered sources, all due clusters at once, bounded.

Each cluster's pull (its Prometheus, its piqc endpoint, or both) runs under
one deadline; a cluster that hangs or fails is recorded as failed and retried
later with exponential backoff, and never holds up the others. Pulled facts
take the push path: `parse_payload`, then `store_facts`, then one fleet
evaluation after the round (not one per cluster, which would evaluate the
whole fleet once for every cluster pulled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import or_, select

from bot.collectors.piqc import PiqcError, fetch_bundle
from bot.collectors.prometheus import PrometheusCollector, PrometheusError
from bot.context import Context
from bot.ingest import IngestError, ParsedPayload, parse_payload
from bot.pipeline import scan
from store.db import transaction, utcnow
from store.facts import store_facts
from store.models import Cluster

log = logging.getLogger(__name__)

SCHEMA_VERSION = "piqc-scan.v0.1"
MAX_ERROR_CHARS = 2000


class PullError(RuntimeError):
    """A cluster's pull failed; the message says what to check."""


@dataclass(frozen=True)
class PullTarget:
    """What a pull needs to know about one cluster, read before any network I/O."""

    name: str
    prometheus_url: str | None
    prometheus_token_file: str | None
    piqc_url: str | None
    interval_seconds: int
    failures: int


@dataclass(frozen=True)
class PullOutcome:
    """How one cluster's pull went."""

    cluster: str
    ok: bool
    error: str | None
    workloads: int
    facts: int
    seconds: float
    next_pull_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "cluster": self.cluster,
            "status": "ok" if self.ok else "error",
            "error": self.error,
            "workloads": self.workloads,
            "facts": self.facts,
            "seconds": round(self.seconds, 3),
            "next_pull_at": self.next_pull_at.isoformat() if self.next_pull_at else None,
        }


def has_source(cluster: Cluster) -> bool:
    """True when the cluster has a Prometheus or piqc URL to pull from."""
    return bool(cluster.prometheus_url or cluster.piqc_url)


def _target(cluster: Cluster, default_interval: int) -> PullTarget:
    return PullTarget(
        name=cluster.name,
        prometheus_url=cluster.prometheus_url,
        prometheus_token_file=cluster.prometheus_token_file,
        piqc_url=cluster.piqc_url,
        interval_seconds=cluster.pull_interval_seconds or default_interval,
        failures=cluster.pull_failures or 0,
    )


def due_targets(
    ctx: Context, now: datetime, names: list[str] | None = None, *, force: bool = False
) -> list[PullTarget]:
    """Clusters with a pull source that are due (every named one when `force`)."""
    query = select(Cluster).where(
        or_(Cluster.prometheus_url.is_not(None), Cluster.piqc_url.is_not(None))
    )
    if names:
        query = query.where(Cluster.name.in_(names))
    if not force:
        query = query.where(or_(Cluster.next_pull_at.is_(None), Cluster.next_pull_at <= now))
    with transaction(ctx.sessions) as session:
        clusters = session.scalars(query.order_by(Cluster.name)).all()
        return [_target(cluster, ctx.settings.pull_interval_seconds) for cluster in clusters]


def read_token(target: PullTarget) -> str | None:
    """The Prometheus bearer token, read from its file now (never cached or logged)."""
    if not target.prometheus_token_file:
        return None
    path = Path(target.prometheus_token_file)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PullError(
            f"cannot read the Prometheus token file {path} ({exc.strerror}); fix it or run "
            f"`steward cluster set {target.name} --prometheus-token-file PATH`"
        ) from exc
    if not token:
        raise PullError(f"the Prometheus token file {path} is empty; write the token into it")
    return token


def merge_workloads(*sources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Facts per workload from several sources; a later source's fact wins on the same key."""
    merged: dict[str, dict[str, Any]] = {}
    for workloads in sources:
        for workload_id, facts in workloads.items():
            merged.setdefault(workload_id, {}).update(facts)
    return merged


async def collect(
    ctx: Context, target: PullTarget, client: httpx.AsyncClient, at: datetime | None = None
) -> tuple[ParsedPayload, str]:
    """Fetch one cluster's facts from its sources; (validated payload, source label)."""
    settings = ctx.settings
    parts: list[dict[str, dict[str, Any]]] = []
    labels: list[str] = []
    if target.piqc_url:
        document = await fetch_bundle(
            client, target.piqc_url, request_timeout=settings.pull_request_timeout_seconds
        )
        try:
            parsed = parse_payload(document, cluster=target.name)
        except IngestError as exc:
            raise PullError(f"the piqc endpoint {target.piqc_url}: {exc.message}") from exc
        if parsed.cluster_id != target.name:
            raise PullError(
                f"the piqc endpoint {target.piqc_url} describes cluster '{parsed.cluster_id}', "
                f"not '{target.name}'; check the URL registered for {target.name}"
            )
        parts.append(dict(parsed.workloads))
        labels.append("piqc")
    if target.prometheus_url:
        collector = PrometheusCollector(
            client=client,
            base_url=target.prometheus_url,
            token=read_token(target),
            window_seconds=settings.pull_window_seconds,
            stale_seconds=settings.pull_stale_seconds,
            scrape_interval_seconds=settings.pull_scrape_interval_seconds,
            request_timeout=settings.pull_request_timeout_seconds,
        )
        # Prometheus comes last: its windowed figures beat a bundle's point readings.
        parts.append(await collector.collect(at))
        labels.append("prometheus")
    workloads = merge_workloads(*parts)
    document = {
        "schemaVersion": SCHEMA_VERSION,
        "cluster_id": target.name,
        "workloads": [
            {"workloadId": workload_id, "facts": facts}
            for workload_id, facts in sorted(workloads.items())
        ],
    }
    try:
        return parse_payload(document), "+".join(labels)
    except IngestError as exc:
        raise PullError(f"pulled facts of {target.name} were refused: {exc.message}") from exc


def backoff_seconds(interval: int, failures: int, ceiling: int) -> int:
    """Wait before the next try after `failures` failures in a row (0 = normal interval)."""
    if failures <= 0:
        return interval
    return int(min(ceiling, interval * 2 ** min(failures - 1, 20)))


def record_outcome(
    ctx: Context,
    target: PullTarget,
    now: datetime,
    error: str | None,
    pulled: tuple[ParsedPayload, str] | None = None,
) -> datetime:
    """Store a pull's facts (when given) and note its result on the cluster row, atomically.

    Facts go through `store_facts`, exactly as a push's do; one transaction per
    cluster keeps the facts and the pull status in step. Returns when it is next due.
    """
    with transaction(ctx.sessions) as session:
        cluster = session.scalars(
            select(Cluster).where(Cluster.name == target.name).with_for_update()
        ).one_or_none()
        if cluster is None:  # removed while it was being pulled
            return now
        if pulled is not None:
            parsed, source = pulled
            store_facts(
                session,
                cluster,
                parsed.workloads,
                source=source,
                now=now,
                history_limit=ctx.settings.fact_history_limit,
            )
        failures = 0 if error is None else (cluster.pull_failures or 0) + 1
        interval = cluster.pull_interval_seconds or ctx.settings.pull_interval_seconds
        wait = backoff_seconds(interval, failures, ctx.settings.pull_backoff_max_seconds)
        cluster.last_pull_at = now
        cluster.last_pull_status = "ok" if error is None else "error"
        cluster.last_pull_error = None if error is None else error[:MAX_ERROR_CHARS]
        cluster.pull_failures = failures
        cluster.next_pull_at = now + timedelta(seconds=wait)
        return cluster.next_pull_at


def _describe(exc: BaseException, target: PullTarget, deadline: float) -> str:
    if isinstance(exc, TimeoutError):
        return (
            f"the pull of {target.name} took longer than {deadline:g}s and was abandoned; "
            "check its sources or raise STEWARD_PULL_CLUSTER_TIMEOUT_SECONDS"
        )
    if isinstance(exc, PullError | PrometheusError | PiqcError):
        return str(exc)
    return f"unexpected {type(exc).__name__} while pulling {target.name}: {exc}"


async def pull_one(
    ctx: Context,
    target: PullTarget,
    client: httpx.AsyncClient,
    at: datetime | None = None,
) -> PullOutcome:
    """Pull one cluster under the whole-pull deadline, store its facts, record the outcome."""
    started = time.monotonic()
    deadline = ctx.settings.pull_cluster_timeout_seconds
    error: str | None = None
    workloads = facts = 0
    next_at: datetime | None = None
    try:
        parsed, source = await asyncio.wait_for(collect(ctx, target, client, at), deadline)
        next_at = await asyncio.to_thread(
            record_outcome, ctx, target, utcnow(), None, (parsed, source)
        )
        workloads = len(parsed.workloads)
        facts = sum(len(item) for _, item in parsed.workloads)
    except Exception as exc:  # one cluster's failure is recorded, never raised to the others
        error = _describe(exc, target, deadline)
        log.warning("pull of cluster %s failed: %s", target.name, error)
        next_at = await asyncio.to_thread(record_outcome, ctx, target, utcnow(), error)
    return PullOutcome(
        cluster=target.name,
        ok=error is None,
        error=error,
        workloads=workloads,
        facts=facts,
        seconds=time.monotonic() - started,
        next_pull_at=next_at,
    )


def make_client(ctx: Context) -> httpx.AsyncClient:
    """The HTTP client pulls use when none is injected."""
    return httpx.AsyncClient(
        timeout=ctx.settings.pull_request_timeout_seconds,
        limits=httpx.Limits(max_connections=max(10, ctx.settings.pull_concurrency * 4)),
        follow_redirects=False,
    )


async def pull_clusters(
    ctx: Context,
    *,
    client: httpx.AsyncClient | None = None,
    names: list[str] | None = None,
    force: bool = False,
    at: datetime | None = None,
    evaluate: bool = True,
) -> list[PullOutcome]:
    """Pull every due cluster (or the named ones), at most `pull_concurrency` at once.

    After the round the fleet is evaluated once when any facts were stored, so
    findings reflect every cluster pulled, not one at a time.
    """
    targets = await asyncio.to_thread(due_targets, ctx, utcnow(), names, force=force)
    if not targets:
        return []
    gate = asyncio.Semaphore(ctx.settings.pull_concurrency)
    own = client is None
    http = client or make_client(ctx)

    async def bounded(target: PullTarget) -> PullOutcome:
        async with gate:
            return await pull_one(ctx, target, http, at)

    try:
        outcomes = list(await asyncio.gather(*(bounded(target) for target in targets)))
    finally:
        if own:
            await http.aclose()
    if evaluate and any(outcome.ok for outcome in outcomes):
        await asyncio.to_thread(scan, ctx)
    return outcomes
