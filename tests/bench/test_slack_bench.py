"""Ack latency of an Approve click over real HTTP, 20 concurrent clients, and double decisions.

Run with `STEWARD_BENCH=1 pytest tests/bench/test_slack_bench.py -s` (add
STEWARD_TEST_DATABASE_URL for PostgreSQL). Steward runs as it does in
production: `steward serve` in its own process (uvicorn on loopback, scheduler
and all), talking to the fake Slack Web API served by this process. Each round,
20 clients click Approve on the same finding at the same moment; the time to
Slack's acknowledgement is measured per click. Figures are printed, never asserted.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.context import open_context
from store.db import transaction
from store.findings import FindingRow
from tests.bot.slackkit import (
    APPROVER,
    APPROVER_2,
    FORM,
    action_payload,
    audit_actions,
    form,
    make_finding,
    sign,
    slack_settings,
)
from tests.fakes.slack_api import FakeSlackProcess
from tests.serve import ServeProcess, serve_env

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(os.environ.get("STEWARD_BENCH") != "1", reason="set STEWARD_BENCH=1"),
]

CLIENTS = 20


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_approve_ack_latency(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rounds = int(os.environ.get("STEWARD_BENCH_SLACK_ROUNDS", "50"))
    with FakeSlackProcess() as fake:
        ctx = open_context(slack_settings(settings, fake))
        try:
            ids = [
                make_finding(ctx, slack_channel="C0FINDINGS", slack_ts=f"1.{i}")
                for i in range(rounds)
            ]
            server = ServeProcess(serve_env(ctx.settings), tmp_path / "serve.log")
            latencies: list[float] = []
            statuses: list[int] = []
            errors: list[str] = []
            lock = threading.Lock()
            barrier = threading.Barrier(CLIENTS)
            try:
                server.wait_healthy()
                url = f"{server.url}/slack/events"

                def client(index: int) -> None:
                    user = APPROVER if index % 2 else APPROVER_2
                    try:
                        with httpx.Client(timeout=30) as http:
                            for finding_id in ids:
                                payload = action_payload(
                                    "finding_approve",
                                    f"F-{finding_id}",
                                    user=user,
                                    response_url=fake.respond_url("approve"),
                                )
                                body = form(payload)
                                headers = {"Content-Type": FORM, **sign(body)}
                                barrier.wait(timeout=60)
                                started = time.perf_counter()
                                reply = http.post(url, content=body, headers=headers)
                                elapsed = time.perf_counter() - started
                                with lock:
                                    latencies.append(elapsed)
                                    statuses.append(reply.status_code)
                    except BaseException as exc:  # one failing client must not hang the others
                        errors.append(repr(exc))
                        barrier.abort()

                threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
                # The clients are the measuring instrument: a full collection of this
                # (pytest-sized) process would stall all 20 at once and be counted
                # against the server.
                gc.collect()
                gc.disable()
                wall = time.perf_counter()
                try:
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                finally:
                    gc.enable()
                wall = time.perf_counter() - wall
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with transaction(ctx.sessions) as session:
                        still_open = session.query(FindingRow).filter_by(status="open").count()
                    if still_open == 0:
                        break
                    time.sleep(0.1)
                time.sleep(1.0)  # let the losing listeners finish before counting
            finally:
                server.stop()
            doubles = 0
            for finding_id in ids:
                decided = [
                    a
                    for a in audit_actions(ctx, f"finding:F-{finding_id}")
                    if a == "finding.approved"
                ]
                doubles += len(decided) != 1
        finally:
            ctx.close()
    with capsys.disabled():
        print(
            f"\nslack ack latency on {ctx.engine.dialect.name}: {len(latencies)} clicks, "
            f"{CLIENTS} concurrent clients, {rounds} findings; "
            f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {_percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms; {len(latencies) / wall:,.0f} clicks/s; "
            f"findings not decided exactly once: {doubles}"
        )
    assert errors == [] and set(statuses) == {200}, (errors[:3], set(statuses))
    assert doubles == 0
