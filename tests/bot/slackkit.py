"""Slack test kit: a fake Web API, a Slack-configured context, live server, signed requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.context import Context, open_context
from bot.slack.client import make_client
from store.audit import AuditRecord
from store.db import transaction, utcnow
from store.findings import OPEN, FindingRow
from tests.conftest import LiveServer
from tests.fakes.slack_api import TEAM, FakeSlackApi, FakeSlackProcess

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-steward-test"
APPROVER = "U0ALICE"
APPROVER_2 = "U0BOB"
OUTSIDER = "U0MALLORY"
CHANNEL = "C0FINDINGS"
DIGEST_CHANNEL = "C0DIGEST"


def slack_settings(
    settings: Settings, fake: FakeSlackApi | FakeSlackProcess, **extra: Any
) -> Settings:
    """`settings` with Slack configured against the fake."""
    return settings.model_copy(
        update={
            "slack_bot_token": SecretStr(TOKEN),
            "slack_signing_secret": SecretStr(SECRET),
            "slack_api_url": fake.api_url,
            "findings_channel": CHANNEL,
            "digest_channel": DIGEST_CHANNEL,
            "approvers": [APPROVER, APPROVER_2],
            **extra,
        }
    )


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackApi]:
    """The fake Slack Web API on a loopback port."""
    with FakeSlackApi() as fake:
        yield fake


@pytest.fixture
def slack_ctx(settings: Settings, fake_slack: FakeSlackApi) -> Iterator[Context]:
    """An opened context whose Slack is the fake."""
    context = open_context(slack_settings(settings, fake_slack))
    yield context
    context.close()


@pytest.fixture
def slack_client(slack_ctx: Context) -> AsyncWebClient:
    """A Web API client pointed at the fake."""
    client = make_client(slack_ctx.settings)
    assert client is not None
    return client


@pytest.fixture
def slack_server(slack_ctx: Context) -> Iterator[LiveServer]:
    """Steward (API + /slack/events) served by uvicorn on loopback, talking to the fake."""
    from bot.api import create_app

    with LiveServer(create_app(slack_ctx)) as server:
        yield server


# --- requests signed the way Slack signs them --------------------------------------


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's signature headers for `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    verifier = SignatureVerifier(secret)
    signature = verifier.generate_signature(timestamp=ts, body=body.decode("utf-8"))
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def raw_signature(body: bytes, secret: str, timestamp: str) -> str:
    """A signature over arbitrary bytes (for bodies that are not UTF-8)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


FORM = "application/x-www-form-urlencoded"


def post(
    server: LiveServer,
    body: bytes,
    *,
    content_type: str = FORM,
    headers: dict[str, str] | None = None,
    signed: bool = True,
    timeout: float = 30,
) -> httpx.Response:
    """POST to /slack/events, signed unless told otherwise."""
    sent = {"Content-Type": content_type, **(sign(body) if signed else {}), **(headers or {})}
    return httpx.post(f"{server.url}/slack/events", content=body, headers=sent, timeout=timeout)


def action_payload(
    action_id: str,
    value: str,
    *,
    user: str = APPROVER,
    trigger: str | None = None,
    response_url: str = "",
    channel: str = CHANNEL,
    message_ts: str = "1700000000.000001",
) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a button click."""
    trigger = trigger or f"trig-{time.monotonic_ns()}"
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "steward"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0STEWARD",
        "token": "legacy",
        "trigger_id": trigger,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel, "name": "findings"},
        "message": {"type": "message", "ts": message_ts, "text": "finding"},
        "response_url": response_url,
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "decide", "value": value,
             "action_ts": str(time.time())}
        ],
    }  # fmt: skip


def form(payload: dict[str, Any]) -> bytes:
    """An interaction payload, form-encoded the way Slack posts it."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def command_body(
    text: str, *, user: str = APPROVER, response_url: str = "", trigger: str | None = None
) -> bytes:
    """A `/steward` slash command, form-encoded."""
    return urlencode(
        {
            "token": "legacy",
            "team_id": TEAM,
            "team_domain": "steward",
            "channel_id": CHANNEL,
            "channel_name": "findings",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/steward",
            "text": text,
            "api_app_id": "A0STEWARD",
            "response_url": response_url,
            "trigger_id": trigger or f"cmd-{time.monotonic_ns()}",
        }
    ).encode()


# --- findings in the store ---------------------------------------------------------


def make_finding(ctx: Context, **overrides: Any) -> int:
    """Insert one open tier_misplacement finding; return its numeric id."""
    now = utcnow()
    values: dict[str, Any] = {
        "fingerprint": f"tier_misplacement|prod-east|ns/chat/deployment/m-{time.monotonic_ns()}",
        "rule": "tier_misplacement",
        "level": "model",
        "cluster": "prod-east",
        "subject": "ns/chat/deployment/mistral-7b",
        "monthly_usd": Decimal("3200.32"),
        "kind": "savings",
        "confidence": "high",
        "status": OPEN,
        "summary": "Mistral-7B on 1× H100-SXM-80GB fits 1× A10G-24GB: moving saves $3,200/month.",
        "evidence": {
            "facts": {"model.name": {"value": "mistralai/Mistral-7B", "confidence": "high"}},
            "weights_gb": 14.5,
        },
        "recommendation": {
            "action": "move_tier",
            "target_gpu": "A10G-24GB",
            "target_gpu_count": 1,
            "replicas": 1,
            "params": {"current_gpu": "H100-SXM-80GB", "current_gpu_count": 1},
        },
        "claims": [{"resource": "prod-east|ns/chat/deployment/mistral-7b", "usd": 3200.32}],
        "first_seen": now - timedelta(days=1),
        "last_seen": now,
        "updated_at": now,
    }
    values.update(overrides)
    with transaction(ctx.sessions) as session:
        row = FindingRow(**values)
        session.add(row)
        session.flush()
        return row.id


def finding(ctx: Context, finding_id: int) -> FindingRow:
    """The stored finding."""
    with transaction(ctx.sessions) as session:
        row = session.get(FindingRow, finding_id)
        assert row is not None
        return row


def audit_actions(ctx: Context, subject: str | None = None) -> list[str]:
    """Audit actions in order, optionally for one subject."""
    with transaction(ctx.sessions) as session:
        query = session.query(AuditRecord).order_by(AuditRecord.seq)
        if subject is not None:
            query = query.filter(AuditRecord.subject == subject)
        return [record.action for record in query]


def audit_bodies(ctx: Context, action: str) -> list[dict[str, Any]]:
    """Bodies of every audit record with this action."""
    with transaction(ctx.sessions) as session:
        rows = session.query(AuditRecord).filter(AuditRecord.action == action)
        return [json.loads(record.body) for record in rows.order_by(AuditRecord.seq)]


DEMO_FLEET = Path(__file__).resolve().parents[2] / "bot" / "demo" / "fleet.json"


def load_demo_fleet(ctx: Context) -> None:
    """Register the bundled three-cluster demo fleet and ingest it (every rule fires)."""
    from bot import clusters
    from bot.ingest import parse_payload
    from bot.pipeline import ingest_and_evaluate

    fleet = json.loads(DEMO_FLEET.read_text())
    for cluster in fleet["clusters"]:
        clusters.add_cluster(ctx, cluster["name"], cluster["provider"], cluster["region"], "test")
        payload = {
            "schemaVersion": "piqc-scan.v0.1",
            "cluster_id": cluster["name"],
            "workloads": cluster["workloads"],
        }
        ingest_and_evaluate(ctx, cluster["name"], parse_payload(payload), "test")
