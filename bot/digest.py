"""The weekly digest: spend, open and realised savings, the week's decisions, a chart.

`build_digest` gathers plain data; `digest_message` (Block Kit) and
`digest_text` (terminal) present it; `chart_png` draws spend against open
savings per cluster; `post_weekly_digest` posts it all to STEWARD_DIGEST_CHANNEL.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.blocks import Message, context, section, sections
from bot.context import Context
from bot.pipeline import snapshot
from bot.slack.client import make_client
from bot.wording import render
from engine.catalog import default_catalog
from engine.evaluate import build_view
from engine.findings import Finding, savings_total
from engine.rules.context import Env, spend
from engine.rules.node import unallocated_gpus
from engine.units import HOURS_PER_MONTH, cents
from store.audit import AuditRecord
from store.db import reading, utcnow
from store.facts import fleet_facts
from store.findings import OPEN, FindingRow, list_findings

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
TOP = 5
DECISION_ACTIONS = ("finding.approved", "finding.dismissed", "finding.snoozed")


@dataclass(frozen=True)
class ClusterFigures:
    """One cluster's monthly GPU spend and open savings (each dollar once)."""

    cluster: str
    spend_usd: float
    open_savings_usd: float


@dataclass(frozen=True)
class RuleFigures:
    """Open savings of one rule (each dollar once within the rule) and its finding count."""

    rule: str
    open_savings_usd: float
    findings: int


@dataclass(frozen=True)
class WeekDecision:
    """A decision taken this week, from the audit log."""

    finding: str
    action: str
    actor: str
    rule: str
    monthly_usd: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class TopFinding:
    """One of the largest open findings."""

    finding: str
    rule: str
    cluster: str | None
    subject: str
    monthly_usd: float


@dataclass(frozen=True)
class Digest:
    """Everything the weekly digest says, as plain data."""

    now: datetime
    since: datetime
    clusters: list[ClusterFigures]
    by_rule: list[RuleFigures]
    spend_usd: float
    open_savings_usd: float
    approvals: list[WeekDecision]
    dismissals: list[WeekDecision]
    realised_usd: float
    verified_changes: int
    top: list[TopFinding]


def _cluster_of(resource: str, finding: Finding) -> str:
    cluster, sep, _ = resource.partition("|")
    return cluster if sep else finding.cluster or "fleet"


def _savings_by_cluster(findings: list[Finding]) -> dict[str, float]:
    """Open savings per cluster; the per-cluster figures add up to the fleet total."""
    clusters = {_cluster_of(claim.resource, f) for f in findings for claim in f.claims} | {
        f.cluster or "fleet" for f in findings if not f.claims
    }
    result: dict[str, float] = {}
    for cluster in clusters:
        # Each finding restricted to its claims on this cluster: savings_total then
        # keeps the largest claim per resource, as it does fleet-wide.
        scoped = [
            f.model_copy(
                update={"claims": [c for c in f.claims if _cluster_of(c.resource, f) == cluster]}
            )
            for f in findings
            if any(_cluster_of(c.resource, f) == cluster for c in f.claims)
        ] + [f for f in findings if not f.claims and (f.cluster or "fleet") == cluster]
        result[cluster] = savings_total(scoped)
    return result


def _spend_by_cluster(ctx: Context, now: datetime) -> dict[str, float]:
    """Monthly GPU spend per cluster (served models and idle GPUs), from facts and price book."""
    with reading(ctx.sessions) as session:
        facts = fleet_facts(session, now, timedelta(hours=ctx.settings.fact_ttl_hours))
    env = Env.create(default_catalog(), ctx.prices, ctx.thresholds, ctx.constants)
    view = build_view(snapshot(facts), env)
    totals: dict[str, float] = {cluster.name: 0.0 for cluster in facts}
    for workload in view.by_role["model"]:
        money, _gap = spend(workload, "digest")
        if money is not None:
            totals[workload.cluster] += money.monthly_usd
    # GPUs no pod holds cost money too; allocated ones are already in the models' spend.
    for node in view.by_role["node"]:
        reader = node.reader()
        idle = unallocated_gpus(reader)
        gpu = node.gpu_spec(reader.text("hardware.gpuType"))
        price = ctx.prices.price(gpu.id) if gpu is not None else None
        if idle and idle > 0 and price is not None:
            totals[node.cluster] += idle * price * HOURS_PER_MONTH
    return {name: cents(value) for name, value in totals.items()}


def _decisions(ctx: Context, since: datetime) -> list[WeekDecision]:
    found = []
    with reading(ctx.sessions) as session:
        records = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.action.in_(DECISION_ACTIONS), AuditRecord.ts >= since)
            .order_by(AuditRecord.seq)
        )
        for record in records:
            body = json.loads(record.body)
            found.append(
                WeekDecision(
                    finding=str(body.get("finding", record.subject)),
                    action=record.action.rsplit(".", 1)[-1],
                    actor=record.actor,
                    rule=str(body.get("rule", "")),
                    monthly_usd=str(body.get("monthly_usd", "0")),
                    reason=body.get("reason"),
                    at=record.ts,
                )
            )
    return found


