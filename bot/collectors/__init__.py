"""Pulling facts from clusters' registered sources, all due clusters at once, bounded.

Each cluster's pull (its Prometheus, its piqc endpoint, or both) runs under
one deadline; a cluster that hangs or fails is recorded as failed and retried
later with exponential backoff, and never holds up the others. At most
`STEWARD_PULL_CONCURRENCY` clusters are fetched at once, and a cluster holds
its slot only while fetching: storing happens after, many clusters per
transaction (`Recorder`), so the queue moves at the speed of the network, not
of the database. Pulled facts take the push path: `parse_payload`, then
`store_facts`, then a fleet evaluation once stored facts pause (`Evaluations`):
not one per cluster, which would evaluate the whole fleet for every cluster
pulled, and not after the round, which would hold every finding until the
slowest cluster gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bot.collectors.piqc import PiqcError, fetch_bundle
from bot.collectors.prometheus import PrometheusCollector, PrometheusError
from bot.context import Context
from bot.ingest import IngestError, ParsedPayload, parse_payload
from bot.pipeline import scan
from store.db import reading, transaction, utcnow
from store.facts import store_facts
from store.models import Cluster

log = logging.getLogger(__name__)

SCHEMA_VERSION = "piqc-scan.v0.1"
MAX_ERROR_CHARS = 2000
RECORD_BATCH = 50  # clusters recorded per transaction
EVALUATION_QUIET_SECONDS = 0.5  # a round's fleet evaluation waits for stored facts to pause


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
    # Clusters whose last pulls failed go first: one that hangs then runs out its
    # timeout while the others are pulled, instead of starting it after them.
    failing_first = func.coalesce(Cluster.pull_failures, 0).desc()
    with reading(ctx.sessions) as session:
        clusters = session.scalars(query.order_by(failing_first, Cluster.name)).all()
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


@dataclass(frozen=True)
class Fetched:
    """One cluster's pull as it came back: its facts (and their source label), or an error."""

    target: PullTarget
    at: datetime
    error: str | None = None
    pulled: tuple[ParsedPayload, str] | None = None


def _record_one(ctx: Context, session: Session, fetched: Fetched) -> datetime:
    target, now, error = fetched.target, fetched.at, fetched.error
    cluster = session.scalars(
        select(Cluster).where(Cluster.name == target.name).with_for_update()
    ).one_or_none()
    if cluster is None:  # removed while it was being pulled
        return now
    if fetched.pulled is not None:
        parsed, source = fetched.pulled
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


def record_outcomes(ctx: Context, batch: Sequence[Fetched]) -> list[Fetched | datetime]:
    """Store pulled facts and note each pull's result on its cluster row, in one transaction.

    Facts go through `store_facts`, exactly as a push's do. Each cluster is a
    savepoint of its own, so its facts and its pull status stay in step: a
    cluster whose facts cannot be stored is recorded as a failed pull instead,
    and the rest of the batch is kept. Clusters are locked in name order, so two
    batches never wait on each other in a cycle. Returns, per item, when the
    cluster is next due, or the item as recorded (as failed) when storing failed.
    """
    order = sorted(range(len(batch)), key=lambda i: batch[i].target.name)
    results: list[Fetched | datetime] = list(batch)
    with transaction(ctx.sessions) as session:
        for index in order:
            fetched = batch[index]
            try:
                with session.begin_nested():
                    results[index] = _record_one(ctx, session, fetched)
                    continue
            except Exception as exc:  # recorded as this cluster's failed pull
                failed = Fetched(fetched.target, fetched.at, _describe(exc, fetched.target, 0))
            with session.begin_nested():
                _record_one(ctx, session, failed)
            results[index] = failed
    return results


