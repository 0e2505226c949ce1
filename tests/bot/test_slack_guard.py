"""The guard in front of Bolt: only signed, fresh, well-formed, small requests get through, once."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from bot.context import Context
from tests.bot.slackkit import (
    FORM,
    OUTSIDER,
    SECRET,
    action_payload,
    audit_actions,
    command_body,
    finding,
    form,
    make_finding,
    post,
    raw_signature,
    sign,
)
from tests.conftest import LiveServer
from tests.fakes.slack_api import FakeSlackApi


def test_unconfigured_slack_answers_503(live_api: LiveServer) -> None:
    reply = httpx.post(f"{live_api.url}/slack/events", content=b"ssl_check=1")
    assert reply.status_code == 503
    assert "SLACK_SIGNING_SECRET" in reply.json()["detail"]


def _approve_body(finding_id: int) -> bytes:
    return form(action_payload("finding_approve", f"F-{finding_id}"))


def _flip(signature: str) -> str:
    last = signature[-1]
    return signature[:-1] + ("0" if last != "0" else "1")


def _cases(body: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    # Whole seconds on the safe side of the real clock: 301 s is never 300.5 s.
    now = time.time()
    good = sign(body)
    return {
        "wrong secret": (body, sign(body, secret="not-the-secret")),
        "flipped bit": (body, {**good, "X-Slack-Signature": _flip(good["X-Slack-Signature"])}),
        "no headers": (body, {}),
        "no signature": (body, {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]}),
        "no timestamp": (body, {"X-Slack-Signature": good["X-Slack-Signature"]}),
        "301 s old": (body, sign(body, timestamp=math.floor(now) - 301)),
        "301 s ahead": (body, sign(body, timestamp=math.ceil(now) + 301)),
        "non-numeric timestamp": (
            body,
            {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": good["X-Slack-Signature"]},
        ),
        "body changed after signing": (body + b"&x=1", good),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "flipped bit",
        "no headers",
        "no signature",
        "no timestamp",
        "301 s old",
        "301 s ahead",
        "non-numeric timestamp",
        "body changed after signing",
    ],
)
def test_unsigned_or_stale_requests_are_refused(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi, case: str
) -> None:
    finding_id = make_finding(slack_ctx)
    body, headers = _cases(_approve_body(finding_id))[case]
    reply = post(slack_server, body, headers=headers, signed=False)
    assert reply.status_code == 401, reply.text
    time.sleep(0.1)
    assert finding(slack_ctx, finding_id).status == "open"
    assert audit_actions(slack_ctx, f"finding:F-{finding_id}") == []
    assert fake_slack.calls() == []


def test_ssl_check_needs_a_signature(slack_server: LiveServer) -> None:
    assert post(slack_server, b"ssl_check=1&token=x", signed=False).status_code == 401
    assert post(slack_server, b"ssl_check=1&token=x").status_code == 200


def test_url_verification_is_answered(slack_server: LiveServer) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"}).encode()
    reply = post(slack_server, body, content_type="application/json")
    assert reply.status_code == 200 and "c-123" in reply.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"payload=%7Bnot-json", FORM),
        (b"payload=%5B1%2C2%5D", FORM),
        (b'{"type": "event_callback", "event_id": ', "application/json"),
        (b"hello=world", FORM),
    ],
    ids=["payload not JSON", "payload not an object", "event not JSON", "not a Slack shape"],
)
def test_malformed_signed_bodies_get_400(
    slack_server: LiveServer, fake_slack: FakeSlackApi, body: bytes, content_type: str
) -> None:
    reply = post(slack_server, body, content_type=content_type)
    assert reply.status_code == 400, reply.text
    assert fake_slack.calls() == []


def test_invalid_utf8_gets_400(slack_server: LiveServer) -> None:
    body = b"payload=\xff\xfe"
    ts = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": raw_signature(body, SECRET, ts),
    }
    assert post(slack_server, body, headers=headers, signed=False).status_code == 400


def test_oversized_body_gets_413(slack_ctx: Context, slack_server: LiveServer) -> None:
    body = b"payload=" + b"x" * (slack_ctx.settings.slack_max_bytes + 1)
    assert post(slack_server, body).status_code == 413


def test_a_retried_delivery_does_no_work_twice(
    slack_ctx: Context, slack_server: LiveServer, fake_slack: FakeSlackApi
) -> None:
    finding_id = make_finding(slack_ctx)
    payload = action_payload(
        "finding_approve",
        f"F-{finding_id}",
        user=OUTSIDER,
        trigger="trigger-once",
        response_url=fake_slack.respond_url("refusal"),
    )
    assert post(slack_server, form(payload)).status_code == 200
    fake_slack.wait_for("respond")
    retry = post(slack_server, form(payload), headers={"X-Slack-Retry-Num": "1"})
    assert retry.status_code == 200
    assert retry.headers.get("x-slack-no-retry") == "1"
    command = command_body("help", trigger="cmd-once", response_url=fake_slack.respond_url("c"))
    post(slack_server, command)
    post(slack_server, command, headers={"X-Slack-Retry-Num": "2"})
    fake_slack.wait_for("respond", 2)
    time.sleep(0.3)
    assert len(fake_slack.calls("respond")) == 2
    assert audit_actions(slack_ctx, f"finding:F-{finding_id}") == ["decision.refused"]