def build_digest(ctx: Context, now: datetime) -> Digest:
    """The digest as of `now`: the week is the seven days before it."""
    since = now - WEEK
    # Rows are turned into plain data inside the read: it ends with a rollback.
    with reading(ctx.sessions) as session:
        open_rows = list_findings(session)
        open_findings = [row.to_engine() for row in open_rows if row.status == OPEN]
        top = [
            TopFinding(row.public_id, row.rule, row.cluster, row.subject, float(row.monthly_usd))
            for row in open_rows[:TOP]
        ]
        realised = [
            row.realised_usd or Decimal(0)
            for row in session.scalars(
                select(FindingRow).where(FindingRow.realised_usd.is_not(None))
            )
        ]
    spend_by = _spend_by_cluster(ctx, now)
    savings_by = _savings_by_cluster(open_findings)
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for finding in open_findings:
        if finding.kind == "savings":
            by_rule[finding.rule].append(finding)
    decisions = _decisions(ctx, since)
    names = sorted(set(spend_by) | set(savings_by))
    return Digest(
        now=now,
        since=since,
        clusters=[
            ClusterFigures(name, spend_by.get(name, 0.0), savings_by.get(name, 0.0))
            for name in names
        ],
        by_rule=sorted(
            (
                RuleFigures(rule, savings_total(items), len(items))
                for rule, items in by_rule.items()
            ),
            key=lambda r: (-r.open_savings_usd, r.rule),
        ),
        spend_usd=cents(sum(spend_by.values())),
        open_savings_usd=savings_total(open_findings),
        approvals=[d for d in decisions if d.action == "approved"],
        dismissals=[d for d in decisions if d.action != "approved"],
        realised_usd=float(sum(realised, Decimal(0))),
        verified_changes=len(realised),
        top=top,
    )


def _parts(digest: Digest) -> list[str]:
    """The digest's paragraphs, in mrkdwn."""
    variables = {"d": digest, "day": digest.now.strftime("%Y-%m-%d")}
    return [
        render("digest/spend.j2", **variables),
        render("digest/savings.j2", **variables),
        render("digest/decisions.j2", **variables),
        render("digest/top.j2", **variables),
    ]


def digest_message(digest: Digest) -> Message:
    """The digest as a Slack message."""
    title = render("digest/title.j2", d=digest, day=digest.now.strftime("%Y-%m-%d"))
    blocks = [section(title)]
    for part in _parts(digest):
        blocks.append({"type": "divider"})
        blocks.extend(sections(part, max_blocks=10))
    blocks.append(context(render("digest/footer.j2", d=digest)))
    return Message(title.replace("*", ""), blocks)


def digest_text(digest: Digest) -> str:
    """The digest for a terminal."""
    title = render("digest/title.j2", d=digest, day=digest.now.strftime("%Y-%m-%d"))
    return "\n\n".join([title, *_parts(digest)]).replace("*", "")


def chart_png(digest: Digest) -> bytes:
    """A PNG bar chart: monthly GPU spend against open savings, per cluster."""
    names = [c.cluster for c in digest.clusters] or ["(no clusters)"]
    spend_values = [c.spend_usd for c in digest.clusters] or [0.0]
    savings_values = [c.open_savings_usd for c in digest.clusters] or [0.0]
    # The object API with its own canvas: no pyplot global state, safe off the main thread.
    figure = Figure(figsize=(max(6.0, 1.4 * len(names) + 2), 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = range(len(names))
    width = 0.4
    axes.bar([p - width / 2 for p in positions], spend_values, width, label="GPU spend")
    axes.bar([p + width / 2 for p in positions], savings_values, width, label="Open savings")
    axes.set_xticks(list(positions), names, rotation=20, ha="right")
    axes.set_ylabel("USD per month")
    axes.set_title(render("digest/chart_title.j2", day=digest.now.strftime("%Y-%m-%d")))
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


async def post_digest(ctx: Context, client: AsyncWebClient, digest: Digest, channel: str) -> str:
    """Post the digest and upload its chart to `channel`; return the message ts."""
    reply = await client.chat_postMessage(channel=channel, **digest_message(digest).as_kwargs())
    png = await asyncio.to_thread(chart_png, digest)
    day = digest.now.strftime("%Y-%m-%d")
    await client.files_upload_v2(
        channel=str(reply["channel"]),
        file=png,
        filename=f"steward-digest-{day}.png",
        title=render("digest/chart_title.j2", day=day),
        alt_txt=render("digest/chart_alt.j2", d=digest),
    )
    return str(reply["ts"])


async def post_weekly_digest(ctx: Context, client: AsyncWebClient | None = None) -> None:
    """Build and post the weekly digest (the scheduler's Monday job); quiet when Slack is off."""
    client = client or make_client(ctx.settings)
    channel = ctx.settings.digest_channel
    if client is None or channel is None:
        log.info("weekly digest skipped: set SLACK_BOT_TOKEN and STEWARD_DIGEST_CHANNEL to post it")
        return
    digest = await asyncio.to_thread(build_digest, ctx, utcnow())
    await post_digest(ctx, client, digest, channel)
