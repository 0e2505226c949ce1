"""Action plans: the exact, machine-readable change a finding proposes, and its inverse.

A plan either patches Deployments (replicas, the GPU node selector, the GPU
limit, vLLM arguments) or, when the change needs a person (NUMA placement,
separating workloads, moving work between regions, resizing a node pool), names
a runbook and cannot be actuated automatically.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from engine.catalog import Catalog, default_catalog
from engine.findings import Finding

ChangeKind = Literal["replicas", "node_selector", "gpu_limit", "vllm_arg"]
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
TENSOR_PARALLEL_ARG = "--tensor-parallel-size"
KV_CACHE_DTYPE_ARG = "--kv-cache-dtype"
MAX_MODEL_LEN_ARG = "--max-model-len"


class Change(BaseModel):
    """One field of a Deployment, from `before` to `after`."""

    kind: ChangeKind
    key: str | None = None  # the label, resource or argument the change is about
    before: Any = None
    after: Any = None

    def inverse(self) -> Change:
        """The change that undoes this one."""
        return Change(kind=self.kind, key=self.key, before=self.after, after=self.before)


class Target(BaseModel):
    """A Deployment and the changes it gets."""

    cluster: str
    namespace: str
    deployment: str
    changes: list[Change]

    @property
    def workload_id(self) -> str:
        """The workload id the target was reported under."""
        return f"ns/{self.namespace}/deployment/{self.deployment}"


class ActionPlan(BaseModel):
    """What approving a finding does."""

    rule: str
    mode: Literal["patch", "runbook"]
    targets: list[Target] = Field(default_factory=list)
    runbook: str | None = None  # the runbook id (a template under prompts/runbook/)
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def actuatable(self) -> bool:
        """Only patches can be applied automatically."""
        return self.mode == "patch" and bool(self.targets)

    def inverse(self) -> ActionPlan:
        """The plan that puts every target back as it was."""
        return self.model_copy(
            update={
                "targets": [
                    target.model_copy(
                        update={"changes": [c.inverse() for c in reversed(target.changes)]}
                    )
                    for target in self.targets
                ]
            }
        )


def _split_deployment(workload_id: str) -> tuple[str, str] | None:
    parts = workload_id.split("/")
    if len(parts) == 4 and parts[0] == "ns" and parts[2] == "deployment":
        return parts[1], parts[3]
    return None


def _fact(finding: Finding, key: str) -> Any:
    entry = finding.evidence.get("facts", {}).get(key)
    return entry.get("value") if isinstance(entry, dict) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _target(finding: Finding, changes: list[Change]) -> list[Target]:
    place = _split_deployment(finding.subject)
    if finding.cluster is None or place is None or not changes:
        return []
    namespace, deployment = place
    return [
        Target(cluster=finding.cluster, namespace=namespace, deployment=deployment, changes=changes)
    ]


def _move_changes(finding: Finding, catalog: Catalog) -> list[Change]:
    rec = finding.recommendation
    current_gpu = rec.params.get("current_gpu")
    current_n = _int(rec.params.get("current_gpu_count"))
    if rec.target_gpu is None or rec.target_gpu_count is None or current_gpu is None:
        return []
    current_spec, target_spec = catalog.gpu(current_gpu), catalog.gpu(rec.target_gpu)
    if current_spec is None or target_spec is None:
        return []
    changes: list[Change] = []
    if target_spec.id != current_spec.id:
        changes.append(
            Change(
                kind="node_selector",
                key=GPU_PRODUCT_LABEL,
                before=current_spec.product_label,
                after=target_spec.product_label,
            )
        )
    if rec.target_gpu_count != current_n:
        changes.append(
            Change(kind="gpu_limit", key=GPU_RESOURCE, before=current_n, after=rec.target_gpu_count)
        )
        changes.append(
            Change(
                kind="vllm_arg",
                key=TENSOR_PARALLEL_ARG,
                before=current_n,
                after=rec.target_gpu_count,
            )
        )
    return changes


def _replica_changes(finding: Finding) -> list[Change]:
    rec = finding.recommendation
    before = _int(rec.params.get("current_replicas", _fact(finding, "k8s.replicas")))
    if rec.action == "add_replica":
        added = _int(rec.params.get("add_replicas")) or 1
        before = _int(_fact(finding, "k8s.replicas"))
        after = before + added if before is not None else None
    else:
        after = rec.replicas
    if before is None or after is None or before == after:
        return []
    return [Change(kind="replicas", before=before, after=after)]


def _kv_changes(finding: Finding) -> list[Change]:
    rec = finding.recommendation
    if rec.action == "fp8_kv_cache":
        before = _fact(finding, "vllm.kvCacheDtype") or "auto"
        after = rec.params.get("kv_cache_dtype", "fp8")
        return [Change(kind="vllm_arg", key=KV_CACHE_DTYPE_ARG, before=before, after=after)]
    if rec.action == "reduce_max_model_len":
        return [
            Change(
                kind="vllm_arg",
                key=MAX_MODEL_LEN_ARG,
                before=rec.params.get("current_max_model_len"),
                after=rec.params.get("max_model_len"),
            )
        ]
    return _replica_changes(finding)


def _fleet_targets(finding: Finding) -> list[Target]:
    per_workload: dict[str, Any] = finding.recommendation.params.get("per_workload", {})
    targets = []
    for resource, after in sorted(per_workload.items()):
        cluster, _, workload_id = resource.partition("|")
        place = _split_deployment(workload_id)
        before = _int(_fact(finding, f"{resource}|k8s.replicas"))
        if place is None or before is None or before == after:
            continue
        targets.append(
            Target(
                cluster=cluster,
                namespace=place[0],
                deployment=place[1],
                changes=[Change(kind="replicas", before=before, after=int(after))],
            )
        )
    return targets


# Rules whose change is a patch to Deployments; every other rule gets a runbook.
def plan_for(finding: Finding, catalog: Catalog | None = None) -> ActionPlan:
    """The plan that carries out a finding's recommendation."""
    catalog = catalog or default_catalog()
    rule = finding.rule
    targets: list[Target] = []
    if rule in ("tier_misplacement", "oom_risk"):
        targets = _target(finding, _move_changes(finding, catalog))
    elif rule == "idle_allocation":
        targets = _target(finding, _replica_changes(finding))
    elif rule == "kv_cache_pressure":
        targets = _target(finding, _kv_changes(finding))
    elif rule == "fleet_rebalance":
        targets = _fleet_targets(finding)
    if targets:
        return ActionPlan(rule=rule, mode="patch", targets=targets)
    return ActionPlan(
        rule=rule,
        mode="runbook",
        runbook=rule,
        params=finding.recommendation.model_dump(mode="json", exclude_none=True),
    )
