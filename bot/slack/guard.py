"""The front door of `POST /slack/events`: size cap, signature, parsing and retry de-duplication.

Everything here runs on the raw bytes BEFORE Bolt sees the request, so that an
unsigned, stale, malformed or oversized request gets a 4xx and never reaches a
listener (Bolt alone answers 500 to some unsigned malformed bodies).

A delivery Slack retries (`X-Slack-Retry-Num`) — or anyone replays — is
acknowledged and does no work. Its key (trigger id or event id) travels to the
listener in Bolt's context as `DELIVERY_KEY`; the listener claims it in
`handled_deliveries` right AFTER acknowledging (`first_delivery`), so the
acknowledgement never waits on a database write, and a second claim of the
same key is refused by the primary key. A retry whose key is already claimed
is answered here, without Bolt.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.types import Message

from bot.context import Context
from bot.request_body import BodyTooLarge, read_capped
from store.db import reading, transaction, utcnow
from store.events import HandledDelivery

log = logging.getLogger(__name__)

SIGNATURE_WINDOW_SECONDS = 300  # Slack's own replay window; SignatureVerifier enforces it
DELIVERY_KEEP = timedelta(hours=24)  # Slack stops retrying long before this
_PRUNE_EVERY = 1000


class Rejected(Exception):
    """A request refused before Bolt: status and a message saying what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def verify_signature(verifier: SignatureVerifier, headers: Mapping[str, str], body: bytes) -> str:
    """The body as text when Slack's signature and timestamp check out; else raise `Rejected`."""
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        raise Rejected(401, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Rejected(401, "X-Slack-Request-Timestamp is not a Unix time")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, "the body is not UTF-8") from exc
    if not verifier.is_valid(text, timestamp, signature):
        raise Rejected(
            401,
            "invalid or expired Slack signature; check SLACK_SIGNING_SECRET and the server clock",
        )
    return text


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Rejected(400, f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise Rejected(400, f"{what} is not a JSON object")
    return value


def delivery_key(text: str) -> str | None:
    """What identifies a delivery across Slack's retries, or None when it needs no de-duplication.

    Raises `Rejected` (400) for a body that is none of Slack's shapes.
    """
    if text.lstrip().startswith("{"):
        event = _json_object(text, "the event body")
        event_id = event.get("event_id")
        return f"event:{event_id}" if isinstance(event_id, str) and event_id else None
    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        payload = _json_object(form["payload"][0], "the interaction payload")
        trigger = payload.get("trigger_id")
        if isinstance(trigger, str) and trigger:
            return f"interaction:{trigger}"
        view = payload.get("view")
        view_id = view.get("id") if isinstance(view, dict) else None
        return f"view:{view_id}:{payload.get('type')}" if isinstance(view_id, str) else None
    if "command" in form:
        trigger = form.get("trigger_id", [""])[0]
        return f"command:{trigger}" if trigger else None
    if form.get("ssl_check") == ["1"]:
        return None
    raise Rejected(400, "not a Slack event, command or interaction")


DELIVERY_KEY = "steward_delivery_key"  # Bolt context property carrying the delivery's key
_calls = itertools.count(1)


def first_delivery(ctx: Context, key: str) -> bool:
    """Record `key`; False when it was already recorded (a retry or a replay)."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        table = cast(Table, HandledDelivery.__table__)
        # RETURNING says whether the row went in; rowcount is not reliable for
        # ON CONFLICT DO NOTHING across drivers.
        statement = (
            insert(table)
            .values(key=key[:255], created_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(table.c.key)
        )
        inserted = session.execute(statement).first() is not None
        # Old keys are pruned now and then, on the request path, so no job is needed.
        if next(_calls) % _PRUNE_EVERY == 0:
            session.execute(
                delete(HandledDelivery).where(HandledDelivery.created_at < now - DELIVERY_KEEP)
            )
    return inserted


def already_handled(ctx: Context, key: str) -> bool:
    """Whether `key` was claimed by an earlier delivery (a read: it never waits for writers)."""
    with reading(ctx.sessions) as session:
        return session.get(HandledDelivery, key[:255]) is not None


def _replay(body: bytes) -> Any:
    """An ASGI `receive` that hands the already-read body to Bolt's adapter."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _read_capped(request: Request, limit: int) -> bytes:
    try:
        return await read_capped(request, limit)
    except BodyTooLarge as exc:
        raise Rejected(413, str(exc)) from exc


def mount(app: FastAPI, ctx: Context, client: AsyncWebClient | None = None) -> None:
    """Serve Slack events, commands and interactivity at `POST /slack/events`."""
    settings = ctx.settings
    secret = settings.slack_signing_secret
    handler: AsyncSlackRequestHandler | None = None
    verifier: SignatureVerifier | None = None
    if secret is not None and settings.slack_bot_token is not None:
        from bot.slack.app import build_app

        verifier = SignatureVerifier(secret.get_secret_value())
        bolt = build_app(ctx, client)
        handler = AsyncSlackRequestHandler(bolt)
        app.state.slack_client = bolt.client  # pooled for the app's lifetime (create_app)

    @app.post("/slack/events", include_in_schema=True)
    async def slack_events(request: Request) -> Response:
        """Slack events, slash commands and interactivity (signed by Slack)."""
        if handler is None or verifier is None:
            return JSONResponse(
                {"detail": "Slack is not configured: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN"},
                status_code=503,
            )
        try:
            body = await _read_capped(request, settings.slack_max_bytes)
            text = verify_signature(verifier, request.headers, body)
            key = delivery_key(text)
        except Rejected as exc:
            log.info("refused a /slack/events request: %s", exc.message)
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        retried = "x-slack-retry-num" in request.headers
        if key is not None and retried and await run_in_threadpool(already_handled, ctx, key):
            log.info("ignored a repeated Slack delivery %s", key)
            return Response(status_code=200, headers={"X-Slack-No-Retry": "1"})
        return await handler.handle(
            Request(request.scope, _replay(body)), addition_context_properties={DELIVERY_KEY: key}
        )
