"""Fleet-level rules: consolidating a model across clusters, placing pending pods."""

from __future__ import annotations

import pytest

from engine.rules.fleet import allocate
from tests.engine.enginekit import L4, MONTH, cluster, found, gaps, node, pod, run, served


def idle(replicas: int, util: float) -> dict[str, object]:
    return {"k8s.replicas": replicas, "obs.gpu.utilAvgPct": util}


def test_fleet_rebalance_consolidates_in_proportion_to_load() -> None:
    evaluation = run(
        cluster("prod-east", served(changes=idle(6, 15))),
        cluster("prod-west", served(changes=idle(2, 20)), region="us-west-2"),
    )
    [finding] = found(evaluation, "fleet_rebalance")
    assert (finding.level, finding.cluster) == ("fleet", None)
    assert finding.subject == "meta-llama/Llama-3.1-8B-Instruct"
    assert finding.recommendation.replicas == 3
    assert finding.recommendation.params["per_cluster"] == {"prod-east": 2, "prod-west": 1}
    assert finding.monthly_usd == pytest.approx(5 * L4 * MONTH)
    assert {c.resource: c.usd for c in finding.claims} == {
        "prod-east|ns/chat/deployment/llama-8b": pytest.approx(4 * L4 * MONTH),
        "prod-west|ns/chat/deployment/llama-8b": pytest.approx(L4 * MONTH),
    }


def test_fleet_rebalance_needs_every_cluster_under_thirty_percent() -> None:
    evaluation = run(
        cluster("a", served(changes=idle(6, 15))), cluster("b", served(changes=idle(2, 30)))
    )
    assert not found(evaluation, "fleet_rebalance")


def test_fleet_rebalance_needs_two_clusters() -> None:
    evaluation = run(cluster("a", served("x", idle(6, 15)), served("y", idle(6, 15))))
    assert not found(evaluation, "fleet_rebalance")


def test_fleet_rebalance_keeps_one_replica_per_cluster() -> None:
    evaluation = run(
        cluster("a", served(changes=idle(2, 1))), cluster("b", served(changes=idle(2, 1)))
    )
    [finding] = found(evaluation, "fleet_rebalance")
    assert finding.recommendation.params["per_cluster"] == {"a": 1, "b": 1}


def test_fleet_rebalance_with_missing_utilisation_is_a_fleet_gap() -> None:
    evaluation = run(
        cluster("a", served(changes=idle(6, 15))),
        cluster("b", served(changes={"obs.gpu.utilAvgPct": None})),
    )
    [gap] = gaps(evaluation, "fleet_rebalance")
    assert gap.cluster is None
    assert gap.missing == ["b/ns/chat/deployment/llama-8b:obs.gpu.utilAvgPct"]


@pytest.mark.parametrize(
    ("total", "items", "minimum", "expected"),
    [
        (3, [("e", 90, 6), ("w", 40, 2)], 1, {"e": 2, "w": 1}),
        (3, [("a", 290, 5), ("b", 5, 5), ("c", 5, 5)], 1, {"a": 1, "b": 1, "c": 1}),
        (4, [("a", 0, 2), ("b", 0, 2)], 1, {"a": 2, "b": 2}),
        (5, [("a", 100, 1), ("b", 1, 10)], 1, {"a": 1, "b": 4}),
    ],
)
def test_allocate_by_largest_remainder_within_bounds(
    total: int, items: list[tuple[str, float, int]], minimum: int, expected: dict[str, int]
) -> None:
    assert allocate(total, items, minimum) == expected


# --- regional_capacity_gap -----------------------------------------------------------------


def test_pending_pods_are_placed_on_dark_gpus_in_another_region() -> None:
    evaluation = run(
        cluster("prod-east", pod("finetune-job-0")),
        cluster("prod-west", node("h100-w-02"), region="us-west-2"),
    )
    [finding] = found(evaluation, "regional_capacity_gap")
    assert finding.subject == "prod-east/ns/training/pod/finetune-job-0"
    assert finding.cluster is None
    assert finding.monthly_usd == pytest.approx(4 * 6.88 * MONTH)
    assert finding.recommendation.params["target_cluster"] == "prod-west"
    assert finding.claims[0].resource == "prod-west|ns/gpu-pool/node/h100-w-02"
    # The dark node's GPUs are counted once, whichever finding claims them.
    assert evaluation.savings_total_usd() == pytest.approx(8 * 6.88 * MONTH)


@pytest.mark.parametrize(("minutes", "fires"), [(30, True), (29.9, False)])
def test_pending_threshold(minutes: float, fires: bool) -> None:
    evaluation = run(
        cluster("e", pod("p", minutes=minutes)), cluster("w", node("n"), region="us-west-2")
    )
    assert bool(found(evaluation, "regional_capacity_gap")) is fires


def test_same_region_or_too_few_or_other_type_does_not_fire() -> None:
    same_region = run(cluster("e", pod("p")), cluster("w", node("n")))
    too_few = run(cluster("e", pod("p", gpus=9)), cluster("w", node("n"), region="us-west-2"))
    other = run(cluster("e", pod("p")), cluster("w", node("n", gpu="nvidia-l4"), region="x"))
    for evaluation in (same_region, too_few, other):
        assert not found(evaluation, "regional_capacity_gap")


def test_one_pool_is_not_promised_to_two_pods() -> None:
    evaluation = run(
        cluster("e", pod("p1", gpus=6), pod("p2", gpus=6)),
        cluster("w", node("n"), region="us-west-2"),
    )
    [finding] = found(evaluation, "regional_capacity_gap")
    assert finding.subject == "e/ns/training/pod/p1"


def test_pending_pod_without_age_is_a_gap() -> None:
    p = pod("p")
    del p.facts["job.pendingSinceMinutes"]
    evaluation = run(cluster("e", p), cluster("w", node("n"), region="us-west-2"))
    assert gaps(evaluation, "regional_capacity_gap")[0].missing == ["job.pendingSinceMinutes"]


def test_a_deployment_scaled_to_zero_neither_blocks_nor_joins_the_rebalance() -> None:
    evaluation = run(
        cluster("a", served(changes=idle(6, 15))),
        cluster("b", served(changes=idle(2, 20))),
        cluster("c", served(changes={"k8s.replicas": 0, "obs.gpu.utilAvgPct": None})),
    )
    [finding] = found(evaluation, "fleet_rebalance")
    assert set(finding.recommendation.params["per_cluster"]) == {"a", "b"}
    assert not gaps(evaluation, "fleet_rebalance")
