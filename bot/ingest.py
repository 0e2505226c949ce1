"""Taking in facts: the piqc-compatible ingest payload, validated and stored atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bot.context import Context
from engine.facts import FactsBundle, IngestPayload, bundle_to_payload
from store import registry
from store.db import transaction, utcnow
from store.facts import store_facts

MAX_ERRORS_SHOWN = 5


class IngestError(ValueError):
    """A payload that cannot be accepted; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ParsedPayload:
    """A validated payload and the raw fact dicts to store (unknown keys included)."""

    cluster_id: str
    workloads: list[tuple[str, dict[str, Any]]]


def describe_validation_error(error: ValidationError) -> str:
    """A readable one-paragraph account of what is wrong with a payload."""
    parts = []
    for item in error.errors()[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - MAX_ERRORS_SHOWN
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def decode_json(raw: bytes) -> Any:
    """Parse a JSON body; IngestError(422) with the reason when it is not JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise IngestError(422, f"body is not valid UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise IngestError(
            422, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def parse_payload(document: Any, *, cluster: str | None = None) -> ParsedPayload:
    """Validate an ingest payload (`workloads`) or a piqc facts bundle (`objects`).

    A bundle carries no cluster id, so `cluster` must be given for one.
    """
    if not isinstance(document, dict):
        raise IngestError(422, "body must be a JSON object with 'schemaVersion' and 'workloads'")
    try:
        if "workloads" not in document and "objects" in document:
            if cluster is None:
                raise IngestError(422, "a piqc facts bundle needs a cluster name")
            payload = bundle_to_payload(FactsBundle.model_validate(document), cluster)
            raw_workloads = document["objects"]
        else:
            payload = IngestPayload.model_validate(document)
            raw_workloads = document["workloads"]
    except ValidationError as exc:
        raise IngestError(
            422, f"not a piqc ingest payload: {describe_validation_error(exc)}"
        ) from exc
    seen: set[str] = set()
    for workload in payload.workloads:
        if workload.workloadId in seen:
            raise IngestError(422, f"workloadId '{workload.workloadId}' appears more than once")
        seen.add(workload.workloadId)
    # Store the facts exactly as sent: keys Steward does not know are kept.
    workloads = [(item["workloadId"], item["facts"]) for item in raw_workloads]
    return ParsedPayload(cluster_id=payload.cluster_id, workloads=workloads)


def store_payload(ctx: Context, cluster_name: str, parsed: ParsedPayload, source: str) -> None:
    """Store a validated payload's facts for `cluster_name` in one transaction."""
    with transaction(ctx.sessions) as session:
        cluster = registry.get_cluster(session, cluster_name, for_update=True)
        store_facts(
            session,
            cluster,
            parsed.workloads,
            source=source,
            now=utcnow(),
            history_limit=ctx.settings.fact_history_limit,
        )
