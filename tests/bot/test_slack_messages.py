"""Finding messages: posted once with their evidence in the thread, updated in place, resolved."""

from __future__ import annotations

import copy
from typing import Any

from bot.blocks import check_limits
from bot.context import Context, open_context
from bot.ingest import parse_payload
from bot.pipeline import ingest_and_evaluate
from store.db import transaction
from store.findings import list_findings
from tests.bot.slackkit import CHANNEL, finding, slack_settings
from tests.factories import SCENARIOS, register, scenario
from tests.fakes.slack_api import Call, FakeSlackApi

SUBJECT = "ns/chat/deployment/mistral-7b"


def _payload(**changes: Any) -> dict[str, Any]:
    case = scenario(SCENARIOS / "v01-seed-7b-on-h100.json")
    payload = copy.deepcopy(case["clusters"][0]["ingest"])
    for key, value in changes.items():
        payload["workloads"][0]["facts"][key.replace("__", ".")]["value"] = value
    return dict(payload)


def _push(ctx: Context, payload: dict[str, Any]) -> None:
    ingest_and_evaluate(ctx, "prod-east", parse_payload(payload), "push")


def _tier_finding(ctx: Context) -> int:
    with transaction(ctx.sessions) as session:
        rows = list_findings(session, include_all=True)
    [row] = [r for r in rows if r.rule == "tier_misplacement" and r.subject == SUBJECT]
    return row.id


def _top_level(calls: list[Call]) -> list[Call]:
    return [c for c in calls if "thread_ts" not in c.args]


def test_a_new_finding_is_posted_once_with_its_evidence_in_the_thread(
    slack_ctx: Context, fake_slack: FakeSlackApi
) -> None:
    register(slack_ctx, "prod-east")
    _push(slack_ctx, _payload())
    finding_id = _tier_finding(slack_ctx)
    posts = _top_level(fake_slack.calls("chat.postMessage"))
    [post] = [c for c in posts if f"F-{finding_id}" in c.args["text"]]
    assert post.args["channel"] == CHANNEL
    assert post.headers["authorization"] == "Bearer xoxb-steward-test"
    blocks = post.args["blocks"]
    assert "/month" in blocks[0]["text"]["text"]
    assert "Model on a bigger GPU than it needs" in blocks[0]["text"]["text"]
    assert "prod-east" in blocks[1]["elements"][0]["text"]
    change = blocks[3]["text"]["text"]
    assert "nvidia.com/gpu.product" in change and "NVIDIA-A10G" in change and "saves $" in change
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("finding_approve", f"F-{finding_id}"),
        ("finding_dismiss", f"F-{finding_id}"),
        ("finding_explain", f"F-{finding_id}"),
    ]
    assert actions["elements"][0]["style"] == "primary" and "confirm" in actions["elements"][0]
    assert check_limits({"blocks": blocks}) == []
    row = finding(slack_ctx, finding_id)
    assert (row.slack_channel, row.slack_ts) == (CHANNEL, post.args and row.slack_ts)
    thread = [c for c in fake_slack.calls("chat.postMessage") if c.args.get("thread_ts")]
    assert any(c.args["thread_ts"] == row.slack_ts for c in thread)
    evidence = " ".join(b["text"]["text"] for c in thread for b in c.args["blocks"])
    assert "hardware.gpuType" in evidence and "NVIDIA-H100-80GB-HBM3" in evidence

    fake_slack.reset()
    _push(slack_ctx, _payload())  # unchanged facts: nothing to say
    assert fake_slack.calls("chat.postMessage") == []
    assert fake_slack.calls("chat.update") == []


def test_changed_figures_update_the_message_in_place(
    slack_ctx: Context, fake_slack: FakeSlackApi
) -> None:
    register(slack_ctx, "prod-east")
    _push(slack_ctx, _payload())
    finding_id = _tier_finding(slack_ctx)
    before = finding(slack_ctx, finding_id)
    fake_slack.reset()
    _push(slack_ctx, _payload(k8s__replicas=3))
    after = finding(slack_ctx, finding_id)
    assert after.monthly_usd > before.monthly_usd
    assert _top_level(fake_slack.calls("chat.postMessage")) == []
    [update] = [c for c in fake_slack.calls("chat.update") if c.args["ts"] == before.slack_ts]
    assert update.args["channel"] == CHANNEL
    from bot.wording import usd_month

    assert usd_month(after.monthly_usd) in update.args["blocks"][0]["text"]["text"]


def test_a_resolved_finding_says_so(slack_ctx: Context, fake_slack: FakeSlackApi) -> None:
    register(slack_ctx, "prod-east")
    _push(slack_ctx, _payload())
    finding_id = _tier_finding(slack_ctx)
    ts = finding(slack_ctx, finding_id).slack_ts
    fake_slack.reset()
    _push(slack_ctx, _payload(hardware__gpuType="NVIDIA-A10G"))
    assert finding(slack_ctx, finding_id).status == "resolved"
    [update] = [c for c in fake_slack.calls("chat.update") if c.args["ts"] == ts]
    texts = " ".join(str(b) for b in update.args["blocks"])
    assert "Resolved" in texts and "finding_approve" not in texts


def test_findings_below_the_floor_or_without_a_channel_stay_quiet(
    settings: Any, fake_slack: FakeSlackApi
) -> None:
    configured = slack_settings(settings, fake_slack, slack_min_monthly_usd=1_000_000)
    ctx = open_context(configured)
    try:
        register(ctx, "prod-east")
        _push(ctx, _payload())
        assert fake_slack.calls("chat.postMessage") == []
    finally:
        ctx.close()


def test_a_cluster_channel_wins_and_429_is_retried(settings: Any, fake_slack: FakeSlackApi) -> None:
    configured = slack_settings(settings, fake_slack, cluster_channels={"prod-east": "C0EAST"})
    ctx = open_context(configured)
    try:
        register(ctx, "prod-east")
        fake_slack.throttle("chat.postMessage", 1)
        _push(ctx, _payload())
        assert fake_slack.calls("chat.postMessage:429")
        posts = _top_level(fake_slack.calls("chat.postMessage"))
        assert posts and {c.args["channel"] for c in posts} == {"C0EAST"}
        assert finding(ctx, _tier_finding(ctx)).slack_channel == "C0EAST"
    finally:
        ctx.close()
