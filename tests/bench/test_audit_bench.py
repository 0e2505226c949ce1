"""Audit log throughput: appends/s and verified records/s on SQLite and PostgreSQL.

Run with `STEWARD_BENCH=1 pytest tests/bench/test_audit_bench.py -s`; the number
of records defaults to 100,000 (STEWARD_BENCH_AUDIT_N). Figures are printed,
never asserted: they depend on the machine.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from store.audit import append, export_jsonl, verify, verify_export
from store.db import make_engine, make_sessionmaker, transaction
from store.migrate import upgrade
from store.signing import Signer

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(os.environ.get("STEWARD_BENCH") != "1", reason="set STEWARD_BENCH=1"),
]

BATCH = 1000  # appends per transaction in the batched run
SINGLE = 2000  # appends in the one-per-transaction run


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bench.db'}"
    pg = os.environ.get("STEWARD_TEST_DATABASE_URL")
    if not pg:
        pytest.skip("STEWARD_TEST_DATABASE_URL is not set")
    return pg


def _rate(count: int, started: float) -> str:
    return f"{count / (time.perf_counter() - started):,.0f}/s"


def test_audit_append_and_verify_rates(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    n = int(os.environ.get("STEWARD_BENCH_AUDIT_N", "100000"))
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    signer = Signer.generate()
    body = {"finding": "F-0", "cluster": "prod-east", "monthly_usd": "3200.32"}

    started = time.perf_counter()
    for first in range(0, n, BATCH):
        with transaction(sessions) as session:
            for i in range(first, min(n, first + BATCH)):
                append(
                    session,
                    signer,
                    actor="bench",
                    action="finding.opened",
                    subject=f"F-{i}",
                    body=body,
                )
    batched = _rate(n, started)

    started = time.perf_counter()
    for i in range(SINGLE):
        with transaction(sessions) as session:
            append(
                session,
                signer,
                actor="bench",
                action="finding.approved",
                subject=f"F-{i}",
                body=body,
            )
    single = _rate(SINGLE, started)

    started = time.perf_counter()
    with transaction(sessions) as session:
        report = verify(session)
    verified = _rate(report.records, started)
    assert report.ok

    out = io.StringIO()
    with transaction(sessions) as session:
        export_jsonl(session, out)
    lines = out.getvalue().splitlines()
    started = time.perf_counter()
    assert verify_export(lines).ok
    offline = _rate(report.records, started)
    engine.dispose()

    with capsys.disabled():
        print(
            f"\naudit bench [{engine.dialect.name}] cores={os.cpu_count()} records={report.records}"
            f"\n  append, {BATCH} per transaction: {batched}"
            f"\n  append, one per transaction:  {single}"
            f"\n  verify (database):            {verified}"
            f"\n  verify_export (offline):      {offline}"
        )
