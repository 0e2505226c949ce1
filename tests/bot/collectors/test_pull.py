"""Pulling registered clusters: concurrency, deadlines, failures, backoff, tokens, piqc."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import respx
import sqlalchemy as sa
from typer.testing import CliRunner

from bot import clusters
from bot.cli import app
from bot.collectors import (
    Fetched,
    backoff_seconds,
    due_targets,
    fetch_one,
    make_client,
    pull_clusters,
    record_outcomes,
)
from bot.config import Settings
from bot.context import Context, open_context
from store.db import transaction, utcnow
from store.registry import get_cluster
from tests.bot.collectors.bundle_server import BundleServer
from tests.bot.collectors.promkit import AT, PROM_URL, FakePrometheus, small_cluster
from tests.factories import PIQC_BUNDLE, register

HUNG_URL = "http://hung.test:9090"


async def never(_request: httpx.Request) -> httpx.Response:
    """A Prometheus that never answers."""
    await asyncio.sleep(30)
    raise AssertionError("unreachable")


def set_sources(ctx: Context, name: str, **sources: object) -> None:
    clusters.set_sources(ctx, name, clusters.PullSources(**sources), actor="test")  # type: ignore[arg-type]


def cluster_row(ctx: Context, name: str) -> clusters.ClusterRow:
    return next(row for row in clusters.list_clusters(ctx) if row.name == name)


def stored_facts(ctx: Context, name: str) -> dict[str, dict[str, object]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT w.workload_id, w.facts, w.source FROM workload_facts w "
                "JOIN clusters c ON c.id = w.cluster_id WHERE c.name = :n"
            ),
            {"n": name},
        ).all()
    return {
        wid: {"facts": facts if isinstance(facts, dict) else json.loads(facts), "source": source}
        for wid, facts, source in rows
    }


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    fake = small_cluster(FakePrometheus())
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{PROM_URL}/api/v1/query").mock(side_effect=fake.handler)
        yield fake


async def test_a_pull_stores_facts_like_a_push_and_evaluates(
    ctx: Context, prom: FakePrometheus
) -> None:
    register(ctx, "prod-east")
    set_sources(ctx, "prod-east", prometheus_url=PROM_URL)
    [outcome] = await pull_clusters(ctx, at=AT)
    assert outcome.ok and outcome.workloads == 3 and outcome.facts > 20
    stored = stored_facts(ctx, "prod-east")
    assert stored["ns/serve/deployment/mistral"]["source"] == "prometheus"
    row = cluster_row(ctx, "prod-east")
    assert row.last_pull_status == "ok" and row.pull_failures == 0 and row.last_facts_at
    assert row.next_pull_at is not None and row.last_pull_at is not None
    assert row.next_pull_at - row.last_pull_at == timedelta(seconds=300)
    # The evaluation ran: the H100 serving a 7B model is a finding.
    with ctx.engine.connect() as conn:
        rules = set(conn.execute(sa.text("SELECT rule FROM findings")).scalars())
    assert "tier_misplacement" in rules


async def test_only_due_clusters_are_pulled(ctx: Context, prom: FakePrometheus) -> None:
    register(ctx, "prod-east")
    register(ctx, "push-only")
    set_sources(ctx, "prod-east", prometheus_url=PROM_URL)
    assert len(await pull_clusters(ctx, at=AT)) == 1
    assert await pull_clusters(ctx, at=AT) == []  # not due again for 300 s
    assert len(await pull_clusters(ctx, at=AT, force=True)) == 1


async def test_a_hung_cluster_does_not_delay_the_others(settings: Settings, tmp_path: Path) -> None:
    ctx = open_context(settings.model_copy(update={"pull_cluster_timeout_seconds": 0.5}))
    try:
        fake = small_cluster(FakePrometheus())
        hung = HUNG_URL
        for name, url in (("fine-1", PROM_URL), ("hung", hung), ("fine-2", PROM_URL)):
            register(ctx, name)
            set_sources(ctx, name, prometheus_url=url)
        # A request that never completes never counts as "called" for respx.
        with respx.mock(assert_all_called=False) as router:
            router.post(f"{PROM_URL}/api/v1/query").mock(side_effect=fake.handler)
            router.post(f"{hung}/api/v1/query").mock(side_effect=never)
            started = time.monotonic()
            outcomes = {o.cluster: o for o in await pull_clusters(ctx, at=AT)}
            elapsed = time.monotonic() - started
        assert elapsed < 3
        assert outcomes["fine-1"].ok and outcomes["fine-2"].ok
        assert not outcomes["hung"].ok
        assert "took longer than 0.5s" in (outcomes["hung"].error or "")
        row = cluster_row(ctx, "hung")
        assert row.last_pull_status == "error" and row.pull_failures == 1
        assert "STEWARD_PULL_CLUSTER_TIMEOUT_SECONDS" in (row.last_pull_error or "")
    finally:
        ctx.close()


async def test_failures_back_off_and_a_success_resets(ctx: Context) -> None:
    register(ctx, "flaky")
    set_sources(ctx, "flaky", prometheus_url=PROM_URL, pull_interval_seconds=60)
    fake = small_cluster(FakePrometheus())
    with respx.mock() as router:
        route = router.post(f"{PROM_URL}/api/v1/query")
        route.mock(return_value=httpx.Response(503, text="down"))
        waits = []
        for _ in range(3):
            [outcome] = await pull_clusters(ctx, at=AT, force=True)
            assert not outcome.ok and "answered 503" in (outcome.error or "")
            row = cluster_row(ctx, "flaky")
            assert row.next_pull_at and row.last_pull_at
            waits.append((row.next_pull_at - row.last_pull_at).total_seconds())
        assert waits == [60, 120, 240]
        assert cluster_row(ctx, "flaky").pull_failures == 3
        route.mock(side_effect=fake.handler)
        [outcome] = await pull_clusters(ctx, at=AT, force=True)
    assert outcome.ok
    row = cluster_row(ctx, "flaky")
    assert row.pull_failures == 0 and row.last_pull_error is None
    assert backoff_seconds(60, 30, 3600) == 3600


async def test_the_token_is_read_at_each_pull_and_never_kept(
    ctx: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "prom.token"
    token_file.write_text("first-secret\n")
    register(ctx, "secured")
    set_sources(ctx, "secured", prometheus_url=PROM_URL, prometheus_token_file=str(token_file))
    fake = small_cluster(FakePrometheus())
    caplog.set_level(logging.DEBUG)
    with respx.mock() as router:
        router.post(f"{PROM_URL}/api/v1/query").mock(side_effect=fake.handler)
        await pull_clusters(ctx, at=AT, force=True)
        token_file.write_text("second-secret")
        await pull_clusters(ctx, at=AT, force=True)
        router.post(f"{PROM_URL}/api/v1/query").mock(return_value=httpx.Response(403))
        [refused] = await pull_clusters(ctx, at=AT, force=True)
    tokens = [request.headers["authorization"] for request in fake.seen]
    assert tokens[0] == "Bearer first-secret" and tokens[-1] == "Bearer second-secret"
    assert "token file" in (refused.error or "")
    token_file.unlink()
    [missing] = await pull_clusters(ctx, at=AT, force=True)
    assert "cannot read the Prometheus token file" in (missing.error or "")
    assert "steward cluster set secured --prometheus-token-file" in (missing.error or "")
    with ctx.engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("clusters", "audit_log", "workload_facts")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
        )
    assert "secret" not in dump.replace(str(token_file), "")
    assert "first-secret" not in caplog.text and "second-secret" not in caplog.text


async def test_the_piqc_endpoint_is_pulled_over_http_like_a_push(ctx: Context) -> None:
    register(ctx, "gke-test", provider="gcp", region="us-central1")
    bundle = json.loads(PIQC_BUNDLE.read_text())
    with BundleServer(PIQC_BUNDLE.read_bytes()) as server:
        set_sources(ctx, "gke-test", piqc_url=server.url)
        [outcome] = await pull_clusters(ctx)
    assert outcome.ok, outcome.error
    assert len(server.hits) == 1
    stored = stored_facts(ctx, "gke-test")
    [obj] = bundle["objects"]
    assert stored[obj["workloadId"]]["facts"] == obj["facts"]  # every fact kept as sent
    assert stored[obj["workloadId"]]["source"] == "piqc"


async def test_a_bad_piqc_endpoint_is_recorded(ctx: Context) -> None:
    register(ctx, "gke-test")
    with BundleServer(b'{"not": "a bundle"}') as server:
        set_sources(ctx, "gke-test", piqc_url=server.url)
        [outcome] = await pull_clusters(ctx)
    assert not outcome.ok and "not a piqc ingest payload" in (outcome.error or "")
    with BundleServer(b"{}", status=500) as server:
        set_sources(ctx, "gke-test", piqc_url=server.url)
        [outcome] = await pull_clusters(ctx)
    assert "answered 500" in (outcome.error or "")


async def test_both_sources_merge_with_prometheus_last(ctx: Context) -> None:
    register(ctx, "both")
    fake = small_cluster(FakePrometheus())
    piqc = {
        "schemaVersion": "piqc-scan.v0.1",
        "objects": [
            {
                "workloadId": "ns/serve/deployment/mistral",
                "facts": {
                    "obs.gpu.utilAvgPct": {"value": 99, "dataConfidence": "medium"},
                    "workload.class": {"value": "online", "dataConfidence": "high"},
                },
            }
        ],
    }
    with BundleServer(json.dumps(piqc).encode()) as server:
        set_sources(ctx, "both", piqc_url=server.url, prometheus_url=PROM_URL)
        with respx.mock() as router:
            router.post(f"{PROM_URL}/api/v1/query").mock(side_effect=fake.handler)
            router.route(host="127.0.0.1").pass_through()
            [outcome] = await pull_clusters(ctx, at=AT)
    assert outcome.ok, outcome.error
    stored = stored_facts(ctx, "both")["ns/serve/deployment/mistral"]
    assert stored["source"] == "piqc+prometheus"
    assert stored["facts"]["obs.gpu.utilAvgPct"]["value"] == 20
    assert stored["facts"]["workload.class"]["value"] == "online"


def test_cli_sets_sources_pulls_and_lists_the_pull(settings: Settings, ctx: Context) -> None:
    env = {
        "STEWARD_DATABASE_URL": settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(settings.key_pepper_file),
    }
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result.stdout if code == 0 else result.stdout + result.stderr

    run(
        "cluster",
        "add",
        "gke-test",
        "--provider",
        "gcp",
        "--region",
        "us-central1",
        "--piqc-url",
        "http://127.0.0.1:9/nothing",
    )
    run("cluster", "add", "plain", "--provider", "aws", "--region", "us-east-1")
    assert "steward cluster set plain" in run("pull", "plain", code=1)
    assert "not an http(s) URL" in run("cluster", "set", "plain", "--piqc-url", "ftp://x", code=1)
    failed = run("pull", "gke-test", code=1)
    assert "cannot reach the piqc endpoint" in failed
    listed = json.loads(run("cluster", "list", "--json"))
    by_name = {row["name"]: row for row in listed}
    assert by_name["gke-test"]["last_pull_status"] == "error"
    assert by_name["plain"]["last_pull_status"] is None
    with BundleServer(PIQC_BUNDLE.read_bytes()) as server:
        shown = json.loads(run("cluster", "set", "gke-test", "--piqc-url", server.url, "--json"))
        assert shown["piqc_url"] == server.url and shown["pull_failures"] == 0
        pulled = json.loads(run("pull", "--json"))
    assert [(p["cluster"], p["status"], p["workloads"]) for p in pulled] == [("gke-test", "ok", 1)]
    table = run("cluster", "list")
    assert "ok" in table and "push only" in table
    cleared = json.loads(run("cluster", "set", "gke-test", "--piqc-url", "", "--json"))
    assert cleared["piqc_url"] is None
    with transaction(ctx.sessions) as session:
        assert get_cluster(session, "gke-test").next_pull_at is None
    assert utcnow()


async def test_findings_do_not_wait_for_a_hung_cluster_and_it_goes_first_next_time(
    settings: Settings,
) -> None:
    ctx = open_context(settings.model_copy(update={"pull_cluster_timeout_seconds": 3}))
    try:
        fake = small_cluster(FakePrometheus())
        hung = HUNG_URL
        for name, url in (("a-fine", PROM_URL), ("z-hung", hung)):
            register(ctx, name)
            set_sources(ctx, name, prometheus_url=url)
        assert [t.name for t in due_targets(ctx, utcnow())] == ["a-fine", "z-hung"]
        with respx.mock(assert_all_called=False) as router:
            router.post(f"{PROM_URL}/api/v1/query").mock(side_effect=fake.handler)
            router.post(f"{hung}/api/v1/query").mock(side_effect=never)
            round_ = asyncio.create_task(pull_clusters(ctx, at=AT))
            rules: set[str] = set()
            while not rules and not round_.done():
                await asyncio.sleep(0.05)
                with ctx.engine.connect() as conn:
                    rules = set(conn.execute(sa.text("SELECT rule FROM findings")).scalars())
            # The healthy cluster's findings exist while the hung one is still being waited on.
            assert "tier_misplacement" in rules and not round_.done()
            outcomes = {o.cluster: o.ok for o in await round_}
        assert outcomes == {"a-fine": True, "z-hung": False}
        # The next round starts with the cluster that failed, so its timeout runs early.
        assert [t.name for t in due_targets(ctx, utcnow(), force=True)] == ["z-hung", "a-fine"]
    finally:
        ctx.close()


def _refuse(ctx: Context, event: str, condition: str) -> None:
    """A database that refuses some writes (a trigger raising), as a full disk might.

    `event` is e.g. `INSERT ON fact_history`; `condition` is SQL on NEW.
    """
    with ctx.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE {event} WHEN {condition} "
                "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused by the database'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE {event} FOR EACH ROW EXECUTE FUNCTION refuse()"
            )


async def test_a_cluster_that_cannot_be_stored_fails_alone_in_its_batch(
    ctx: Context, prom: FakePrometheus
) -> None:
    for name in ("good", "poisoned"):
        register(ctx, name)
        set_sources(ctx, name, prometheus_url=PROM_URL)
    with transaction(ctx.sessions) as session:
        poisoned = get_cluster(session, "poisoned")
        assert poisoned is not None
    _refuse(ctx, "INSERT ON fact_history", f"NEW.cluster_id = {poisoned.id}")
    client = make_client(ctx)
    try:
        batch = [await fetch_one(ctx, t, client, AT) for t in due_targets(ctx, utcnow())]
    finally:
        await client.aclose()
    assert [f.error for f in batch] == [None, None]
    results = record_outcomes(ctx, batch)
    assert not isinstance(results[0], Fetched)  # stored: the next due time
    failed = results[1]
    assert isinstance(failed, Fetched) and "refused by the database" in (failed.error or "")
    assert stored_facts(ctx, "good") and not stored_facts(ctx, "poisoned")
    assert cluster_row(ctx, "good").last_pull_status == "ok"
    row = cluster_row(ctx, "poisoned")
    assert row.last_pull_status == "error" and row.pull_failures == 1
    assert "refused by the database" in (row.last_pull_error or "")


async def test_a_pull_the_database_cannot_record_is_reported_not_raised(
    ctx: Context, prom: FakePrometheus
) -> None:
    register(ctx, "prod-east")
    set_sources(ctx, "prod-east", prometheus_url=PROM_URL)
    _refuse(ctx, "UPDATE ON clusters", "NEW.last_pull_at IS NOT NULL")
    [outcome] = await pull_clusters(ctx, at=AT)
    assert not outcome.ok and "refused by the database" in (outcome.error or "")
    assert stored_facts(ctx, "prod-east") == {}
    assert cluster_row(ctx, "prod-east").last_pull_at is None
