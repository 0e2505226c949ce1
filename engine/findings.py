"""What the rules produce: findings priced in USD per month, and gaps in the facts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from engine.facts import Confidence
from engine.units import cents

Level = Literal["model", "node", "fleet"]
Kind = Literal["savings", "risk"]
LEVEL_ORDER: dict[str, int] = {"model": 0, "node": 1, "fleet": 2}


def workload_resource(cluster: str, workload_id: str) -> str:
    """The claim key for spend on one workload (a Deployment's GPUs or a node's GPUs)."""
    return f"{cluster}|{workload_id}"


class Claim(BaseModel):
    """The spend a finding's dollars come from: no dollar is counted twice in a total."""

    resource: str
    usd: float = Field(ge=0)

    @field_validator("usd")
    @classmethod
    def _cents(cls, value: float) -> float:
        return cents(value)


class Recommendation(BaseModel):
    """The change a finding proposes."""

    action: str
    target_gpu: str | None = None
    target_gpu_count: int | None = None
    replicas: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class Finding(BaseModel):
    """One priced observation about a workload, node or the fleet."""

    rule: str
    level: Level
    cluster: str | None
    subject: str
    monthly_usd: float = Field(ge=0)
    kind: Kind
    confidence: Confidence
    evidence: dict[str, Any]
    recommendation: Recommendation
    claims: list[Claim] = Field(default_factory=list)

    @field_validator("monthly_usd")
    @classmethod
    def _cents(cls, value: float) -> float:
        return cents(value)

    @property
    def fingerprint(self) -> str:
        """Identity across evaluations: rule, cluster and subject."""
        return f"{self.rule}|{self.cluster or '*'}|{self.subject}"

    def sort_key(self) -> tuple[int, str, str, str]:
        """Output order: level, cluster, subject, rule."""
        return (LEVEL_ORDER[self.level], self.cluster or "", self.subject, self.rule)


class Gap(BaseModel):
    """A rule could not decide for a subject: these facts are missing or unreadable."""

    cluster: str | None
    subject: str
    rule: str
    missing: list[str]

    def sort_key(self) -> tuple[str, str, str]:
        """Output order: cluster, subject, rule."""
        return (self.cluster or "", self.subject, self.rule)


def savings_total(findings: Iterable[Finding]) -> float:
    """Monthly savings with every dollar counted once: per resource, the largest claim wins."""
    best: dict[str, float] = {}
    for finding in findings:
        if finding.kind != "savings":
            continue
        claims = finding.claims or [Claim(resource=finding.fingerprint, usd=finding.monthly_usd)]
        for claim in claims:
            if claim.usd > best.get(claim.resource, 0.0):
                best[claim.resource] = claim.usd
    return cents(sum(best.values()))


class Evaluation(BaseModel):
    """The engine's answer for a fleet: findings and the gaps that kept rules from deciding."""

    findings: list[Finding] = Field(default_factory=list)
    gaps: list[Gap] = Field(default_factory=list)

    def savings_total_usd(self) -> float:
        """Monthly savings across findings, never counting a dollar twice."""
        return savings_total(self.findings)
