"""Pulling 500 simulated clusters, 1 % of them hanging.

Run explicitly: `STEWARD_BENCH=1 pytest tests/bench/test_pull_bench.py -s`. Prints, for
a first round and the next one (where the clusters that failed go first), the
wall time against one per-cluster timeout, when the fleet's findings were
evaluated, and facts stored per second; asserts no timings.
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
import sqlalchemy as sa

from bot import clusters
from bot.collectors import pull_clusters
from bot.config import Settings
from bot.context import open_context
from store.db import reading, utcnow
from store.findings import FindingRow
from tests.bot.collectors.promkit import AT, FakePrometheus, small_cluster

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(os.environ.get("STEWARD_BENCH") != "1", reason="set STEWARD_BENCH=1"),
]

CLUSTERS = 500
HANGING = CLUSTERS // 100
TIMEOUT = 5.0


@pytest.mark.parametrize("concurrency", [16, 64])
async def test_pull_500_clusters_with_1_percent_hanging(
    settings: Settings, concurrency: int
) -> None:
    ctx = open_context(
        settings.model_copy(
            update={"pull_cluster_timeout_seconds": TIMEOUT, "pull_concurrency": concurrency}
        )
    )
    fake = small_cluster(FakePrometheus())
    hanging = {f"c{i:03d}" for i in range(0, CLUSTERS, CLUSTERS // HANGING)}
    for i in range(CLUSTERS):
        name = f"c{i:03d}"
        clusters.add_cluster(
            ctx,
            name,
            "aws",
            "us-east-1",
            "bench",
            clusters.PullSources(prometheus_url=f"http://{name}.prom.test:9090"),
        )

    last_answer = [0.0]

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host.split(".")[0] in hanging:
            await asyncio.sleep(3600)
        last_answer[0] = time.perf_counter()
        return fake.handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    rounds: list[str] = []
    try:
        for label, force in (("first round", False), ("next round", True)):
            since = utcnow()
            started = time.perf_counter()
            outcomes = await pull_clusters(ctx, client=client, at=AT, force=force)
            wall = time.perf_counter() - started
            with ctx.engine.connect() as conn:
                history = conn.execute(sa.text("SELECT count(*) FROM fact_history")).scalar_one()
            with reading(ctx.sessions) as session:
                evaluated = session.scalar(sa.select(sa.func.max(FindingRow.last_seen)))
            ok = [o for o in outcomes if o.ok]
            facts = sum(o.facts for o in ok)
            findings_at = (evaluated - since).total_seconds() if evaluated else None
            rounds.append(
                f"  {label}: wall {wall:.2f}s = {TIMEOUT:g}s timeout + "
                f"{max(0.0, wall - TIMEOUT):.2f}s; last healthy answer "
                f"{last_answer[0] - started:.2f}s in; findings evaluated by "
                f"{findings_at or 0:.2f}s; {len(ok)} ok, {len(outcomes) - len(ok)} failed; "
                f"{facts} facts ({facts / wall:,.0f}/s), {history} fact sets kept"
            )
            assert len(outcomes) == CLUSTERS
            assert {o.cluster for o in outcomes if not o.ok} == hanging
    finally:
        await client.aclose()
        ctx.close()

    print(
        f"\npull bench ({ctx.engine.dialect.name}, concurrency {concurrency}): "
        f"{CLUSTERS} clusters, {HANGING} hanging, per-cluster timeout {TIMEOUT:g}s, "
        f"{len(fake.seen)} Prometheus requests answered\n" + "\n".join(rounds)
    )
