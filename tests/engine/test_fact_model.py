"""The fact model and piqc wire formats: what is accepted, kept and read."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from engine.facts import (
    Fact,
    FactsBundle,
    IngestPayload,
    Workload,
    bundle_to_payload,
    payload_to_cluster,
)
from tests.factories import PIQC_BUNDLE

BUNDLE = PIQC_BUNDLE


def payload(**facts: object) -> dict[str, object]:
    return {
        "schemaVersion": "piqc-scan.v0.1",
        "cluster_id": "prod",
        "workloads": [{"workloadId": "ns/a/deployment/b", "facts": facts}],
    }


def test_payload_keeps_unknown_fact_fields_and_keys() -> None:
    body = payload(**{"vendor.custom": {"value": [1, 2], "dataConfidence": "low", "extra": "x"}})
    parsed = IngestPayload.model_validate({**body, "generatedAt": "now"})
    fact = parsed.workloads[0].facts["vendor.custom"]
    assert fact.value == [1, 2]
    assert fact.model_dump(exclude_none=True)["extra"] == "x"
    assert parsed.model_extra == {"generatedAt": "now"}


def test_unwrapped_fact_value_is_rejected() -> None:
    with pytest.raises(ValidationError, match="valid dictionary"):
        IngestPayload.model_validate(payload(**{"k8s.replicas": 5}))


def test_fact_without_value_is_rejected() -> None:
    with pytest.raises(ValidationError):
        IngestPayload.model_validate(payload(**{"k8s.replicas": {"dataConfidence": "high"}}))


def test_unknown_confidence_is_rejected() -> None:
    with pytest.raises(ValidationError):
        IngestPayload.model_validate(
            payload(**{"k8s.replicas": {"value": 1, "dataConfidence": "certain"}})
        )


def test_confidence_defaults_to_medium() -> None:
    assert Fact(value=1).dataConfidence == "medium"


def test_schema_version_must_be_piqc_scan() -> None:
    with pytest.raises(ValidationError, match=r"piqc-scan\.v0\.1"):
        IngestPayload.model_validate({**payload(), "schemaVersion": "other.v1"})


@pytest.mark.parametrize("workload_id", ["", "x" * 513])
def test_workload_id_must_be_non_empty_and_bounded(workload_id: str) -> None:
    body = payload()
    body["workloads"] = [{"workloadId": workload_id, "facts": {}}]
    with pytest.raises(ValidationError):
        IngestPayload.model_validate(body)


def test_real_piqc_bundle_parses_and_keeps_every_fact() -> None:
    raw = json.loads(BUNDLE.read_text())
    bundle = FactsBundle.model_validate(raw)
    assert len(bundle.factErrors) == 3
    converted = bundle_to_payload(bundle, "gke")
    assert converted.cluster_id == "gke"
    [obj] = raw["objects"]
    [workload] = converted.workloads
    assert workload.workloadId == obj["workloadId"]
    assert set(workload.facts) == set(obj["facts"])
    for key, fact in obj["facts"].items():
        assert workload.facts[key].model_dump(exclude_none=True) == fact
    assert bundle.objects[0].model_extra == {"images": obj["images"]}


@pytest.mark.parametrize(
    ("workload_id", "kind", "name"),
    [
        ("ns/chat/deployment/mistral-7b", "deployment", "mistral-7b"),
        ("ns/gpu-pool/node/h100-node-07", "node", "h100-node-07"),
        ("ns/training/pod/finetune-job-0", "pod", "finetune-job-0"),
        ("ns/chat/statefulset/x", "other", "x"),
        ("something", "other", "something"),
    ],
)
def test_workload_kind_and_name_come_from_the_id(workload_id: str, kind: str, name: str) -> None:
    workload = Workload(workload_id=workload_id)
    assert (workload.kind, workload.name) == (kind, name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5.0),
        (2.5, 2.5),
        ("3.5", 3.5),
        (True, None),
        ("x", None),
        (math.nan, None),
        (math.inf, None),
        (None, None),
    ],
)
def test_num_accepts_numbers_and_numeric_strings_only(
    value: object, expected: float | None
) -> None:
    workload = Workload(workload_id="w", facts={"k": Fact(value=value)})
    assert workload.num("k") == expected


def test_accessors_record_what_was_read() -> None:
    workload = Workload(
        workloadId="w",
        facts={"a": Fact(value="batch"), "b": Fact(value=True), "c": Fact(value="0-1,3")},
    )
    assert workload.text("a") == "batch"
    assert workload.flag("b") is True
    assert workload.ints("c") == [0, 1, 3]
    assert workload.num("missing") is None
    assert set(workload.reads) == {"a", "b", "c"}
    reader = workload.reader()
    reader.num("a")
    assert set(reader.used) == {"a"}


@pytest.mark.parametrize(
    ("value", "expected"), [([0, 1], [0, 1]), (1, [1]), ("0", [0]), ([True], None), ("a", None)]
)
def test_ints_reads_numa_node_lists(value: object, expected: list[int] | None) -> None:
    assert Workload(workload_id="w", facts={"k": Fact(value=value)}).ints("k") == expected


def test_payload_becomes_a_cluster_snapshot() -> None:
    parsed = IngestPayload.model_validate(payload(**{"k8s.replicas": {"value": 1}}))
    snapshot = payload_to_cluster(parsed, region="us-east-1")
    assert snapshot.name == "prod"
    assert snapshot.workloads[0].num("k8s.replicas") == 1
