"""Small builders for test data: payloads and registered clusters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot import clusters
from bot.context import Context

# The scenario corpus and the real piqc bundle, kept in the repository (tests/data);
# tests/test_data_copy.py checks them against the shared originals when those are present.
DATA = Path(__file__).resolve().parent / "data"
SCENARIOS = DATA / "scenarios"
PIQC_BUNDLE = DATA / "reference" / "piqc-facts-gke-t4.json"


def fact(value: Any, confidence: str = "high", **extra: Any) -> dict[str, Any]:
    """A piqc fact."""
    return {"value": value, "dataConfidence": confidence, **extra}


def workload(workload_id: str, **facts: Any) -> dict[str, Any]:
    """A workload whose facts are given as key=value (dots written as __)."""
    return {
        "workloadId": workload_id,
        "facts": {key.replace("__", "."): fact(value) for key, value in facts.items()},
    }


def payload(cluster: str, *workloads: dict[str, Any]) -> dict[str, Any]:
    """A piqc ingest payload."""
    return {"schemaVersion": "piqc-scan.v0.1", "cluster_id": cluster, "workloads": list(workloads)}


def register(ctx: Context, name: str, provider: str = "aws", region: str = "us-east-1") -> str:
    """Register a cluster and return its API key."""
    return clusters.add_cluster(ctx, name, provider, region, actor="test")


def scenario(path: Path) -> dict[str, Any]:
    """One shared scenario file."""
    return dict(json.loads(path.read_text()))
