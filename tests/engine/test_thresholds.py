"""Thresholds: one configurable place, named in the evidence of what fired."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.rules import RULE_IDS, RULES
from engine.thresholds import Thresholds
from tests.engine.enginekit import found, run, served


def test_defaults_match_the_spec() -> None:
    t = Thresholds()
    assert (t.idle_util_pct, t.idle_target_util_pct) == (10, 50)
    assert (t.batch_util_min_pct, t.batch_util_max_pct, t.cpu_saturation_pct) == (10, 50, 85)
    assert (t.gpu_low_util_pct, t.kv_pressure_pct) == (50, 90)
    assert (t.fleet_util_pct, t.fleet_target_util_pct, t.pending_minutes) == (30, 50, 30)
    assert (t.numa_spend_fraction, t.colocation_spend_fraction) == (0.10, 0.10)


def test_overrides_are_validated() -> None:
    assert Thresholds.model_validate({"idle_util_pct": 20}).idle_util_pct == 20
    with pytest.raises(ValidationError):
        Thresholds.model_validate({"idle_util_pct": 120})
    with pytest.raises(ValidationError):
        Thresholds.model_validate({"idle_utilisation": 20})


def test_override_changes_what_fires() -> None:
    values = {"obs.gpu.utilAvgPct": 15, "k8s.replicas": 4}
    assert not found(run(served(changes=values)), "idle_allocation")
    [finding] = found(
        run(served(changes=values), thresholds={"idle_util_pct": 20}), "idle_allocation"
    )
    assert finding.evidence["threshold"]["idle_util_pct"] == 20


def test_rule_table_lists_twelve_rules_with_known_thresholds() -> None:
    assert len(RULES) == 12 == len(set(RULE_IDS))
    known = set(Thresholds.model_fields) | {"min_savings_fraction", "reserve_gb_per_gpu"}
    for spec in RULES:
        assert set(spec.thresholds) <= known, spec.id
