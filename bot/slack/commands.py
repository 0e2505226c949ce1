"""`/steward` subcommands: parse the text, do the work, answer with an ephemeral message."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk.web.async_client import AsyncWebClient

from bot import clusters as cluster_registry
from bot.blocks import (
    Message,
    evidence_message,
    findings_list,
    mention,
    text_message,
    when,
)
from bot.context import Context
from bot.decisions import Decision, decide_finding
from bot.notify import update_message
from bot.wording import render
from store.audit import verify
from store.db import transaction, utcnow
from store.decisions import DecisionRequest
from store.findings import FindingRow, get_finding, list_findings, parse_id

log = logging.getLogger(__name__)

MAX_SNOOZE_DAYS = 365


@dataclass(frozen=True)
class Caller:
    """Who typed the command, and where."""

    user: str
    team: str | None = None
    channel: str | None = None

    def origin(self, message_ts: str | None = None) -> dict[str, str | None]:
        """The origin fields of an audit record."""
        return {
            "slack_user": self.user,
            "team": self.team,
            "channel": self.channel,
            "message_ts": message_ts,
        }


def usage(problem: str | None = None) -> Message:
    """The list of subcommands, after what was wrong with the last one."""
    return text_message(render("slack/help.j2", problem=problem))


def decision_reply(decision: Decision, finding_id: int, user: str) -> Message:
    """What the person who clicked or typed is told about their decision."""
    row = decision.finding
    return text_message(
        render(
            "slack/decision_reply.j2",
            status=decision.status,
            public_id=row.public_id if row else f"F-{finding_id}",
            finding_status=row.status if row else None,
            cluster=row.cluster if row else None,
            who=mention(row.decided_by if row else None),
            at=when(row.decided_at) if row else "",
            audit_seq=decision.audit_seq,
            user=user,
        )
    )


async def explanation(ctx: Context, finding_id: int) -> Message:
    """A finding's explanation: `bot.explain` when present, else its summary and evidence."""
    row = await asyncio.to_thread(_finding, ctx, finding_id)
    if row is None:
        return decision_reply(Decision("not_found", None), finding_id, "")
    try:
        from bot import explain as explainer  # written alongside; optional until it lands
    except ImportError:
        return evidence_message(row)
    try:
        result = await asyncio.to_thread(explainer.explain, ctx, finding_id)
        if inspect.isawaitable(result):
            result = await result
    except Exception:  # an explanation that cannot be drafted still leaves the evidence
        log.exception("explaining F-%s failed; answering with its evidence", finding_id)
        return evidence_message(row)
    text = render(
        "slack/explanation.j2",
        public_id=row.public_id,
        text=result.text,
        drafted_by=getattr(result, "drafted_by", None),
    )
    return Message(f"Why {row.public_id}?", text_message(text).blocks)


def _finding(ctx: Context, finding_id: int) -> FindingRow | None:
    with transaction(ctx.sessions) as session:
        return get_finding(session, finding_id)


def _findings(ctx: Context, cluster: str | None) -> Message:
    with transaction(ctx.sessions) as session:
        rows = list_findings(session, cluster=cluster)
    return findings_list(rows, cluster)


def _clusters(ctx: Context) -> Message:
    rows = cluster_registry.list_clusters(ctx)
    return text_message(
        render(
            "slack/clusters.j2",
            clusters=[
                {
                    "name": row.name,
                    "provider": row.provider,
                    "region": row.region,
                    "key_status": row.key_status,
                    "last_facts": when(row.last_facts_at) or "never",
                }
                for row in rows
            ],
        )
    )


def _audit(ctx: Context) -> Message:
    with transaction(ctx.sessions) as session:
        report = verify(session)
    bad = report.first_bad
    return text_message(
        render(
            "slack/audit.j2",
            ok=report.ok,
            records=report.records,
            head=report.head_hash[:16],
            checkpoints=report.checkpoints,
            seq=bad.seq if bad else None,
            reason=bad.reason if bad else None,
            detail=bad.detail if bad else None,
        )
    )


def _digest(ctx: Context) -> Message:
    from bot.digest import build_digest, digest_message

    message: Message = digest_message(build_digest(ctx, utcnow()))
    return message


async def _snooze(
    ctx: Context, client: AsyncWebClient | None, caller: Caller, args: list[str]
) -> Message:
    finding_id = parse_id(args[0]) if args else None
    days = int(args[1]) if len(args) == 2 and args[1].isdigit() else None
    if len(args) != 2 or finding_id is None or days is None or not 1 <= days <= MAX_SNOOZE_DAYS:
        return usage(
            f"`snooze` needs a finding id and 1 to {MAX_SNOOZE_DAYS} days, e.g. `snooze F-12 14`."
        )
    request = DecisionRequest(
        finding_id,
        "snooze",
        actor=caller.user,
        reason=f"snoozed for {days} days",
        snooze_until=utcnow() + timedelta(days=days),
        origin=caller.origin(),
    )
    decision = await asyncio.to_thread(decide_finding, ctx, request, check_approver=True)
    if decision.won and client is not None and decision.finding is not None:
        await update_message(client, decision.finding)
    return decision_reply(decision, finding_id, caller.user)


async def run_command(
    ctx: Context, text: str, caller: Caller, client: AsyncWebClient | None = None
) -> Message:
    """Answer one `/steward …` command; bad input answers with usage, never an error."""
    words = text.split()
    name, args = (words[0].lower(), words[1:]) if words else ("help", [])
    if name == "help" and not args:
        return usage()
    if name == "findings" and len(args) <= 1:
        return await asyncio.to_thread(_findings, ctx, args[0] if args else None)
    if name == "explain" and len(args) == 1:
        finding_id = parse_id(args[0])
        if finding_id is None:
            return usage(f"`{args[0]}` is not a finding id; they look like `F-12`.")
        return await explanation(ctx, finding_id)
    if name == "clusters" and not args:
        return await asyncio.to_thread(_clusters, ctx)
    if name == "digest" and not args:
        return await asyncio.to_thread(_digest, ctx)
    if name == "audit" and [a.lower() for a in args] == ["verify"]:
        return await asyncio.to_thread(_audit, ctx)
    if name == "snooze":
        return await _snooze(ctx, client, caller, args)
    known = {"help", "findings", "explain", "clusters", "digest", "audit", "snooze"}
    problem = (
        f"`{text.strip()}` has the wrong arguments."
        if name in known
        else f"`{name}` is not a `/steward` command."
    )
    return usage(problem)


def caller_of(command: Mapping[str, object]) -> Caller:
    """The caller of a slash command payload."""
    return Caller(
        user=str(command.get("user_id") or ""),
        team=str(command.get("team_id")) if command.get("team_id") else None,
        channel=str(command.get("channel_id")) if command.get("channel_id") else None,
    )
