"""Steward's pure engine: facts in, priced findings out (no I/O)."""

from engine.capacity import (
    DEFAULT_CONSTANTS,
    CapacityConstants,
    FitCheck,
    ModelProfile,
    build_profile,
    cheapest_fit,
    fits,
)
from engine.catalog import Catalog, GpuSpec, ModelSpec, default_catalog, normalise_gpu
from engine.evaluate import evaluate
from engine.facts import (
    BundleObject,
    ClusterSnapshot,
    Fact,
    FactsBundle,
    FleetSnapshot,
    IngestPayload,
    IngestWorkload,
    Workload,
    bundle_to_payload,
    payload_to_cluster,
)
from engine.findings import Claim, Evaluation, Finding, Gap, Recommendation, savings_total
from engine.prices import PriceBook, default_price_book
from engine.rules import RULE_IDS, RULES, RuleSpec
from engine.thresholds import DEFAULT_THRESHOLDS, Thresholds
from engine.units import GB, HOURS_PER_MONTH

__all__ = [
    "DEFAULT_CONSTANTS",
    "DEFAULT_THRESHOLDS",
    "GB",
    "HOURS_PER_MONTH",
    "RULES",
    "RULE_IDS",
    "BundleObject",
    "CapacityConstants",
    "Catalog",
    "Claim",
    "ClusterSnapshot",
    "Evaluation",
    "Fact",
    "FactsBundle",
    "Finding",
    "FitCheck",
    "FleetSnapshot",
    "Gap",
    "GpuSpec",
    "IngestPayload",
    "IngestWorkload",
    "ModelProfile",
    "ModelSpec",
    "PriceBook",
    "Recommendation",
    "RuleSpec",
    "Thresholds",
    "Workload",
    "build_profile",
    "bundle_to_payload",
    "cheapest_fit",
    "default_catalog",
    "default_price_book",
    "evaluate",
    "fits",
    "normalise_gpu",
    "payload_to_cluster",
    "savings_total",
]
