"""Finding messages in Slack: post new findings, update changed, decided and resolved ones."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import update

from bot.blocks import evidence_message, finding_message
from bot.config import Settings
from bot.context import Context
from bot.slack.client import make_client
from store.db import transaction
from store.findings import OPEN, FindingRow, Reconciled, get_finding

log = logging.getLogger(__name__)
T = TypeVar("T")


def channel_for(settings: Settings, cluster: str | None) -> str | None:
    """The channel a cluster's findings go to: its own, else STEWARD_FINDINGS_CHANNEL."""
    if cluster is not None and cluster in settings.cluster_channels:
        return settings.cluster_channels[cluster]
    return settings.findings_channel


def worth_posting(settings: Settings, row: FindingRow) -> bool:
    """An open, not yet posted finding at or above the dollar floor."""
    return (
        row.status == OPEN
        and row.slack_ts is None
        and float(row.monthly_usd) >= settings.slack_min_monthly_usd
        and channel_for(settings, row.cluster) is not None
    )


def _remember(ctx: Context, finding_id: int, channel: str, ts: str) -> bool:
    with transaction(ctx.sessions) as session:
        result = session.execute(
            update(FindingRow)
            .where(FindingRow.id == finding_id, FindingRow.slack_ts.is_(None))
            .values(slack_channel=channel, slack_ts=ts)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def post_finding(ctx: Context, client: AsyncWebClient, row: FindingRow) -> str | None:
    """Post a finding to its channel with its evidence in the thread; return the message ts."""
    channel = channel_for(ctx.settings, row.cluster)
    if channel is None:
        return None
    reply = await client.chat_postMessage(
        channel=channel, unfurl_links=False, **finding_message(row).as_kwargs()
    )
    channel_id, ts = str(reply["channel"]), str(reply["ts"])
    await asyncio.to_thread(_remember, ctx, row.id, channel_id, ts)
    row.slack_channel, row.slack_ts = channel_id, ts
    await client.chat_postMessage(
        channel=channel_id, thread_ts=ts, **evidence_message(row).as_kwargs()
    )
    return ts


async def update_message(client: AsyncWebClient, row: FindingRow) -> bool:
    """Re-render a posted finding's message in place (figures, decision, resolution)."""
    if row.slack_channel is None or row.slack_ts is None:
        return False
    await client.chat_update(
        channel=row.slack_channel, ts=row.slack_ts, **finding_message(row).as_kwargs()
    )
    return True


def _load(ctx: Context, finding_id: int) -> FindingRow | None:
    with transaction(ctx.sessions) as session:
        return get_finding(session, finding_id)


async def refresh_finding(ctx: Context, client: AsyncWebClient, finding_id: int) -> bool:
    """Update the Slack message of a finding from its stored state; False when it has none."""
    row = await asyncio.to_thread(_load, ctx, finding_id)
    return row is not None and await update_message(client, row)


async def notify_reconciled(ctx: Context, client: AsyncWebClient, reconciled: Reconciled) -> None:
    """Post what one evaluation opened; update what it changed, reopened or resolved."""
    updated: set[int] = set()
    for row in [*reconciled.opened, *reconciled.changed, *reconciled.resolved]:
        if row.slack_ts is not None and row.id not in updated:
            await update_message(client, row)
            updated.add(row.id)
    # Every open finding without a message is posted, so one Slack outage
    # only delays messages until the next scan.
    for row in reconciled.current:
        if worth_posting(ctx.settings, row):
            await post_finding(ctx, client, row)


def run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_call(factory))
    # Called from the event loop's own thread: run it in a thread with its own loop.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_call(factory))
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def notify_scan(ctx: Context, reconciled: Reconciled) -> None:
    """After a scan: tell Slack, when Slack is configured; a Slack failure never fails a scan."""
    client = make_client(ctx.settings)
    if client is None:
        return
    try:
        run_coroutine(lambda: notify_reconciled(ctx, client, reconciled))
    except Exception as exc:  # Slack or network trouble must not lose the stored findings
        log.warning(
            "could not update Slack after the scan (%s); findings are stored and the next "
            "scan posts what is missing",
            exc,
        )


def refresh_finding_now(ctx: Context, finding_id: int) -> bool:
    """Synchronous `refresh_finding` for the CLI; False when Slack is off or nothing was posted."""
    client = make_client(ctx.settings)
    if client is None:
        return False
    return run_coroutine(lambda: refresh_finding(ctx, client, finding_id))
