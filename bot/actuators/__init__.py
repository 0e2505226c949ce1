"""Actuators carry out an approved plan: dry-run (default), webhook, or Kubernetes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.plans import ActionPlan, Change, Target


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one cluster's API server; secrets are paths, read at use time."""

    name: str
    api_url: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    kubeconfig: str | None = None


@dataclass(frozen=True)
class ActuationRequest:
    """One plan to carry out for one finding."""

    finding: str  # the public id, e.g. F-12
    kind: str  # apply or revert
    idempotency_key: str
    plan: ActionPlan
    clusters: dict[str, ClusterAccess] = field(default_factory=dict)


@dataclass
class ActuationResult:
    """What happened; `requests` describes what was (or would be) sent, without secrets."""

    ok: bool
    detail: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    conflict: bool = False

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form for the outbox row and the audit body."""
        return {
            "ok": self.ok,
            "detail": self.detail,
            "requests": self.requests,
            "conflict": self.conflict,
        }


class Actuator(Protocol):
    """Carries out a plan."""

    name: str

    async def apply(self, request: ActuationRequest) -> ActuationResult:
        """Carry out `request.plan`; never raises for a failure it can describe."""
        ...


def describe(target: Target) -> dict[str, Any]:
    """The target and its changes as plain data (what dry-run records)."""
    return {
        "cluster": target.cluster,
        "namespace": target.namespace,
        "deployment": target.deployment,
        "changes": [_change(change) for change in target.changes],
    }


def _change(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, "key": change.key, "before": change.before, "after": change.after}


class DryRunActuator:
    """Records the plan and what would be sent; changes nothing."""

    name = "dry-run"

    async def apply(self, request: ActuationRequest) -> ActuationResult:
        """Describe each target's changes and report success."""
        sent = [{"would_patch": describe(target)} for target in request.plan.targets]
        return ActuationResult(ok=True, detail="dry run: nothing was changed", requests=sent)
