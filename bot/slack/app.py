"""The Bolt app: Approve, Dismiss and Explain buttons, the Dismiss form and `/steward`.

Every listener acknowledges first and works after: Bolt answers Slack as soon
as `ack()` is called and lets the listener finish in the background. The first
thing done after the ack is to claim the delivery (`_first_time`), so a Slack
retry or a replayed request does no work twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.actuation import RevertRefused, actuate_and_report, request_revert
from bot.blocks import (
    APPROVE,
    DISMISS,
    DISMISS_REASONS,
    DISMISS_VIEW,
    EXPLAIN,
    REVERT,
    Message,
    dismiss_modal,
)
from bot.context import Context
from bot.decisions import Decision, decide_finding, may_decide, refuse
from bot.notify import update_message
from bot.slack.client import make_client
from bot.slack.commands import caller_of, decision_reply, explanation, run_command
from bot.slack.guard import DELIVERY_KEY, first_delivery
from store.db import reading, utcnow
from store.decisions import DecisionRequest, Verdict
from store.findings import OPEN, FindingRow, get_finding, parse_id

log = logging.getLogger(__name__)

_REASONS = {value: text.lower() for value, text in DISMISS_REASONS}


class _AfterAck:
    """Where listeners work once Slack has its ack: a few at a time, never raising.

    Bounding the work keeps acknowledgements quick in a burst of clicks: the
    acks share the event loop (and the GIL) with whatever work is running, so
    the rest of the work waits its turn instead. An exception here is logged:
    raised, Bolt would drop the ack and answer 404.
    """

    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def __call__(self, listener: str) -> AsyncIterator[None]:
        async with self._slots:
            try:
                yield
            except Exception:
                log.exception("%s failed after acknowledging Slack", listener)


async def _first_time(ctx: Context, context: AsyncBoltContext) -> bool:
    """Claim this delivery; False for a Slack retry or a replay, which must do no work."""
    key = context.get(DELIVERY_KEY)
    return key is None or await asyncio.to_thread(first_delivery, ctx, key)


def _origin(body: Mapping[str, Any]) -> dict[str, str | None]:
    """Slack user, team, channel and message ts of an interaction, for the audit record."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    return {
        "slack_user": (body.get("user") or {}).get("id"),
        "team": (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id"),
        "channel": (body.get("channel") or {}).get("id") or container.get("channel_id"),
        "message_ts": message.get("ts") or container.get("message_ts"),
    }


def _ephemeral(message: Message) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, **message.as_kwargs()}


Respond = Callable[..., Awaitable[Any]]
ButtonWork = Callable[
    [dict[str, Any], AsyncWebClient, Respond, int, str], Coroutine[Any, Any, None]
]


def _responder(client: AsyncWebClient, body: Mapping[str, Any]) -> Respond:
    """Reply to the interaction's response_url over `client`'s pooled connections.

    Bolt's own `respond` opens a new connection for every reply.
    """
    url = body.get("response_url")

    async def respond(**message: Any) -> None:
        if not url:
            log.warning("no response_url to reply to; the reply was not sent")
            return
        await AsyncWebhookClient(str(url), session=client.session).send(**message)

    return respond


def _load(ctx: Context, finding_id: int) -> FindingRow | None:
    with reading(ctx.sessions) as session:
        return get_finding(session, finding_id)


async def _decide(ctx: Context, client: AsyncWebClient, request: DecisionRequest) -> Decision:
    decision = await asyncio.to_thread(decide_finding, ctx, request, check_approver=True)
    if decision.won and decision.finding is not None:
        await update_message(client, decision.finding)
    return decision


_background: set[asyncio.Task[Any]] = set()


