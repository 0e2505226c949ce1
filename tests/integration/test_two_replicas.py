"""Two `steward serve` processes on one PostgreSQL: every scheduled pull runs once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot import clusters
from bot.config import Settings
from bot.context import Context
from bot.scheduler import LEADER_LOCK
from tests.bot.collectors.bundle_server import BundleServer
from tests.conftest import PG_ENV
from tests.factories import PIQC_BUNDLE, register
from tests.serve import ServeProcess, serve_env

LEADS = "this replica now leads the scheduler"
INTERVAL = 1.0


class Replica(ServeProcess):
    """One `steward serve` subprocess that may lead the scheduler."""

    @property
    def leads(self) -> bool:
        return LEADS in self.text()


@pytest.fixture
def replicas(settings: Settings, ctx: Context, tmp_path: Path) -> Iterator[list[Replica]]:
    """Two serve processes sharing the test's PostgreSQL, keys and pepper."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"two replicas need PostgreSQL: set {PG_ENV}")
    env = serve_env(
        settings.model_copy(update={"scheduler_tick_seconds": 0.2, "leader_retry_seconds": 0.2})
    )
    running = [Replica(env, tmp_path / f"replica-{i}.log") for i in range(2)]
    try:
        for replica in running:
            replica.wait_healthy()
        yield running
    finally:
        for replica in running:
            replica.stop()


def gaps(hits: list[float]) -> list[float]:
    return [later - earlier for earlier, later in pairwise(hits)]


def history_rows(ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM fact_history")).scalar_one())


def stored_once_each(ctx: Context, server: BundleServer, lost: int = 0) -> None:
    """Every served bundle is stored once: never more rows than requests.

    A pull whose request was served may still be committing when we look, so
    wait for the rows to catch up; `lost` pulls may have died with a killed leader.
    """
    deadline = time.monotonic() + 5
    while True:
        rows, hits = history_rows(ctx), len(server.hits)
        assert rows <= hits, f"{rows} stored rows for {hits} served bundles: a pull ran twice"
        if rows >= hits - lost or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rows >= hits - lost, f"only {rows} of {hits} served bundles were stored"


def lock_holders(ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = :k"
                ),
                {"k": LEADER_LOCK},
            ).scalar_one()
        )


def test_each_scheduled_pull_runs_once_and_leadership_moves_when_the_leader_dies(
    ctx: Context, replicas: list[Replica]
) -> None:
    register(ctx, "gke-test")
    with BundleServer(PIQC_BUNDLE.read_bytes()) as server:
        clusters.set_sources(
            ctx,
            "gke-test",
            clusters.PullSources(piqc_url=server.url, pull_interval_seconds=int(INTERVAL)),
            actor="test",
        )
        time.sleep(4.5)
        leaders = [replica for replica in replicas if replica.leads]
        assert len(leaders) == 1, [replica.text()[-2000:] for replica in replicas]
        assert lock_holders(ctx) == 1
        before = list(server.hits)
        assert len(before) >= 3
        # One pull per interval, never two replicas pulling the same round.
        assert min(gaps(before)) >= INTERVAL * 0.8, gaps(before)
        stored_once_each(ctx, server)

        [leader] = leaders
        [follower] = [replica for replica in replicas if replica is not leader]
        leader.stop(signal.SIGKILL)
        time.sleep(4.5)
        after = server.hits[len(before) :]
        assert follower.leads, follower.text()[-2000:]
        assert len(after) >= 2
        assert min(gaps(server.hits)) >= INTERVAL * 0.8, gaps(server.hits)
        stored_once_each(ctx, server, lost=1)  # the killed leader may have died mid-pull
        assert lock_holders(ctx) == 1
        follower.stop()
        assert "Application shutdown complete" in follower.text()
        assert lock_holders(ctx) == 0  # handed back on a clean stop
