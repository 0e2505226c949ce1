"""Buttons and the Dismiss form over real HTTP: who may decide, what changes, what Slack is told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.context import Context
from bot.ingest import parse_payload
from bot.pipeline import ingest_and_evaluate
from store.db import transaction
from store.findings import FindingRow, list_findings
from tests.bot.slackkit import (
    APPROVER,
    APPROVER_2,
    CHANNEL,
    OUTSIDER,
    TEAM,
    action_payload,
    audit_actions,
    audit_bodies,
    finding,
    form,
    make_finding,
    post,
)
from tests.conftest import LiveServer
from tests.factories import SCENARIOS, register, scenario
from tests.fakes.slack_api import FakeSlackApi


def _posted(ctx: Context, **overrides: Any) -> int:
    """A finding whose message lives in the findings channel."""
    return make_finding(ctx, slack_channel=CHANNEL, slack_ts="1700000000.000001", **overrides)


def _click(
    server: LiveServer, fake: FakeSlackApi, action: str, finding_id: int, user: str = APPROVER
) -> None:
    payload = action_payload(
        action, f"F-{finding_id}", user=user, response_url=fake.respond_url(user)
    )
    reply = post(server, form(payload))
    assert reply.status_code == 200, reply.text


def _wait_status(ctx: Context, finding_id: int, status: str, timeout: float = 10) -> FindingRow:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = finding(ctx, finding_id)
        if row.status == status:
            return row
        time.sleep(0.02)
    raise AssertionError(f"F-{finding_id} is {finding(ctx, finding_id).status}, not {status}")


def test_an_approver_approves_and_the_message_shows_who(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = _posted(slack_ctx)
    _click(slack_server, fake_slack, "finding_approve", finding_id)
    row = _wait_status(slack_ctx, finding_id, "approved")
    assert row.decided_by == APPROVER
    [update] = fake_slack.wait_for("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (CHANNEL, "1700000000.000001")
    blocks = json.dumps(update.args["blocks"])
    assert "finding_approve" not in blocks  # buttons gone
    assert f"Approved by <@{APPROVER}>" in blocks and f"audit #{row.audit_seq}" in blocks
    [body] = audit_bodies(slack_ctx, "finding.approved")
    assert (body["slack_user"], body["team"], body["channel"]) == (APPROVER, TEAM, CHANNEL)
    assert body["message_ts"] == "1700000000.000001"

    _click(slack_server, fake_slack, "finding_approve", finding_id, user=APPROVER_2)
    [late] = fake_slack.wait_for("respond")
    assert f"already approved by <@{APPROVER}>" in late.args["text"]
    assert late.args["response_type"] == "ephemeral"
    assert audit_actions(slack_ctx, f"finding:F-{finding_id}") == ["finding.approved"]


def test_a_non_approver_is_refused_ephemerally_and_audited(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = _posted(slack_ctx)
    for action in ("finding_approve", "finding_dismiss"):
        _click(slack_server, fake_slack, action, finding_id, user=OUTSIDER)
    replies = fake_slack.wait_for("respond", 2)
    assert all("not allowed" in r.args["text"] for r in replies)
    assert all(r.args["response_type"] == "ephemeral" for r in replies)
    assert finding(slack_ctx, finding_id).status == "open"
    assert fake_slack.calls("views.open") == [] and fake_slack.calls("chat.update") == []
    refusals = audit_bodies(slack_ctx, "decision.refused")
    assert sorted(r["verdict"] for r in refusals) == ["approve", "dismiss"]
    assert {r["slack_user"] for r in refusals} == {OUTSIDER}


def _submit(
    server: LiveServer, view: dict[str, Any], reason: str, days: str | None, user: str = APPROVER
) -> int:
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0STEWARD",
        "trigger_id": f"view-{time.monotonic_ns()}",
        "view": {
            "id": "V0FAKE",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {
                "values": {
                    "reason": {
                        "reason": {"type": "static_select", "selected_option": {"value": reason}}
                    },
                    "snooze": {"days": {"type": "number_input", "value": days}},
                }
            },
        },
    }
    return post(server, form(payload)).status_code


@pytest.mark.parametrize(("days", "status"), [(None, "dismissed"), ("14", "snoozed")])
def test_dismiss_opens_the_form_and_its_answer_decides(
    slack_ctx: Context,
    slack_server: LiveServer,
    fake_slack: FakeSlackApi,
    days: str | None,
    status: str,
) -> None:
    finding_id = _posted(slack_ctx)
    _click(slack_server, fake_slack, "finding_dismiss", finding_id)
    [opened] = fake_slack.wait_for("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == "finding_dismiss_view"
    options = view["blocks"][1]["element"]["options"]
    assert [o["value"] for o in options] == ["wrong", "planned", "accepted_risk"]
    assert _submit(slack_server, view, "planned", days) == 200
    row = _wait_status(slack_ctx, finding_id, status)
    assert (row.decided_by, row.decision_reason) == (APPROVER, "planned")
    assert (row.snoozed_until is not None) == (days is not None)
    fake_slack.wait_for("chat.update")
    [body] = audit_bodies(slack_ctx, f"finding.{status}")
    assert body["message_ts"] == "1700000000.000001" and body["reason"] == "planned"


def test_a_bad_snooze_value_is_answered_in_the_form(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = _posted(slack_ctx)
    _click(slack_server, fake_slack, "finding_dismiss", finding_id)
    [opened] = fake_slack.wait_for("views.open")
    payload_view = opened.args["view"]
    reply_status = _submit(slack_server, payload_view, "wrong", "999")
    assert reply_status == 200
    assert finding(slack_ctx, finding_id).status == "open"


def test_explain_answers_the_clicker(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    register(slack_ctx, "prod-east")
    case = scenario(SCENARIOS / "v01-seed-7b-on-h100.json")
    ingest_and_evaluate(slack_ctx, "prod-east", parse_payload(case["clusters"][0]["ingest"]), "t")
    with transaction(slack_ctx.sessions) as session:
        [finding_id] = [r.id for r in list_findings(session) if r.rule == "tier_misplacement"]
    fake_slack.reset()
    _click(slack_server, fake_slack, "finding_explain", finding_id, user=OUTSIDER)
    [reply] = fake_slack.wait_for("respond")
    assert reply.args["response_type"] == "ephemeral"
    text = json.dumps(reply.args["blocks"])
    assert f"Why F-{finding_id}?" in text and "A10G" in text
    assert finding(slack_ctx, finding_id).status == "open"


def test_concurrent_clicks_over_http_make_one_decision(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    users = [APPROVER, APPROVER_2] * 4
    actions = ["finding_approve", "finding_approve", "finding_dismiss", "finding_approve"] * 2
    for _ in range(5):
        finding_id = _posted(slack_ctx)
        barrier = threading.Barrier(len(users))

        def click(index: int, finding_id: int = finding_id, barrier: Any = barrier) -> None:
            barrier.wait()
            _click(slack_server, fake_slack, actions[index], finding_id, user=users[index])

        threads = [threading.Thread(target=click, args=(i,)) for i in range(len(users))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _wait_status(slack_ctx, finding_id, "approved")
    time.sleep(0.5)  # let every late listener finish
    with transaction(slack_ctx.sessions) as session:
        rows = session.query(FindingRow).all()
    for row in rows:
        decided = [
            a
            for a in audit_actions(slack_ctx, f"finding:{row.public_id}")
            if a in ("finding.approved", "finding.dismissed")
        ]
        assert len(decided) == 1, (row.public_id, decided)


def test_cli_approve_and_dismiss_take_the_same_path_and_update_slack(
    slack_ctx: Context, fake_slack: FakeSlackApi
) -> None:
    approved, dismissed = _posted(slack_ctx), _posted(slack_ctx)
    settings = slack_ctx.settings
    env = {
        "STEWARD_DATABASE_URL": settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(settings.key_pepper_file),
        "SLACK_BOT_TOKEN": "xoxb-steward-test",
        "STEWARD_SLACK_API_URL": fake_slack.api_url,
    }
    runner = CliRunner()
    result = runner.invoke(app, ["approve", f"F-{approved}", "--as", "ops"], env=env)
    assert result.exit_code == 0, result.output
    assert "approved" in result.output and "Slack message updated" in result.output
    result = runner.invoke(
        app,
        [
            "dismiss",
            str(dismissed),
            "--as",
            "ops",
            "--reason",
            "accepted risk",
            "--snooze-days",
            "3",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert finding(slack_ctx, approved).decided_by == "cli:ops"
    row = finding(slack_ctx, dismissed)
    assert (row.status, row.decision_reason) == ("snoozed", "accepted risk")
    assert len(fake_slack.calls("chat.update")) == 2
    again = runner.invoke(app, ["approve", f"F-{approved}", "--as", "other"], env=env)
    assert again.exit_code == 1 and "already approved by ops (CLI)" in again.output
    bad = runner.invoke(app, ["approve", "nope", "--as", "ops"], env=env)
    assert bad.exit_code == 1 and "not a finding id" in bad.output


def test_a_failure_after_the_ack_still_answers_slack_at_once(
    slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    """Bolt forgets an ack when the listener raises right after it; Steward's never raise."""
    # A bad value is answered at once through response_url, which here cannot be reached.
    payload = action_payload("finding_approve", "not-an-id", response_url="http://")
    started = time.monotonic()
    reply = post(slack_server, form(payload))
    assert reply.status_code == 200 and time.monotonic() - started < 2.5


