"""Every shared scenario, evaluated straight from its payloads (no store, no HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.evaluate import evaluate
from engine.facts import (
    FactsBundle,
    FleetSnapshot,
    IngestPayload,
    bundle_to_payload,
    payload_to_cluster,
)
from engine.findings import Finding
from engine.prices import PriceBook, default_price_book
from tests.factories import PIQC_BUNDLE
from tests.factories import SCENARIOS as SCENARIO_DIR

SCENARIOS = sorted(SCENARIO_DIR.glob("*.json"))
BUNDLE = PIQC_BUNDLE


def fleet_of(scenario: dict[str, Any]) -> FleetSnapshot:
    return FleetSnapshot(
        clusters=[
            payload_to_cluster(
                IngestPayload.model_validate(c["ingest"]),
                name=c["name"],
                provider=c["provider"],
                region=c["region"],
            )
            for c in scenario["clusters"]
        ]
    )


def matches(finding: Finding, expect: dict[str, Any]) -> bool:
    if finding.rule != expect["rule"]:
        return False
    if expect.get("cluster") is not None and finding.cluster != expect["cluster"]:
        return False
    if not any(s in finding.subject for s in expect["subjects"]):
        return False
    if expect.get("level") is not None and finding.level != expect["level"]:
        return False
    if expect.get("monthly_usd") is not None and (
        abs(finding.monthly_usd - expect["monthly_usd"]) > 0.01 * expect["monthly_usd"]
    ):
        return False
    rec = finding.recommendation
    for key in ("target_gpu", "target_gpu_count", "replicas"):
        if expect.get(key) is not None and getattr(rec, key) != expect[key]:
            return False
    return True


def test_the_scenario_corpus_is_present() -> None:
    assert len(SCENARIOS) >= 14


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    scenario = json.loads(path.read_text())
    evaluation = evaluate(fleet_of(scenario), PriceBook.from_mapping(scenario["price_book"]))
    summary = [(f.rule, f.cluster, f.subject, f.monthly_usd) for f in evaluation.findings]
    for expect in scenario["expect"]:
        assert any(matches(f, expect) for f in evaluation.findings), (expect, summary)
    for finding in evaluation.findings:
        json.dumps(finding.evidence, allow_nan=False)  # stored as JSON as it is
    fired = {f.rule for f in evaluation.findings}
    assert not fired & set(scenario["expect_absent"]), summary
    assert evaluation.savings_total_usd() <= sum(
        f.monthly_usd for f in evaluation.findings if f.kind == "savings"
    )


def test_real_piqc_bundle_claims_nothing_it_cannot_support() -> None:
    bundle = FactsBundle.model_validate(json.loads(BUNDLE.read_text()))
    cluster = payload_to_cluster(bundle_to_payload(bundle, "gke"), region="us-central1")
    evaluation = evaluate(FleetSnapshot(clusters=[cluster]), default_price_book())
    assert evaluation.findings == []
    missing = {key for gap in evaluation.gaps for key in gap.missing}
    assert "obs.gpu.utilAvgPct" in missing
    assert "obs.vllm.kvCacheUsagePct" in missing
    assert {gap.rule for gap in evaluation.gaps} >= {"idle_allocation", "tier_misplacement"}
    assert all(gap.subject == "ns/inference/deployment/vllm-tinyllama" for gap in evaluation.gaps)