class Recorder:
    """Writes the round's results as they arrive, many clusters per transaction.

    One writer at a time: on SQLite every write takes the database's one write
    lock, and a transaction per cluster would queue hundreds of them behind it.
    """

    def __init__(
        self,
        ctx: Context,
        batch: int = RECORD_BATCH,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.batch = batch
        self.on_stored = on_stored
        self.waiting: list[tuple[Fetched, asyncio.Future[Fetched | datetime]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def record(self, fetched: Fetched) -> Fetched | datetime:
        """Queue `fetched`; returns once it is committed (see `record_outcomes`)."""
        done: asyncio.Future[Fetched | datetime] = asyncio.get_running_loop().create_future()
        self.waiting.append((fetched, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self.waiting:
            taken, self.waiting = self.waiting[: self.batch], self.waiting[self.batch :]
            try:
                results = await asyncio.to_thread(
                    record_outcomes, self.ctx, [fetched for fetched, _ in taken]
                )
            except Exception as exc:  # the database is away: every waiting pull hears it
                for _, done in taken:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(taken, results, strict=True):
                if not done.done():
                    done.set_result(result)
            if self.on_stored is not None and any(
                not isinstance(result, Fetched) and fetched.pulled is not None
                for (fetched, _), result in zip(taken, results, strict=True)
            ):
                self.on_stored()


def _describe(exc: BaseException, target: PullTarget, deadline: float) -> str:
    if isinstance(exc, TimeoutError):
        return (
            f"the pull of {target.name} took longer than {deadline:g}s and was abandoned; "
            "check its sources or raise STEWARD_PULL_CLUSTER_TIMEOUT_SECONDS"
        )
    if isinstance(exc, PullError | PrometheusError | PiqcError):
        return str(exc)
    return f"unexpected {type(exc).__name__} while pulling {target.name}: {exc}"


async def fetch_one(
    ctx: Context,
    target: PullTarget,
    client: httpx.AsyncClient,
    at: datetime | None = None,
) -> Fetched:
    """Collect one cluster's facts under the whole-pull deadline; failures come back as errors."""
    deadline = ctx.settings.pull_cluster_timeout_seconds
    try:
        pulled = await asyncio.wait_for(collect(ctx, target, client, at), deadline)
    except Exception as exc:  # one cluster's failure is recorded, never raised to the others
        return Fetched(target, utcnow(), _describe(exc, target, deadline))
    return Fetched(target, utcnow(), pulled=pulled)


async def pull_one(
    ctx: Context,
    target: PullTarget,
    client: httpx.AsyncClient,
    recorder: Recorder,
    gate: asyncio.Semaphore,
    at: datetime | None = None,
) -> PullOutcome:
    """Pull one cluster (holding one of the round's slots only while fetching) and record it."""
    started = time.monotonic()
    async with gate:
        fetched = await fetch_one(ctx, target, client, at)
    try:
        result = await recorder.record(fetched)
    except Exception as exc:
        result = Fetched(target, fetched.at, _describe(exc, target, 0))
        log.warning("pull of cluster %s could not be recorded: %s", target.name, result.error)
        return _outcome(result, None, started)
    if isinstance(result, Fetched):
        fetched, next_at = result, None
    else:
        next_at = result
    if fetched.error is not None:
        log.warning("pull of cluster %s failed: %s", target.name, fetched.error)
    return _outcome(fetched, next_at, started)


def _outcome(fetched: Fetched, next_at: datetime | None, started: float) -> PullOutcome:
    parsed = fetched.pulled[0] if fetched.pulled is not None and fetched.error is None else None
    return PullOutcome(
        cluster=fetched.target.name,
        ok=fetched.error is None,
        error=fetched.error,
        workloads=len(parsed.workloads) if parsed else 0,
        facts=sum(len(item) for _, item in parsed.workloads) if parsed else 0,
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

    The fleet is evaluated as facts land (`Evaluations`), so findings never
    wait for a cluster that hangs until its timeout; when the round returns,
    the last evaluation has seen every fact it stored.
    """
    targets = await asyncio.to_thread(due_targets, ctx, utcnow(), names, force=force)
    if not targets:
        return []
    gate = asyncio.Semaphore(ctx.settings.pull_concurrency)
    evaluations = Evaluations(ctx) if evaluate else None
    recorder = Recorder(ctx, on_stored=evaluations.facts_stored if evaluations else None)
    own = client is None
    http = client or make_client(ctx)
    try:
        outcomes = list(
            await asyncio.gather(
                *(pull_one(ctx, target, http, recorder, gate, at) for target in targets)
            )
        )
    except BaseException:  # cancelled (shutting down): no evaluation to wait for
        if evaluations is not None and evaluations.running is not None:
            evaluations.running.cancel()
        raise
    finally:
        if own:
            await http.aclose()
    if evaluations is not None:
        await evaluations.settled()
    return outcomes


class Evaluations:
    """Evaluates the fleet once a round's facts have landed, without waiting for stragglers.

    An evaluation starts when new facts are stored and then none for
    `EVALUATION_QUIET_SECONDS` (or when the round ends), so a burst of results
    costs one evaluation, not one per batch, and a cluster that hangs until
    its timeout holds up nobody's findings. Facts stored during an evaluation
    get one more after it.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pending = False
        self.last_stored = 0.0
        self.ended = asyncio.Event()
        self.running: asyncio.Task[None] | None = None

    def facts_stored(self) -> None:
        """New facts committed: evaluate once things go quiet."""
        self.pending = True
        self.last_stored = asyncio.get_running_loop().time()
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            while not self.ended.is_set():
                quiet = self.last_stored + EVALUATION_QUIET_SECONDS - loop.time()
                if quiet <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ended.wait(), quiet)
            self.pending = False
            await asyncio.to_thread(scan, self.ctx)

    async def settled(self) -> None:
        """The round is over: evaluate what is pending now; its failure is the round's."""
        self.ended.set()
        if self.running is not None:
            await self.running