@contextmanager
def _writes_held(ctx: Context) -> Iterator[None]:
    """Hold the database's write lock (SQLite) or lock out writers of the tables a click writes."""
    with ctx.engine.begin() as conn:  # on SQLite this is BEGIN IMMEDIATE (store.db)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE handled_deliveries, findings IN EXCLUSIVE MODE")
        yield


def test_the_ack_never_waits_for_a_database_write(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    """Claiming the delivery and deciding happen after the ack, so a busy database delays
    the decision, never Slack's acknowledgement (Slack gives up after 3 seconds)."""
    finding_id = _posted(slack_ctx)
    payload = action_payload(
        "finding_approve", f"F-{finding_id}", response_url=fake_slack.respond_url()
    )
    with _writes_held(slack_ctx):
        reply = post(slack_server, form(payload), timeout=5)
        assert reply.status_code == 200, reply.text
        time.sleep(0.2)
        assert fake_slack.calls("chat.update") == []  # the decision waits for the lock
    row = _wait_status(slack_ctx, finding_id, "approved")
    assert row.decided_by == APPROVER
    fake_slack.wait_for("chat.update")


def test_calls_to_slack_reuse_connections(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = _posted(slack_ctx)
    _click(slack_server, fake_slack, "finding_approve", finding_id)
    fake_slack.wait_for("chat.update")
    for user in (APPROVER_2, APPROVER, APPROVER_2):
        _click(slack_server, fake_slack, "finding_approve", finding_id, user=user)
    fake_slack.wait_for("respond", 3)
    calls = fake_slack.calls()
    # Web API calls and response_url replies share kept-alive connections.
    assert len({call.peer for call in calls}) < len(calls), [c.method for c in calls]
