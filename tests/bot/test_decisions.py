"""The decision path: authorisation, one winner, the audit record, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from bot.context import Context
from bot.decisions import decide_finding, may_decide
from store.audit import verify
from store.db import transaction, utcnow
from store.decisions import DecisionRequest, Verdict
from tests.bot.slackkit import (
    APPROVER,
    APPROVER_2,
    OUTSIDER,
    TEAM,
    audit_actions,
    audit_bodies,
    finding,
    make_finding,
)

ORIGIN = {"slack_user": APPROVER, "team": TEAM, "channel": "C1", "message_ts": "1.2"}


def test_an_approver_approves_once_with_an_audit_record(slack_ctx: Context) -> None:
    finding_id = make_finding(slack_ctx)
    request = DecisionRequest(finding_id, "approve", actor=APPROVER, origin=ORIGIN)
    decision = decide_finding(slack_ctx, request, check_approver=True)
    assert decision.won and decision.audit_seq is not None
    row = finding(slack_ctx, finding_id)
    assert (row.status, row.decided_by, row.decided_usd) == ("approved", APPROVER, row.monthly_usd)
    assert row.audit_seq == decision.audit_seq
    [body] = audit_bodies(slack_ctx, "finding.approved")
    assert body["finding"] == f"F-{finding_id}"
    assert body["monthly_usd"] == "3200.32" and body["decided_usd"] == "3200.32"
    assert (body["slack_user"], body["team"], body["channel"], body["message_ts"]) == (
        APPROVER, TEAM, "C1", "1.2",
    )  # fmt: skip
    assert body["recommendation"]["target_gpu_count"] == "1"  # numbers as strings
    with transaction(slack_ctx.sessions) as session:
        assert verify(session).ok


def test_a_second_decision_loses_and_learns_who_won(slack_ctx: Context) -> None:
    finding_id = make_finding(slack_ctx)
    first = DecisionRequest(finding_id, "approve", actor=APPROVER)
    second = DecisionRequest(finding_id, "dismiss", actor=APPROVER_2, reason="wrong")
    assert decide_finding(slack_ctx, first, check_approver=True).won
    late = decide_finding(slack_ctx, second, check_approver=True)
    assert late.status == "already_decided"
    assert late.finding is not None and late.finding.decided_by == APPROVER
    assert audit_actions(slack_ctx, f"finding:F-{finding_id}") == ["finding.approved"]


def test_a_non_approver_is_refused_and_audited(slack_ctx: Context) -> None:
    finding_id = make_finding(slack_ctx)
    request = DecisionRequest(finding_id, "approve", actor=OUTSIDER, origin=ORIGIN)
    decision = decide_finding(slack_ctx, request, check_approver=True)
    assert decision.status == "refused"
    assert finding(slack_ctx, finding_id).status == "open"
    [body] = audit_bodies(slack_ctx, "decision.refused")
    assert body["verdict"] == "approve" and body["why"] == "not an approver"


def test_a_missing_finding_is_reported(slack_ctx: Context) -> None:
    request = DecisionRequest(999, "approve", actor=APPROVER)
    assert decide_finding(slack_ctx, request, check_approver=True).status == "not_found"
    assert decide_finding(slack_ctx, request, check_approver=False).status == "not_found"


def test_dismiss_and_snooze_keep_reason_and_date(slack_ctx: Context) -> None:
    dismissed, snoozed = make_finding(slack_ctx), make_finding(slack_ctx)
    until = utcnow() + timedelta(days=7)
    decide_finding(
        slack_ctx,
        DecisionRequest(dismissed, "dismiss", actor="cli:ops", reason="planned"),
        check_approver=False,
    )
    decide_finding(
        slack_ctx,
        DecisionRequest(snoozed, "snooze", actor=APPROVER, reason="wrong", snooze_until=until),
        check_approver=True,
    )
    row = finding(slack_ctx, dismissed)
    assert (row.status, row.decision_reason, row.snoozed_until) == ("dismissed", "planned", None)
    row = finding(slack_ctx, snoozed)
    assert row.status == "snoozed" and row.snoozed_until is not None
    assert abs((row.snoozed_until - until).total_seconds()) < 1
    assert [b["reason"] for b in audit_bodies(slack_ctx, "finding.snoozed")] == ["wrong"]


def test_cluster_approvers_decide_only_their_cluster(slack_ctx: Context) -> None:
    east = {"cluster_approvers": {"prod-east": ["U0EAST"]}}
    settings = slack_ctx.settings.model_copy(update=east)
    assert may_decide(settings, "U0EAST", "prod-east")
    assert not may_decide(settings, "U0EAST", "prod-west")
    assert not may_decide(settings, "U0EAST", None)
    assert may_decide(settings, APPROVER, "prod-west")


@pytest.mark.parametrize("clickers", [2, 8, 32])
def test_concurrent_clicks_make_exactly_one_decision(slack_ctx: Context, clickers: int) -> None:
    """100 rounds: `clickers` threads approve or dismiss the same finding at once."""
    rounds = 100
    rng = random.Random(clickers)
    actors = [APPROVER, APPROVER_2]
    with ThreadPoolExecutor(max_workers=clickers) as pool:
        for _ in range(rounds):
            finding_id = make_finding(slack_ctx)
            barrier = threading.Barrier(clickers)
            verdicts: list[Verdict] = [rng.choice(["approve", "dismiss"]) for _ in range(clickers)]

            def click(
                index: int,
                finding_id: int = finding_id,
                verdicts: list[Verdict] = verdicts,
                barrier: threading.Barrier = barrier,
            ) -> str:
                request = DecisionRequest(
                    finding_id, verdicts[index], actor=actors[index % 2], reason="wrong"
                )
                barrier.wait()
                return decide_finding(slack_ctx, request, check_approver=True).status

            outcomes = list(pool.map(click, range(clickers)))
            assert outcomes.count("decided") == 1, outcomes
            assert outcomes.count("already_decided") == clickers - 1
            decided = [
                action
                for action in audit_actions(slack_ctx, f"finding:F-{finding_id}")
                if action in ("finding.approved", "finding.dismissed")
            ]
            assert len(decided) == 1
            assert finding(slack_ctx, finding_id).status in ("approved", "dismissed")
    with transaction(slack_ctx.sessions) as session:
        assert verify(session).ok
