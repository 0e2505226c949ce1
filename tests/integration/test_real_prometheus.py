"""Pulling the recorded cluster from a real Prometheus, through to priced findings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot import clusters
from bot.collectors import pull_clusters
from bot.config import Settings
from bot.context import Context, open_context
from store.db import transaction
from store.findings import list_findings
from tests.integration.recording import END, FIXTURE, render

H100_DEPLOYMENT = "ns/serve/deployment/mistral"
A10G_DEPLOYMENT = "ns/serve/deployment/llama"
DARK_NODE = "ns/gpu-pool/node/gpu-a100-1"
PENDING_POD = "ns/batch/pod/trainer-0"


def test_the_committed_recording_is_what_the_generator_writes() -> None:
    assert FIXTURE.read_text() == render(), "run: python -m tests.integration.recording > FIXTURE"


@pytest.fixture
def pulled(settings: Settings, prometheus_url: str) -> Iterator[Context]:
    """A context whose cluster `rec-east` was pulled from the recording at its end time."""
    ctx = open_context(settings.model_copy(update={"pull_scrape_interval_seconds": 60}))
    clusters.add_cluster(
        ctx,
        "rec-east",
        "aws",
        "us-east-1",
        "test",
        clusters.PullSources(prometheus_url=prometheus_url),
    )
    try:
        yield ctx
    finally:
        ctx.close()


async def facts_of(ctx: Context) -> dict[str, dict[str, Any]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT workload_id, facts FROM workload_facts")).all()
    return {wid: facts if isinstance(facts, dict) else json.loads(facts) for wid, facts in rows}


def brief(facts: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    return {key: (fact["value"], fact["dataConfidence"]) for key, fact in facts.items()}


async def test_pulled_facts_describe_the_recorded_cluster(pulled: Context) -> None:
    [outcome] = await pull_clusters(pulled, at=END)
    assert outcome.ok, outcome.error
    facts = await facts_of(pulled)
    assert set(facts) == {
        H100_DEPLOYMENT,
        A10G_DEPLOYMENT,
        DARK_NODE,
        PENDING_POD,
        "ns/gpu-pool/node/gpu-h100-1",
        "ns/gpu-pool/node/gpu-a10g-1",
    }
    assert brief(facts[H100_DEPLOYMENT]) == {
        "k8s.replicas": (1, "high"),
        "hardware.gpuCount": (1, "high"),
        "hardware.gpuType": ("NVIDIA-H100-80GB-HBM3", "high"),
        "obs.gpu.utilAvgPct": (30, "high"),
        "obs.cpu.utilAvgPct": (25, "high"),
        "model.name": ("mistralai/Mistral-7B-Instruct-v0.3", "high"),
        "obs.vllm.requestsRunning": (2, "high"),
        "obs.vllm.requestsWaiting": (0, "high"),
        "obs.vllm.kvCacheUsagePct": (5, "high"),
        "obs.vllm.tokensPerSec": (40, "high"),
        "obs.requestLatency.p99Ms": (2350, "high"),
        "vllm.gpuMemoryUtilization": (0.9, "high"),
        "vllm.kvCacheDtype": ("auto", "high"),
        "runtime.dtype": ("bfloat16", "high"),
        "model.maxModelLen": (8192, "high"),
        "runtime.engineType": ("vllm", "high"),
    }
    # The older vLLM: KV usage under its old name; no config info, so no dtype is claimed.
    # One replica's GPU series went stale 20 minutes ago: utilisation is medium confidence.
    assert brief(facts[A10G_DEPLOYMENT]) == {
        "k8s.replicas": (4, "high"),
        "hardware.gpuCount": (1, "high"),
        "hardware.gpuType": ("NVIDIA-A10G", "high"),
        "obs.gpu.utilAvgPct": (5, "medium"),
        "model.name": ("meta-llama/Llama-3.1-8B-Instruct", "high"),
        "obs.vllm.requestsRunning": (0.2, "high"),
        "obs.vllm.requestsWaiting": (0, "high"),
        "obs.vllm.kvCacheUsagePct": (2, "high"),
        "obs.vllm.tokensPerSec": (2, "high"),
    }
    assert brief(facts[DARK_NODE]) == {
        "hardware.gpuType": ("NVIDIA-A100-SXM4-80GB", "high"),
        "hardware.gpuCount": (8, "high"),
        "node.allocatedGpuCount": (2, "high"),
        "node.unallocatedGpuCount": (6, "high"),
        "obs.gpu.utilAvgPct": (22.5, "high"),
    }
    assert brief(facts[PENDING_POD]) == {
        "job.pendingGpuCount": (4, "high"),
        "job.pendingSinceMinutes": (45, "high"),
    }
    assert facts[H100_DEPLOYMENT]["obs.gpu.utilAvgPct"]["observedAt"] == "2026-07-20T12:00:00Z"


async def test_the_findings_that_follow_carry_their_dollar_figures(pulled: Context) -> None:
    await pull_clusters(pulled, at=END)
    with transaction(pulled.sessions) as session:
        found = {row.rule: row.as_json() for row in list_findings(session)}
    assert set(found) == {"tier_misplacement", "idle_allocation", "dark_capacity"}

    tier = found["tier_misplacement"]
    assert tier["subject"] == H100_DEPLOYMENT and tier["cluster"] == "rec-east"
    assert tier["recommendation"]["target_gpu"] == "L40S-48GB"
    assert tier["monthly_usd"] == pytest.approx((6.88 - 1.861) * 730, abs=0.01)  # 3663.87

    idle = found["idle_allocation"]
    assert idle["subject"] == A10G_DEPLOYMENT and idle["recommendation"]["replicas"] == 1
    assert idle["monthly_usd"] == pytest.approx(3 * 1.006 * 730, abs=0.01)  # 2203.14

    dark = found["dark_capacity"]
    assert dark["subject"] == DARK_NODE
    assert dark["monthly_usd"] == pytest.approx(6 * 3.43 * 730, abs=0.01)  # 15023.40


async def test_a_second_pull_updates_rather_than_duplicates(pulled: Context) -> None:
    await pull_clusters(pulled, at=END)
    await pull_clusters(pulled, at=END, force=True)
    with transaction(pulled.sessions) as session:
        rows = list_findings(session, include_all=True)
    assert sorted(row.rule for row in rows) == [
        "dark_capacity",
        "idle_allocation",
        "tier_misplacement",
    ]


def test_the_fixture_file_is_openmetrics(tmp_path: Path) -> None:
    text = FIXTURE.read_text()
    assert text.endswith("# EOF\n")
    assert "vllm:gpu_cache_usage_perc" in text and "hostname=" in text
