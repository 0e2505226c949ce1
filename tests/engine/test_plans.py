"""Action plans: the exact change each finding proposes, its inverse, and what needs a human."""

from __future__ import annotations

from engine.catalog import default_catalog
from engine.findings import Finding, Recommendation
from engine.plans import GPU_PRODUCT_LABEL, ActionPlan, Change, Target, plan_for


def _finding(
    rule: str, rec: Recommendation, facts: dict[str, object] | None = None, **kw: object
) -> Finding:
    values = {
        "level": "model",
        "cluster": "prod-east",
        "subject": "ns/chat/deployment/mistral-7b",
        "monthly_usd": 100.0,
        "kind": "savings",
        "confidence": "high",
        "evidence": {
            "facts": {k: {"value": v, "confidence": "high"} for k, v in (facts or {}).items()}
        },
    }
    values.update(kw)
    return Finding(rule=rule, recommendation=rec, **values)  # type: ignore[arg-type]


def test_every_catalog_gpu_label_normalises_back_to_its_own_id() -> None:
    catalog = default_catalog()
    for spec in catalog.gpus():
        assert catalog.normalise_gpu(spec.product_label) == spec.id


def test_a_tier_move_pins_the_target_gpu_and_resizes_tensor_parallelism() -> None:
    rec = Recommendation(
        action="move_tier",
        target_gpu="L4-24GB",
        target_gpu_count=2,
        replicas=1,
        params={"current_gpu": "H100-SXM-80GB", "current_gpu_count": 1},
    )
    plan = plan_for(_finding("tier_misplacement", rec))
    assert plan.actuatable
    [target] = plan.targets
    assert (target.cluster, target.namespace, target.deployment) == (
        "prod-east",
        "chat",
        "mistral-7b",
    )
    assert target.changes == [
        Change(
            kind="node_selector",
            key=GPU_PRODUCT_LABEL,
            before="NVIDIA-H100-80GB-HBM3",
            after="NVIDIA-L4",
        ),
        Change(kind="gpu_limit", key="nvidia.com/gpu", before=1, after=2),
        Change(kind="vllm_arg", key="--tensor-parallel-size", before=1, after=2),
    ]


def test_the_inverse_undoes_every_change_in_reverse_order() -> None:
    plan = ActionPlan(
        rule="idle_allocation",
        mode="patch",
        targets=[
            Target(
                cluster="c",
                namespace="n",
                deployment="d",
                changes=[
                    Change(kind="replicas", before=4, after=1),
                    Change(kind="vllm_arg", key="--x", before="a", after="b"),
                ],
            )
        ],
    )
    inverse = plan.inverse()
    assert inverse.targets[0].changes == [
        Change(kind="vllm_arg", key="--x", before="b", after="a"),
        Change(kind="replicas", before=1, after=4),
    ]
    assert inverse.inverse() == plan


def test_idle_replicas_and_kv_pressure_become_replica_patches() -> None:
    idle = plan_for(
        _finding(
            "idle_allocation",
            Recommendation(action="scale_replicas", replicas=1, params={"current_replicas": 4}),
        )
    )
    assert idle.targets[0].changes == [Change(kind="replicas", before=4, after=1)]
    kv = plan_for(
        _finding(
            "kv_cache_pressure",
            Recommendation(action="add_replica", params={"add_replicas": 1}),
            facts={"k8s.replicas": 2},
            kind="risk",
        )
    )
    assert kv.targets[0].changes == [Change(kind="replicas", before=2, after=3)]
    fp8 = plan_for(
        _finding(
            "kv_cache_pressure",
            Recommendation(action="fp8_kv_cache", params={"kv_cache_dtype": "fp8"}),
            kind="risk",
        )
    )
    assert fp8.targets[0].changes == [
        Change(kind="vllm_arg", key="--kv-cache-dtype", before="auto", after="fp8")
    ]


def test_findings_that_need_a_person_carry_a_runbook() -> None:
    for rule, action in [
        ("numa_misalignment", "topology_aware_placement"),
        ("colocation_conflict", "separate_workloads"),
        ("regional_capacity_gap", "place_in_region"),
        ("dark_capacity", "scale_pool_down"),
    ]:
        plan = plan_for(_finding(rule, Recommendation(action=action)))
        assert plan.mode == "runbook" and plan.runbook == rule
        assert not plan.actuatable


def test_a_plan_without_a_deployment_subject_is_a_runbook() -> None:
    rec = Recommendation(action="scale_replicas", replicas=1, params={"current_replicas": 4})
    plan = plan_for(_finding("idle_allocation", rec, subject="ns/gpu-pool/node/x"))
    assert plan.mode == "runbook"
