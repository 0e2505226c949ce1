"""Findings: fingerprints, rounding and savings totals that never count a dollar twice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.findings import Claim, Evaluation, Finding, Recommendation, savings_total
from tests.engine.enginekit import cluster, node, pod, run, served


def finding(rule: str, usd: float, claims: dict[str, float], kind: str = "savings") -> Finding:
    return Finding(
        rule=rule,
        level="model",
        cluster="prod",
        subject="ns/chat/deployment/x",
        monthly_usd=usd,
        kind=kind,  # type: ignore[arg-type]
        confidence="high",
        evidence={},
        recommendation=Recommendation(action="scale_replicas"),
        claims=[Claim(resource=r, usd=u) for r, u in claims.items()],
    )


def test_fingerprint_is_rule_cluster_subject() -> None:
    assert (
        finding("idle_allocation", 1, {}).fingerprint == "idle_allocation|prod|ns/chat/deployment/x"
    )
    fleet = finding("fleet_rebalance", 1, {}).model_copy(update={"cluster": None})
    assert fleet.fingerprint == "fleet_rebalance|*|ns/chat/deployment/x"


def test_dollars_are_rounded_to_cents_and_never_negative() -> None:
    assert finding("r", 1.005001, {}).monthly_usd == 1.01
    with pytest.raises(ValidationError):
        finding("r", -1, {})


def test_overlapping_claims_count_the_largest_once() -> None:
    tier = finding("tier_misplacement", 3000, {"prod|w": 3000})
    idle = finding("idle_allocation", 1000, {"prod|w": 1000})
    other = finding("idle_allocation", 500, {"prod|v": 500})
    risk = finding("kv_cache_pressure", 9999, {"prod|w": 9999}, kind="risk")
    assert savings_total([tier, idle, other, risk]) == 3500
    assert Evaluation(findings=[tier, idle, other, risk]).savings_total_usd() == 3500


def test_findings_without_claims_count_under_their_fingerprint() -> None:
    assert savings_total([finding("a", 10, {}), finding("b", 5, {})]) == 15


def test_tier_and_idle_on_one_deployment_count_once() -> None:
    values = {
        "model.name": "meta-llama/Llama-3.2-1B-Instruct",
        "model.parameterCount": 1235814400,
        "model.numLayers": 16,
        "model.headDim": 64,
        "hardware.gpuType": "NVIDIA-L40S",
        "k8s.replicas": 4,
        "obs.gpu.utilAvgPct": 3,
        "obs.vllm.kvCacheUsagePct": 1,
        "obs.vllm.requestsRunning": 2,
        "obs.vllm.tokensPerSec": 60,
    }
    evaluation = run(served("llama-1b", values))
    rules = {f.rule: f.monthly_usd for f in evaluation.findings}
    assert set(rules) == {"tier_misplacement", "idle_allocation"}
    assert evaluation.savings_total_usd() == max(rules.values())


def test_dark_capacity_and_regional_gap_on_one_node_count_once() -> None:
    evaluation = run(cluster("e", pod("p")), cluster("w", node("n"), region="us-west-2"))
    dark = next(f for f in evaluation.findings if f.rule == "dark_capacity")
    assert evaluation.savings_total_usd() == dark.monthly_usd
