"""`steward demo`: the whole loop on the bundled fleet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from bot.config import Settings
from bot.console import fail, out
from bot.context import ConfigError, Context
from bot.demo.run import run_demo
from bot.notify import post_finding
from bot.slack.client import make_client
from store.findings import FindingRow

Poster = Callable[[Context, FindingRow], None]


def slack_poster(configured: Settings) -> Poster:
    """Post the demo's top finding to the workspace the environment configures."""
    if configured.slack_bot_token is None or not configured.findings_channel:
        fail("`steward demo --slack` needs SLACK_BOT_TOKEN and STEWARD_FINDINGS_CHANNEL")

    def post(ctx: Context, row: FindingRow) -> None:
        ctx.settings.slack_bot_token = configured.slack_bot_token
        ctx.settings.findings_channel = configured.findings_channel
        ctx.settings.slack_api_url = configured.slack_api_url
        client = make_client(ctx.settings)
        if client is None:
            fail("Slack is not configured; set SLACK_BOT_TOKEN")
        ts = asyncio.run(post_finding(ctx, client, row))
        out.print(f"Posted {row.public_id} to {configured.findings_channel} (ts {ts}).")

    return post


def demo_command(
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: ./steward-demo.db, fresh).")
    ] = None,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo writes its files.")
    ] = Path("."),
    slack: Annotated[
        bool, typer.Option("--slack", help="Also post to the Slack workspace configured.")
    ] = False,
) -> None:
    """Run the whole loop on a bundled three-cluster fleet: no network, no credentials."""
    post = slack_poster(Settings()) if slack else None
    try:
        ok = run_demo(out, directory, db, post)
    except ConfigError as exc:
        fail(str(exc))
    if not ok:
        raise typer.Exit(1)
