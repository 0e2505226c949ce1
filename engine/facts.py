"""The fact model: piqc-compatible facts, workloads, snapshots and the ingest wire format."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

Confidence = Literal["high", "medium", "low"]
WorkloadKind = Literal["deployment", "node", "pod", "other"]

SCHEMA_PREFIX = "piqc-scan."
MAX_WORKLOAD_ID = 512
_KINDS: dict[str, WorkloadKind] = {"deployment": "deployment", "node": "node", "pod": "pod"}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class Fact(BaseModel):
    """One observed fact: a value with how much to trust it and where it came from."""

    # Unknown keys (piqc adds fields between releases) are kept, never rejected.
    model_config = ConfigDict(extra="allow")

    value: Any
    dataConfidence: Confidence = "medium"
    units: str | None = None
    observedAt: str | None = None
    source: Any = None
    stalenessSec: float | None = None


def as_number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str | None:
    """A non-empty stripped string, or None."""
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def as_flag(value: Any) -> bool | None:
    """A boolean from a bool or a yes/no-like string, or None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def as_ints(value: Any) -> list[int] | None:
    """A list of ints from a list, a single int or a cpulist string ("0-1,3"), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        out: list[int] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                return None
            out.append(item)
        return out
    if isinstance(value, str):
        return _parse_cpulist(value)
    return None


def _parse_cpulist(text: str) -> list[int] | None:
    # Linux cpulist syntax, which is how sysfs and `nvidia-smi topo` print NUMA sets.
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            return None
        start = int(low)
        end = int(high) if sep else start
        if end < start:
            return None
        out.extend(range(start, end + 1))
    return out or None


class FactReader:
    """Typed access to a workload's facts that records every fact it read."""

    __slots__ = ("_facts", "used")

    def __init__(self, facts: dict[str, Fact]) -> None:
        self._facts = facts
        self.used: dict[str, Fact] = {}

    def fact(self, key: str) -> Fact | None:
        """The fact under `key` (recorded as read when present)."""
        found = self._facts.get(key)
        if found is not None:
            self.used[key] = found
        return found

    def num(self, key: str) -> float | None:
        """The fact as a finite number, or None."""
        found = self.fact(key)
        return None if found is None else as_number(found.value)

    def text(self, key: str) -> str | None:
        """The fact as a non-empty string, or None."""
        found = self.fact(key)
        return None if found is None else as_text(found.value)

    def flag(self, key: str) -> bool | None:
        """The fact as a boolean, or None."""
        found = self.fact(key)
        return None if found is None else as_flag(found.value)

    def ints(self, key: str) -> list[int] | None:
        """The fact as a list of ints (NUMA node lists), or None."""
        found = self.fact(key)
        return None if found is None else as_ints(found.value)


class Workload(BaseModel):
    """One workload of a cluster: a served model, a GPU node or a pending pod."""

    model_config = ConfigDict(populate_by_name=True)

    workload_id: str = Field(alias="workloadId")
    facts: dict[str, Fact] = Field(default_factory=dict)
    _reader: FactReader | None = PrivateAttr(default=None)

    @cached_property
    def kind(self) -> WorkloadKind:
        """deployment, node, pod or other, from the workloadId `ns/<ns>/<kind>/<name>`."""
        parts = self.workload_id.split("/")
        if len(parts) == 4 and parts[0] == "ns" and parts[1] and parts[3]:
            return _KINDS.get(parts[2].lower(), "other")
        return "other"

    @cached_property
    def name(self) -> str:
        """The last segment of the workloadId."""
        return self.workload_id.rstrip("/").rsplit("/", 1)[-1]

    def reader(self) -> FactReader:
        """A fresh reader that records the facts one consumer reads."""
        return FactReader(self.facts)

    @property
    def reads(self) -> dict[str, Fact]:
        """The facts read so far through this workload's own accessors."""
        return {} if self._reader is None else dict(self._reader.used)

    def _own(self) -> FactReader:
        if self._reader is None:
            self._reader = FactReader(self.facts)
        return self._reader

    def num(self, key: str) -> float | None:
        """The fact as a finite number, or None."""
        return self._own().num(key)

    def text(self, key: str) -> str | None:
        """The fact as a non-empty string, or None."""
        return self._own().text(key)

    def flag(self, key: str) -> bool | None:
        """The fact as a boolean, or None."""
        return self._own().flag(key)

    def ints(self, key: str) -> list[int] | None:
        """The fact as a list of ints, or None."""
        return self._own().ints(key)


class ClusterSnapshot(BaseModel):
    """The latest facts of one registered cluster."""

    name: str
    provider: str = ""
    region: str = ""
    workloads: list[Workload] = Field(default_factory=list)


class FleetSnapshot(BaseModel):
    """Every cluster's latest facts: the engine's input."""

    clusters: list[ClusterSnapshot] = Field(default_factory=list)


def _check_schema(value: str) -> str:
    if not value.startswith(SCHEMA_PREFIX):
        raise ValueError(
            f"schemaVersion '{value}' is not supported; "
            f"expected a piqc schema such as '{SCHEMA_PREFIX}v0.1'"
        )
    return value


class IngestWorkload(BaseModel):
    """One workload of an ingest payload."""

    workloadId: str = Field(min_length=1, max_length=MAX_WORKLOAD_ID)
    facts: dict[str, Fact]


class IngestPayload(BaseModel):
    """The body of `POST /v1/ingest` (what `piqc scan --push-url` sends)."""

    model_config = ConfigDict(extra="allow")

    schemaVersion: str
    cluster_id: str = Field(min_length=1)
    workloads: list[IngestWorkload]

    @field_validator("schemaVersion")
    @classmethod
    def _piqc_schema(cls, value: str) -> str:
        return _check_schema(value)


class BundleObject(BaseModel):
    """One object of a piqc facts bundle."""

    model_config = ConfigDict(extra="allow")

    workloadId: str = Field(min_length=1, max_length=MAX_WORKLOAD_ID)
    facts: dict[str, Fact]
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class FactsBundle(BaseModel):
    """A piqc facts bundle (`piqc scan --output-piqc`)."""

    model_config = ConfigDict(extra="allow")

    schemaVersion: str
    objects: list[BundleObject]
    factErrors: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("schemaVersion")
    @classmethod
    def _piqc_schema(cls, value: str) -> str:
        return _check_schema(value)


def bundle_to_payload(bundle: FactsBundle, cluster_id: str) -> IngestPayload:
    """The ingest payload piqc would push for `bundle` (its objects renamed workloads)."""
    return IngestPayload(
        schemaVersion=bundle.schemaVersion,
        cluster_id=cluster_id,
        workloads=[
            IngestWorkload(workloadId=obj.workloadId, facts=obj.facts) for obj in bundle.objects
        ],
    )


def payload_to_cluster(
    payload: IngestPayload, *, name: str | None = None, provider: str = "", region: str = ""
) -> ClusterSnapshot:
    """A cluster snapshot holding a payload's workloads."""
    return ClusterSnapshot(
        name=name or payload.cluster_id,
        provider=provider,
        region=region,
        workloads=[Workload(workload_id=w.workloadId, facts=w.facts) for w in payload.workloads],
    )
