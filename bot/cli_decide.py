"""`steward approve`, `steward dismiss` and `steward digest`: the Slack paths, from a terminal."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from bot.console import fail, opened
from bot.decisions import Decision, decide_finding
from bot.digest import build_digest, digest_text, post_digest
from bot.notify import refresh_finding_now, run_coroutine
from bot.slack.client import make_client
from bot.wording import render
from store.db import utcnow
from store.decisions import DecisionRequest, Verdict
from store.findings import parse_id

FindingArg = Annotated[str, typer.Argument(metavar="ID", help="Finding id: F-12 or 12.")]
AsUser = Annotated[
    str, typer.Option("--as", metavar="USER", help="Who decides; recorded as cli:USER.")
]


def _who(actor: str | None) -> str:
    if not actor:
        return "someone"
    return f"{actor[4:]} (CLI)" if actor.startswith("cli:") else f"Slack user {actor}"


def _decide(
    finding: str, verdict: Verdict, user: str, reason: str | None, days: int | None
) -> None:
    finding_id = parse_id(finding)
    if finding_id is None:
        fail(f"'{finding}' is not a finding id; use F-12 or 12 (`steward findings` lists them)")
    request = DecisionRequest(
        finding_id,
        verdict,
        actor=f"cli:{user}",
        reason=reason,
        snooze_until=utcnow() + timedelta(days=days) if days else None,
        origin={"slack_user": None, "team": None, "channel": None, "message_ts": None},
    )
    with opened() as ctx:
        decision: Decision = decide_finding(ctx, request, check_approver=False)
        # The Slack message follows the decision when Slack is configured.
        if decision.won and refresh_finding_now(ctx, finding_id):
            typer.echo("Slack message updated.")
    row = decision.finding
    typer.echo(
        render(
            "slack/decision_reply.j2",
            status=decision.status,
            public_id=f"F-{finding_id}",
            finding_status=row.status if row else None,
            cluster=row.cluster if row else None,
            who=_who(row.decided_by if row else None),
            at=row.decided_at.strftime("%Y-%m-%d %H:%M UTC") if row and row.decided_at else "",
            audit_seq=decision.audit_seq,
            user=user,
        )
    )
    if not decision.won:
        raise typer.Exit(1)


def approve_command(finding: FindingArg, as_user: AsUser) -> None:
    """Approve a finding (the Slack Approve button's path)."""
    _decide(finding, "approve", as_user, None, None)


def dismiss_command(
    finding: FindingArg,
    as_user: AsUser,
    reason: Annotated[str, typer.Option(help="Why: e.g. wrong, planned, accepted risk.")],
    snooze_days: Annotated[
        int | None,
        typer.Option(min=1, max=365, help="Snooze for this many days instead of for good."),
    ] = None,
) -> None:
    """Dismiss a finding, or snooze it for some days (the Slack Dismiss form's path)."""
    _decide(finding, "snooze" if snooze_days else "dismiss", as_user, reason, snooze_days)


def digest_command(
    post: Annotated[
        bool, typer.Option("--post", help="Also post it to STEWARD_DIGEST_CHANNEL.")
    ] = False,
) -> None:
    """Render the weekly digest now (and post it with --post)."""
    with opened() as ctx:
        digest = build_digest(ctx, utcnow())
        typer.echo(digest_text(digest))
        if not post:
            return
        client, channel = make_client(ctx.settings), ctx.settings.digest_channel
        if client is None or channel is None:
            fail("set SLACK_BOT_TOKEN and STEWARD_DIGEST_CHANNEL to post the digest")
        run_coroutine(lambda: post_digest(ctx, client, digest, channel))
    typer.echo(f"Posted the digest and its chart to {channel}.")
