"""The scheduler: its jobs, leadership on PostgreSQL, retention and the digest hook."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot import clusters
from bot.config import Settings
from bot.context import Context, open_context
from bot.scheduler import (
    ACTUATION_JOB,
    DIGEST_JOB,
    ELECTION_JOB,
    PULL_JOB,
    RETENTION_JOB,
    Leadership,
    Scheduler,
    post_digest,
    prune_fact_history,
)
from store.db import make_engine, transaction, utcnow
from store.models import FactHistory
from store.registry import get_cluster
from tests.bot.collectors.bundle_server import BundleServer
from tests.factories import PIQC_BUNDLE, register


@pytest.fixture
def fast(settings: Settings) -> Iterator[Context]:
    """A context whose scheduler ticks and elects every fraction of a second."""
    ctx = open_context(
        settings.model_copy(update={"scheduler_tick_seconds": 0.2, "leader_retry_seconds": 0.2})
    )
    yield ctx
    ctx.close()


async def test_jobs_have_explicit_ids_and_run_once_at_a_time(fast: Context) -> None:
    jobs = Scheduler(fast)
    jobs.start()
    try:
        listed = {job.id: job for job in jobs.scheduler.get_jobs()}
        assert set(listed) == {ELECTION_JOB, PULL_JOB, RETENTION_JOB, DIGEST_JOB, ACTUATION_JOB}
        for job in listed.values():
            assert job.coalesce is True and job.max_instances == 1
            assert job.misfire_grace_time and job.misfire_grace_time >= 30
        digest = str(listed[DIGEST_JOB].trigger)
        assert "day_of_week='mon'" in digest and "hour='9'" in digest and "minute='0'" in digest
    finally:
        await jobs.shutdown()


async def test_the_pull_job_pulls_due_clusters_and_evaluates(fast: Context) -> None:
    register(fast, "gke-test")
    with BundleServer(PIQC_BUNDLE.read_bytes()) as server:
        clusters.set_sources(
            fast, "gke-test", clusters.PullSources(piqc_url=server.url), actor="test"
        )
        jobs = Scheduler(fast)
        jobs.start()
        try:
            for _ in range(50):
                await asyncio.sleep(0.1)
                if server.hits:
                    break
            await asyncio.sleep(0.5)
        finally:
            await jobs.shutdown()
    # Due once: the interval (300 s) is far longer than the test.
    assert len(server.hits) == 1
    assert jobs.runs[PULL_JOB] >= 2
    with transaction(fast.sessions) as session:
        cluster = get_cluster(session, "gke-test")
        assert cluster.last_pull_status == "ok"


def test_retention_deletes_only_old_history(ctx: Context) -> None:
    register(ctx, "prod")
    with transaction(ctx.sessions) as session:
        cluster = get_cluster(session, "prod")
        now = utcnow()
        for age_days in (1, 29, 31, 90):
            session.add(
                FactHistory(
                    cluster_id=cluster.id,
                    workload_id="ns/a/deployment/x",
                    facts={},
                    source="push",
                    observed_at=now - timedelta(days=age_days),
                )
            )
    assert prune_fact_history(ctx) == 2
    assert prune_fact_history(ctx) == 0  # safe to rerun
    with ctx.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fact_history")).scalar() == 2


async def test_the_digest_job_skips_until_the_digest_module_exists(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    monkeypatch.setitem(sys.modules, "bot.digest", None)  # as if not installed
    await post_digest(ctx)
    assert "weekly digest skipped" in caplog.text
    posted: list[Context] = []

    async def post_weekly_digest(given: Context) -> None:
        posted.append(given)

    fake = types.ModuleType("bot.digest")
    fake.post_weekly_digest = post_weekly_digest  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bot.digest", fake)
    await post_digest(ctx)
    assert posted == [ctx]


def test_sqlite_has_one_process_and_it_leads(ctx: Context) -> None:
    if ctx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    assert Leadership(ctx.engine).refresh() is True


def test_one_postgres_leader_at_a_time_handed_over_on_release_or_death(ctx: Context) -> None:
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("leadership by advisory lock needs STEWARD_TEST_DATABASE_URL (PostgreSQL)")
    url = ctx.engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    try:
        first, second = (Leadership(engine, key=0x7E57) for engine in engines)
        assert first.refresh() and first.is_leader
        assert not second.refresh() and not second.is_leader
        assert first.refresh()  # keeps what it holds
        first.release()
        assert second.refresh()
        # The leader's connection dies (its process crashed): PostgreSQL frees the lock.
        with ctx.engine.connect() as admin:
            admin.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = :k AND granted"
                ),
                {"k": 0x7E57},
            )
            admin.commit()
        assert first.refresh()  # the follower takes over
        assert not second.refresh() and not second.is_leader  # the old leader knows it lost
        first.release()
        second.release()
    finally:
        for engine in engines:
            engine.dispose()