def _in_background(work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` after the listener returns, keeping a reference until it is done."""
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def build_app(ctx: Context, client: AsyncWebClient | None = None) -> AsyncApp:
    """The Bolt app of one Steward process; `client` defaults to one built from settings."""
    settings = ctx.settings
    assert settings.slack_signing_secret is not None, "mount() checks Slack is configured"
    web = client or make_client(settings)
    after_ack = _AfterAck(settings.slack_work_concurrency)
    app = AsyncApp(
        client=web,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        # The guard in front (bot/slack/guard.py) has verified signature and
        # timestamp on the raw bytes; Bolt need not compute the HMAC again.
        request_verification_enabled=False,
        logger=log,
    )

    def on_button(action_id: str) -> Callable[[ButtonWork], ButtonWork]:
        """Make `work` the listener of a finding's button: ack, claim the delivery, read the id.

        `work` runs after the ack with the click's body, client, responder,
        finding id and Slack user; a value that is no finding id is answered here.
        """

        def register(work: ButtonWork) -> ButtonWork:
            @app.action(action_id)
            async def listener(
                ack: AsyncAck,
                body: dict[str, Any],
                client: AsyncWebClient,
                context: AsyncBoltContext,
            ) -> None:
                await ack()
                respond = _responder(client, body)
                async with after_ack(work.__name__):
                    if not await _first_time(ctx, context):
                        return
                    user = (body.get("user") or {}).get("id", "")
                    value = (body.get("actions") or [{}])[0].get("value", "")
                    finding_id = parse_id(str(value))
                    if finding_id is None:
                        await respond(**_ephemeral(Message(f"`{value}` is not a finding id.")))
                        return
                    await work(body, client, respond, finding_id, user)

            return work

        return register

    @on_button(APPROVE)
    async def on_approve(
        body: dict[str, Any], client: AsyncWebClient, respond: Respond, finding_id: int, user: str
    ) -> None:
        request = DecisionRequest(finding_id, "approve", actor=user, origin=_origin(body))
        decision = await _decide(ctx, client, request)
        if not decision.won:
            await respond(**_ephemeral(decision_reply(decision, finding_id, user)))
            return
        _in_background(actuate_and_report(ctx, client=client))

    @on_button(REVERT)
    async def on_revert(
        body: dict[str, Any], client: AsyncWebClient, respond: Respond, finding_id: int, user: str
    ) -> None:
        row = await asyncio.to_thread(_load, ctx, finding_id)
        request = DecisionRequest(finding_id, "approve", actor=user, origin=_origin(body))
        if row is None or not may_decide(settings, user, row.cluster):
            await asyncio.to_thread(refuse, ctx, request, "not an approver (revert)")
            decision = Decision("refused" if row else "not_found", row)
            await respond(**_ephemeral(decision_reply(decision, finding_id, user)))
            return
        try:
            await asyncio.to_thread(request_revert, ctx, finding_id, user)
        except RevertRefused as exc:
            await respond(**_ephemeral(Message(str(exc))))
            return
        _in_background(actuate_and_report(ctx, client=client))

    @on_button(DISMISS)
    async def on_dismiss(
        body: dict[str, Any], client: AsyncWebClient, respond: Respond, finding_id: int, user: str
    ) -> None:
        origin = _origin(body)
        row = await asyncio.to_thread(_load, ctx, finding_id)
        request = DecisionRequest(finding_id, "dismiss", actor=user, origin=origin)
        if row is not None and not may_decide(settings, user, row.cluster):
            seq = await asyncio.to_thread(refuse, ctx, request, "not an approver")
            decision = Decision("refused", row, seq)
        elif row is None or row.status != OPEN:
            decision = Decision("not_found" if row is None else "already_decided", row)
        else:
            metadata = json.dumps(
                {"finding_id": finding_id, "response_url": body.get("response_url"), **origin}
            )
            view = dismiss_modal(row, metadata)
            await client.views_open(trigger_id=body["trigger_id"], view=view)
            return
        await respond(**_ephemeral(decision_reply(decision, finding_id, user)))

    @on_button(EXPLAIN)
    async def on_explain(
        body: dict[str, Any], client: AsyncWebClient, respond: Respond, finding_id: int, user: str
    ) -> None:
        await respond(**_ephemeral(await explanation(ctx, finding_id)))

    @app.view(DISMISS_VIEW)
    async def on_dismiss_submit(
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        values = view.get("state", {}).get("values", {})
        option = ((values.get("reason") or {}).get("reason") or {}).get("selected_option") or {}
        reason = _REASONS.get(str(option.get("value")))
        raw_days = ((values.get("snooze") or {}).get("days") or {}).get("value")
        days = int(raw_days) if raw_days and str(raw_days).isdigit() else None
        if reason is None:
            await ack(response_action="errors", errors={"reason": "Pick a reason."})
            return
        if raw_days and (days is None or not 1 <= days <= 365):
            await ack(response_action="errors", errors={"snooze": "Whole days, 1 to 365."})
            return
        await ack()
        async with after_ack("on_dismiss_submit"):
            if not await _first_time(ctx, context):
                return
            try:
                metadata = json.loads(view.get("private_metadata") or "{}")
                finding_id = int(metadata["finding_id"])
            except (ValueError, KeyError, TypeError):
                log.warning("a Dismiss form came back without its finding id; ignored")
                return
            user = (body.get("user") or {}).get("id", "")
            verdict: Verdict = "snooze" if days else "dismiss"
            origin = {
                key: metadata.get(key) for key in ("slack_user", "team", "channel", "message_ts")
            }
            origin["slack_user"] = user
            request = DecisionRequest(
                finding_id,
                verdict,
                actor=user,
                reason=reason,
                snooze_until=utcnow() + timedelta(days=days) if days else None,
                origin=origin,
            )
            decision = await _decide(ctx, client, request)
            if decision.won:
                return
            reply = decision_reply(decision, finding_id, user)
            if metadata.get("response_url"):
                await _responder(client, metadata)(**_ephemeral(reply))
            elif origin.get("channel"):
                await client.chat_postEphemeral(
                    channel=str(origin["channel"]), user=user, **reply.as_kwargs()
                )

    @app.command("/steward")
    async def on_command(
        ack: AsyncAck,
        command: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        respond = _responder(client, command)
        async with after_ack("on_command"):
            if not await _first_time(ctx, context):
                return
            reply = await run_command(
                ctx, str(command.get("text") or ""), caller_of(command), client
            )
            await respond(response_type="ephemeral", **reply.as_kwargs())

    return app
