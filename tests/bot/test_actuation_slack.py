"""The dry-run path end to end through Slack: post, approve, actuate, report, revert."""

from __future__ import annotations

import json
import time

from bot.context import Context
from bot.ingest import parse_payload
from bot.pipeline import ingest_and_evaluate
from store.db import transaction
from store.findings import list_findings
from tests.bot.slackkit import (
    APPROVER,
    OUTSIDER,
    action_payload,
    audit_actions,
    finding,
    form,
    post,
)
from tests.bot.test_slack_actions import _wait_status
from tests.conftest import LiveServer
from tests.factories import SCENARIOS, register, scenario
from tests.fakes.slack_api import FakeSlackApi


def _click(server: LiveServer, fake: FakeSlackApi, action: str, finding_id: int, user: str) -> None:
    payload = action_payload(
        action, f"F-{finding_id}", user=user, response_url=fake.respond_url(user)
    )
    assert post(server, form(payload)).status_code == 200


def test_approve_in_slack_runs_the_dry_run_and_reports_it(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    register(slack_ctx, "prod-east")
    case = scenario(SCENARIOS / "v08-idle-replicas.json")
    ingest_and_evaluate(slack_ctx, "prod-east", parse_payload(case["clusters"][0]["ingest"]), "t")
    with transaction(slack_ctx.sessions) as session:
        [row] = list_findings(session)
    assert row.slack_ts is not None  # posted when it was found
    posted = fake_slack.calls("chat.postMessage")[0]
    assert "replicas 4 → 1" in json.dumps(posted.args["blocks"], ensure_ascii=False)

    _click(slack_server, fake_slack, "finding_approve", row.id, APPROVER)
    _wait_status(slack_ctx, row.id, "actuated")
    thread = [
        call
        for call in fake_slack.wait_for("chat.postMessage", 3)
        if call.args.get("thread_ts") == row.slack_ts and "carried out" in call.args["text"]
    ]
    assert len(thread) == 1 and "dry run" in thread[0].args["text"]
    updates = fake_slack.wait_for("chat.update", 2)
    assert any("carried out" in json.dumps(u.args["blocks"]) for u in updates)
    assert any("finding_revert" in json.dumps(u.args["blocks"]) for u in updates)

    _click(slack_server, fake_slack, "finding_revert", row.id, OUTSIDER)
    [refusal] = fake_slack.wait_for("respond")
    assert "not allowed" in refusal.args["text"]
    _click(slack_server, fake_slack, "finding_revert", row.id, APPROVER)
    deadline = time.monotonic() + 10
    while finding(slack_ctx, row.id).outcome != "reverted" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert finding(slack_ctx, row.id).outcome == "reverted"
    actions = audit_actions(slack_ctx, f"finding:F-{row.id}")
    assert actions.count("actuation.succeeded") == 2
    assert "decision.refused" in actions and "finding.revert_approved" in actions
