"""Block Kit builders: golden messages, and Slack's limits for every scenario's findings.

Regenerate the golden files after an intended change with
`STEWARD_UPDATE_GOLDEN=1 pytest tests/bot/test_slack_blocks.py`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.blocks import (
    MAX_SECTION_TEXT,
    Message,
    check_limits,
    dismiss_modal,
    evidence_message,
    finding_message,
    sections,
)
from bot.wording import summary
from engine.evaluate import evaluate
from engine.findings import Finding
from engine.plans import plan_for
from engine.prices import PriceBook
from store.findings import FindingRow
from tests.engine.test_scenarios_pure import fleet_of
from tests.factories import SCENARIOS, scenario

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("STEWARD_UPDATE_GOLDEN") == "1"
AT = datetime(2025, 6, 2, 14, 2, tzinfo=UTC)


def row_of(finding: Finding, finding_id: int = 12, **state: Any) -> FindingRow:
    """A stored finding built in memory from an engine finding."""
    row = FindingRow(
        id=finding_id,
        fingerprint=finding.fingerprint,
        rule=finding.rule,
        level=finding.level,
        cluster=finding.cluster,
        subject=finding.subject,
        monthly_usd=Decimal(str(finding.monthly_usd)).quantize(Decimal("0.01")),
        kind=finding.kind,
        confidence=finding.confidence,
        status="open",
        summary=summary(finding),
        evidence=finding.evidence,
        recommendation=finding.recommendation.model_dump(mode="json", exclude_none=True),
        claims=[c.model_dump(mode="json") for c in finding.claims],
        first_seen=AT,
        last_seen=AT,
        updated_at=AT,
        resolved_at=None,
        decided_by=None,
        decided_at=None,
        decision_reason=None,
        snoozed_until=None,
        audit_seq=None,
        plan=plan_for(finding).model_dump(mode="json"),
        actuated_at=None,
        outcome=None,
        outcome_at=None,
        realised_usd=None,
    )
    for key, value in state.items():
        setattr(row, key, value)
    return row


def scenario_findings(path: Path) -> list[Finding]:
    case = scenario(path)
    return evaluate(fleet_of(case), PriceBook.from_mapping(case["price_book"])).findings


def seed_finding() -> Finding:
    [found] = [
        f
        for f in scenario_findings(SCENARIOS / "v01-seed-7b-on-h100.json")
        if f.rule == "tier_misplacement"
    ]
    return found


def check_golden(name: str, value: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), (
        f"{path.name} differs; if the change is intended, rerun with STEWARD_UPDATE_GOLDEN=1"
    )


def as_json(message: Message) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks}


STATES: dict[str, dict[str, Any]] = {
    "open": {},
    "approved": {
        "status": "approved",
        "decided_by": "U0ALICE",
        "decided_at": AT,
        "audit_seq": 1234,
    },
    "dismissed": {
        "status": "dismissed",
        "decided_by": "cli:ops",
        "decided_at": AT,
        "decision_reason": "planned",
        "audit_seq": 1235,
    },
    "snoozed": {
        "status": "snoozed",
        "decided_by": "U0BOB",
        "decided_at": AT,
        "snoozed_until": datetime(2025, 6, 16, 14, 2, tzinfo=UTC),
        "decision_reason": "wrong",
        "audit_seq": 1236,
    },
    "resolved": {"status": "resolved", "resolved_at": AT},
    "actuated": {
        "status": "actuated",
        "decided_by": "U0ALICE",
        "decided_at": AT,
        "actuated_at": AT,
        "outcome": "verified",
        "outcome_at": AT,
        "realised_usd": Decimal("3200.32"),
        "audit_seq": 1240,
    },
    "stale": {"status": "stale", "decided_by": "U0ALICE", "decided_at": AT, "audit_seq": 1241},
}


@pytest.mark.parametrize("state", list(STATES))
def test_finding_message_golden(state: str) -> None:
    message = finding_message(row_of(seed_finding(), **STATES[state]))
    check_golden(f"finding_{state}", as_json(message))
    assert check_limits(message) == []


def test_the_seed_message_says_the_change_in_words() -> None:
    message = finding_message(row_of(seed_finding()))
    assert message.text.startswith("F-12: Model on a bigger GPU than it needs, $3,200/month")
    change = message.blocks[3]["text"]["text"]
    assert change == (
        "*Proposed change:* nodeSelector `nvidia.com/gpu.product`: NVIDIA-H100-80GB-HBM3 → "
        "NVIDIA-A10G, 1 GPU per replica, saves $3,200/month"
    )
    assert len(message.blocks) <= 6  # about ten lines on screen


def test_evidence_and_dismiss_form_golden() -> None:
    row = row_of(seed_finding())
    check_golden("evidence", as_json(evidence_message(row)))
    check_golden("dismiss_modal", dismiss_modal(row, '{"finding_id": 12}'))


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.json")), ids=lambda p: p.stem)
def test_every_scenario_finding_fits_slack(path: Path) -> None:
    for index, finding in enumerate(scenario_findings(path), start=1):
        for state in STATES.values():
            row = row_of(finding, index, **state)
            for message in (finding_message(row), evidence_message(row)):
                assert message.text.strip()
                assert check_limits(message) == [], (finding.rule, state)
        view = dismiss_modal(row_of(finding, index), "{}")
        assert check_limits(view) == []


def test_the_limits_checker_catches_each_limit() -> None:
    huge = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    button = {
        "type": "button",
        "action_id": "a",
        "text": {"type": "plain_text", "text": "ok"},
        "value": "v" * 2001,
    }
    problems = check_limits(
        Message(
            "", [huge] + [{"type": "divider"}] * 50 + [{"type": "actions", "elements": [button]}]
        )
    )
    joined = " ".join(problems)
    assert "no fallback text" in joined and "52 blocks" in joined
    assert "text > 3000" in joined and "button value > 2000" in joined


def test_long_text_is_split_into_sections_within_the_limit() -> None:
    text = "\n".join(f"line {i} " + "y" * 90 for i in range(200)) + "\n" + "z" * 7000
    blocks = sections(text)
    assert len(blocks) <= 40
    assert all(len(b["text"]["text"]) <= MAX_SECTION_TEXT for b in blocks)
    assert blocks[0]["text"]["text"].startswith("line 0 ")


def test_an_actuated_change_offers_revert_and_shows_its_outcome() -> None:
    message = finding_message(row_of(seed_finding(), **STATES["actuated"]))
    text = json.dumps(message.blocks)
    assert "finding_revert" in text and "finding_approve" not in text
    assert "verified in the facts" in text and "$3,200/month" in text
    reverted = finding_message(
        row_of(seed_finding(), **{**STATES["actuated"], "outcome": "reverted"})
    )
    assert "finding_revert" not in json.dumps(reverted.blocks)


def test_the_plan_is_shown_as_a_diff_before_approval() -> None:
    text = json.dumps(finding_message(row_of(seed_finding())).blocks)
    assert "nodeSelector nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3 \\u2192 NVIDIA-A10G" in text
