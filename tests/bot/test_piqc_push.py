"""The real piqc client pushes a real bundle to a running Steward."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from piqc.cli.commands import _push_bundle
from rich.console import Console

from bot.context import Context
from tests.conftest import LiveServer
from tests.factories import PIQC_BUNDLE, SCENARIOS, register


def _push(server: LiveServer, bundle: Path, cluster: str, key: str) -> str:
    console = Console(record=True, width=200)
    _push_bundle(str(bundle), server.url, cluster, console, api_key=key)
    return console.export_text()


def test_piqc_push_succeeds_and_every_fact_is_kept(ctx: Context, live_api: LiveServer) -> None:
    key = register(ctx, "gke-test", provider="gcp", region="us-central1")
    printed = _push(live_api, PIQC_BUNDLE, "gke-test", key)
    assert "Push succeeded" in printed, printed
    assert "recommendation(s) generated" in printed
    bundle = json.loads(PIQC_BUNDLE.read_text())
    with ctx.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT facts FROM workload_facts")).scalar_one()
    stored = raw if isinstance(raw, dict) else json.loads(raw)
    assert stored == bundle["objects"][0]["facts"]


def test_piqc_reports_a_refused_push(ctx: Context, live_api: LiveServer) -> None:
    register(ctx, "gke-test")
    other = register(ctx, "other")
    printed = _push(live_api, PIQC_BUNDLE, "gke-test", other)
    assert "Platform returned 403" in printed


def test_piqc_counts_the_findings_steward_returns(
    ctx: Context, live_api: LiveServer, tmp_path: Path
) -> None:
    case = json.loads(next(SCENARIOS.glob("v01-*.json")).read_text())
    payload = case["clusters"][0]["ingest"]
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps({"schemaVersion": payload["schemaVersion"], "objects": payload["workloads"]})
    )
    key = register(ctx, "prod-east")
    printed = _push(live_api, bundle, "prod-east", key)
    assert "Push succeeded — 1 recommendation(s) generated" in printed, printed
