"""Scheduled jobs (pulls, retention, the weekly digest) and who may run them.

Every `serve` replica starts the same scheduler; only the leader's jobs do any
work. On PostgreSQL the leader is whoever holds a session-level advisory lock
on a dedicated connection: when that process dies its connection closes, the
lock is released, and a follower's next try takes over. On SQLite there is one
process, and it leads. Every job is safe to run again.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine, text

from bot.actuation import actuate_and_report
from bot.collectors import pull_clusters
from bot.context import Context
from store.db import transaction, utcnow
from store.facts import prune_history_before

log = logging.getLogger(__name__)

LEADER_LOCK = 0x5354_4557_5343  # "STEWSC"
PULL_JOB = "pull-clusters"
RETENTION_JOB = "fact-retention"
DIGEST_JOB = "weekly-digest"
ELECTION_JOB = "leader-election"
ACTUATION_JOB = "actuations"


class Leadership:
    """Whether this process may run scheduled jobs, decided by a PostgreSQL advisory lock."""

    def __init__(self, engine: Engine, key: int = LEADER_LOCK) -> None:
        self._engine = engine
        self._key = key
        self._conn: Connection | None = None
        self._mutex = threading.Lock()
        self._single = engine.dialect.name != "postgresql"
        self._closed = False

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lock (always on SQLite)."""
        return self._single or self._conn is not None

    def refresh(self) -> bool:
        """Keep the lock if held (checking its connection is alive), else try to take it."""
        if self._single:
            return True
        with self._mutex:
            if self._closed:
                return False
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT 1"))
                    return True
                except Exception as exc:  # a dead connection has lost the lock with it
                    log.warning("scheduler leadership lost: %s", exc)
                    self._drop()
            conn = self._engine.connect()
            try:
                held = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
                )
                # End the implicit transaction; the session-level lock outlives it.
                conn.commit()
            except Exception:
                conn.close()
                raise
            if not held:
                conn.close()
                return False
            self._conn = conn
            log.info("this replica now leads the scheduler")
            return True

    def release(self, *, final: bool = False) -> None:
        """Give up leadership (closing the connection releases the lock).

        `final` also refuses any later `refresh`: a check still in flight when the
        process stops must not take the lock again.
        """
        with self._mutex:
            self._closed = self._closed or final
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                    self._conn.commit()
                except Exception as exc:  # closing below releases it anyway
                    log.warning("could not unlock scheduler leadership cleanly: %s", exc)
                self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                # Invalidate rather than return to the pool: the lock lives on the session.
                conn.invalidate()
                conn.close()
            except Exception as exc:
                log.debug("closing the leadership connection: %s", exc)


def prune_fact_history(ctx: Context) -> int:
    """Delete fact history older than STEWARD_FACT_RETENTION_DAYS; returns rows deleted."""
    cutoff = utcnow() - timedelta(days=ctx.settings.fact_retention_days)
    with transaction(ctx.sessions) as session:
        return prune_history_before(session, cutoff)


async def post_digest(ctx: Context) -> None:
    """Post the weekly digest through `bot.digest`, when that module is installed."""
    try:
        digest = importlib.import_module("bot.digest")
    except ModuleNotFoundError as exc:
        if exc.name != "bot.digest":
            raise
        log.info("weekly digest skipped: bot.digest is not available in this build")
        return
    poster = getattr(digest, "post_weekly_digest", None)
    if poster is None:
        log.info("weekly digest skipped: bot.digest has no post_weekly_digest")
        return
    result = poster(ctx)
    if asyncio.iscoroutine(result):
        await result


class Scheduler:
    """The APScheduler jobs of one `serve` process, run only while it leads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.leadership = Leadership(ctx.engine)
        self.scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(30, int(ctx.settings.scheduler_tick_seconds) * 2),
            },
        )
        self.runs: dict[str, int] = {}

    def start(self) -> None:
        """Register the jobs and start (inside a running event loop)."""
        settings = self.ctx.settings
        add = self.scheduler.add_job
        add(
            self._election,
            IntervalTrigger(seconds=settings.leader_retry_seconds),
            id=ELECTION_JOB,
            next_run_time=utcnow(),
        )
        add(
            self._guarded(PULL_JOB, self._pull),
            IntervalTrigger(seconds=settings.scheduler_tick_seconds),
            id=PULL_JOB,
            next_run_time=utcnow() + timedelta(seconds=1),
        )
        # Every replica works the actuation outbox: rows are claimed with
        # FOR UPDATE SKIP LOCKED, so each approved change still runs once.
        add(
            self._actuations,
            IntervalTrigger(seconds=settings.actuation_poll_seconds),
            id=ACTUATION_JOB,
            next_run_time=utcnow() + timedelta(seconds=1),
        )
        add(
            self._guarded(RETENTION_JOB, self._retention),
            IntervalTrigger(hours=6),
            id=RETENTION_JOB,
        )
        add(
            self._guarded(DIGEST_JOB, self._digest),
            CronTrigger(day_of_week="mon", hour=9, minute=0, timezone=settings.digest_tz),
            id=DIGEST_JOB,
        )
        self.scheduler.start()

    async def shutdown(self) -> None:
        """Stop the jobs and hand leadership over."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await asyncio.to_thread(self.leadership.release, final=True)

    async def _election(self) -> None:
        try:
            await asyncio.to_thread(self.leadership.refresh)
        except Exception as exc:  # the database is away; try again next time
            log.warning("scheduler leadership check failed: %s", exc)

    def _guarded(
        self, job_id: str, job: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                # Checked before every run: a leader whose lock connection died must stop.
                leads = await asyncio.to_thread(self.leadership.refresh)
            except Exception as exc:
                log.warning("job %s skipped, leadership unknown: %s", job_id, exc)
                return
            if not leads:
                return
            self.runs[job_id] = self.runs.get(job_id, 0) + 1
            try:
                await job()
            except Exception:  # a failed run is logged; the next one starts afresh
                log.exception("scheduled job %s failed", job_id)

        run.__name__ = job_id.replace("-", "_")
        return run

    async def _pull(self) -> None:
        outcomes = await pull_clusters(self.ctx)
        if outcomes:
            failed = sum(1 for outcome in outcomes if not outcome.ok)
            log.info("job %s pulled %d cluster(s), %d failed", PULL_JOB, len(outcomes), failed)

    async def _actuations(self) -> None:
        try:
            done = await actuate_and_report(self.ctx)
        except Exception:  # the next run starts afresh; claimed rows are leased
            log.exception("job %s failed", ACTUATION_JOB)
            return
        for processed in done:
            log.info("job %s: %s %s", ACTUATION_JOB, processed.finding, processed.status)

    async def _retention(self) -> None:
        deleted = await asyncio.to_thread(prune_fact_history, self.ctx)
        log.info("job %s deleted %d fact history row(s)", RETENTION_JOB, deleted)

    async def _digest(self) -> None:
        await post_digest(self.ctx)
