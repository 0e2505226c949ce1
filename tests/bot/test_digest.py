"""The weekly digest: figures from the store and the price book, blocks, chart, upload."""

from __future__ import annotations

import asyncio
import json

from slack_sdk.web.async_client import AsyncWebClient
from typer.testing import CliRunner

from bot.blocks import check_limits
from bot.cli import app
from bot.context import Context
from bot.decisions import decide_finding
from bot.digest import build_digest, chart_png, digest_message, post_weekly_digest
from bot.wording import usd_month
from engine.findings import savings_total
from store.db import transaction, utcnow
from store.decisions import DecisionRequest
from store.findings import list_findings
from tests.bot.slackkit import APPROVER, DIGEST_CHANNEL, load_demo_fleet
from tests.fakes.slack_api import FakeSlackApi

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fleet_with_decisions(ctx: Context) -> tuple[int, int]:
    load_demo_fleet(ctx)
    with transaction(ctx.sessions) as session:
        rows = list_findings(session)
    approved, dismissed = rows[-1].id, rows[-2].id
    decide_finding(ctx, DecisionRequest(approved, "approve", actor=APPROVER), check_approver=True)
    decide_finding(
        ctx,
        DecisionRequest(dismissed, "dismiss", actor=APPROVER, reason="planned"),
        check_approver=True,
    )
    return approved, dismissed


def test_the_digest_counts_each_dollar_once(slack_ctx: Context) -> None:
    approved, dismissed = _fleet_with_decisions(slack_ctx)
    digest = build_digest(slack_ctx, utcnow())
    assert [c.cluster for c in digest.clusters] == ["aws-east", "aws-west", "gcp-central"]
    assert all(c.spend_usd > 0 for c in digest.clusters)

    with transaction(slack_ctx.sessions) as session:
        open_rows = list_findings(session)
    expected = savings_total(row.to_engine() for row in open_rows)
    assert digest.open_savings_usd == expected > 0
    per_cluster = sum(c.open_savings_usd for c in digest.clusters)
    assert abs(per_cluster - digest.open_savings_usd) < 0.05
    assert [d.finding for d in digest.approvals] == [f"F-{approved}"]
    assert [(d.finding, d.reason) for d in digest.dismissals] == [(f"F-{dismissed}", "planned")]
    assert digest.realised_usd == 0 and digest.verified_changes == 0
    assert len(digest.top) == 5
    assert [t.monthly_usd for t in digest.top] == sorted(
        (t.monthly_usd for t in digest.top), reverse=True
    )


def test_the_digest_message_fits_slack_and_says_the_figures(slack_ctx: Context) -> None:
    _fleet_with_decisions(slack_ctx)
    digest = build_digest(slack_ctx, utcnow())
    message = digest_message(digest)
    assert check_limits(message) == []
    text = json.dumps(message.blocks, ensure_ascii=False)
    assert usd_month(digest.spend_usd) in text and usd_month(digest.open_savings_usd) in text
    assert "1 approved, 1 dismissed or snoozed" in text
    assert "none yet" in text  # realised savings, said plainly
    assert chart_png(digest).startswith(PNG_MAGIC)


def test_the_weekly_digest_is_posted_with_its_chart(
    slack_ctx: Context, slack_client: AsyncWebClient, fake_slack: FakeSlackApi
) -> None:
    _fleet_with_decisions(slack_ctx)
    fake_slack.reset()
    asyncio.run(post_weekly_digest(slack_ctx, slack_client))
    [message] = fake_slack.calls("chat.postMessage")
    assert message.args["channel"] == DIGEST_CHANNEL
    assert "Steward weekly digest" in message.args["text"]
    [url_call] = fake_slack.calls("files.getUploadURLExternal")
    assert url_call.args["filename"].startswith("steward-digest-")
    [upload] = fake_slack.calls("upload")
    assert upload.raw.startswith(PNG_MAGIC)
    assert int(url_call.args["length"]) == len(upload.raw)
    [complete] = fake_slack.calls("files.completeUploadExternal")
    assert complete.args["channel_id"] == DIGEST_CHANNEL
    assert complete.args["files"][0]["id"] == upload.args["file_id"]


def test_steward_digest_renders_and_posts(slack_ctx: Context, fake_slack: FakeSlackApi) -> None:
    load_demo_fleet(slack_ctx)
    fake_slack.reset()
    settings = slack_ctx.settings
    env = {
        "STEWARD_DATABASE_URL": settings.database_url,
        "STEWARD_SIGNING_KEY_FILE": str(settings.signing_key_file),
        "STEWARD_KEY_PEPPER_FILE": str(settings.key_pepper_file),
    }
    result = CliRunner().invoke(app, ["digest"], env=env)
    assert result.exit_code == 0, result.output
    assert "GPU spend" in result.output and "Top open findings" in result.output
    refused = CliRunner().invoke(app, ["digest", "--post"], env=env)
    assert refused.exit_code == 1 and "STEWARD_DIGEST_CHANNEL" in refused.output
    slack_env = {
        **env,
        "SLACK_BOT_TOKEN": "xoxb-steward-test",
        "STEWARD_SLACK_API_URL": fake_slack.api_url,
        "STEWARD_DIGEST_CHANNEL": DIGEST_CHANNEL,
    }
    posted = CliRunner().invoke(app, ["digest", "--post"], env=slack_env)
    assert posted.exit_code == 0, posted.output
    assert fake_slack.calls("upload") and fake_slack.calls("files.completeUploadExternal")


def test_the_digest_is_skipped_without_slack(ctx: Context) -> None:
    asyncio.run(post_weekly_digest(ctx))  # no token, no channel: nothing to do, no error
