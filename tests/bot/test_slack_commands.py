"""`/steward` over real HTTP: every subcommand answers ephemerally; bad input gets usage."""

from __future__ import annotations

import json
import time

import pytest

from bot.context import Context
from store.db import transaction
from store.findings import list_findings
from tests.bot.slackkit import (
    APPROVER,
    OUTSIDER,
    audit_actions,
    command_body,
    finding,
    load_demo_fleet,
    post,
)
from tests.conftest import LiveServer
from tests.fakes.slack_api import Call, FakeSlackApi


def ask(server: LiveServer, fake: FakeSlackApi, text: str, user: str = APPROVER) -> Call:
    """Type `/steward text`; return the ephemeral answer Steward sent to the response_url."""
    name = f"cmd-{time.monotonic_ns()}"
    reply = post(server, command_body(text, user=user, response_url=fake.respond_url(name)))
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [c for c in fake.calls("respond") if c.path.endswith(name)]
        if found:
            assert found[0].args["response_type"] == "ephemeral"
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no answer to /steward {text}")


def said(call: Call) -> str:
    return call.args["text"] + json.dumps(call.args.get("blocks", []), ensure_ascii=False)


@pytest.fixture
def fleet(slack_ctx: Context) -> Context:
    load_demo_fleet(slack_ctx)
    return slack_ctx


def _largest(ctx: Context, cluster: str | None = None) -> int:
    with transaction(ctx.sessions) as session:
        return list_findings(session, cluster=cluster)[0].id


@pytest.mark.parametrize("text", ["", "help"])
def test_help_lists_every_subcommand(
    slack_server: LiveServer, fake_slack: FakeSlackApi, text: str
) -> None:
    answer = said(ask(slack_server, fake_slack, text))
    for sub in ("findings", "explain ID", "clusters", "digest", "audit verify", "snooze ID DAYS"):
        assert sub in answer


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frobnicate", "is not a `/steward` command"),
        ("explain", "has the wrong arguments"),
        ("explain twelve", "is not a finding id"),
        ("snooze F-1", "needs a finding id and 1 to 365 days"),
        ("snooze F-1 0", "needs a finding id"),
        ("snooze F-1 soon", "needs a finding id"),
        ("audit", "has the wrong arguments"),
        ("findings a b", "has the wrong arguments"),
    ],
)
def test_bad_input_answers_with_usage(
    slack_server: LiveServer, fake_slack: FakeSlackApi, text: str, problem: str
) -> None:
    answer = said(ask(slack_server, fake_slack, text))
    assert problem in answer and "/steward help" in answer


def test_findings_lists_the_largest_first_and_filters_by_cluster(
    fleet: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    answer = said(ask(slack_server, fake_slack, "findings"))
    assert f"`F-{_largest(fleet)}`" in answer and "Open findings" in answer
    west = said(ask(slack_server, fake_slack, "findings aws-west"))
    assert "in aws-west" in west and "aws-east" not in west
    assert "No open findings in nowhere" in said(ask(slack_server, fake_slack, "findings nowhere"))


def test_explain_answers_with_the_explanation(
    fleet: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = _largest(fleet)
    assert f"Why F-{finding_id}?" in said(ask(slack_server, fake_slack, f"explain F-{finding_id}"))
    assert "There is no finding F-999" in said(ask(slack_server, fake_slack, "explain 999"))


def test_clusters_digest_and_audit_verify(
    fleet: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    clusters = said(ask(slack_server, fake_slack, "clusters"))
    assert all(name in clusters for name in ("aws-east", "aws-west", "gcp-central"))
    digest = said(ask(slack_server, fake_slack, "digest"))
    assert "Steward weekly digest" in digest and "Open savings" in digest
    audit = said(ask(slack_server, fake_slack, "audit verify"))
    assert "Audit log verified" in audit


def test_snooze_by_an_approver_and_refusal_of_others(
    fleet: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = _largest(fleet)
    refused = said(ask(slack_server, fake_slack, f"snooze F-{finding_id} 7", user=OUTSIDER))
    assert "not allowed" in refused and finding(fleet, finding_id).status == "open"
    done = said(ask(slack_server, fake_slack, f"snooze F-{finding_id} 7"))
    assert f"F-{finding_id} snoozed" in done
    row = finding(fleet, finding_id)
    assert row.status == "snoozed" and row.decided_by == APPROVER
    assert audit_actions(fleet, f"finding:F-{finding_id}")[-2:] == [
        "decision.refused",
        "finding.snoozed",
    ]
    again = said(ask(slack_server, fake_slack, f"snooze F-{finding_id} 3"))
    assert "already snoozed by" in again
