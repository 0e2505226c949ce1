"""A finding's detailed explanation: always from a template, reworded by an LLM when configured."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.context import Context
from bot.wording import finding_context, render, summary
from engine.findings import Finding, Recommendation
from engine.units import HOURS_PER_MONTH
from store.db import transaction
from store.findings import FindingRow, get_finding


class UnknownFinding(LookupError):
    """No finding has this id; the message says where to find the ids."""

    def __init__(self, finding_id: int) -> None:
        super().__init__(f"no finding F-{finding_id}; `steward findings --all` lists every id")
        self.finding_id = finding_id


@dataclass
class Explanation:
    """What to show: the text, who drafted it (None: the template), and the template's text."""

    text: str
    drafted_by: str | None
    template_text: str
    rejected_reason: str | None


def as_finding(row: FindingRow) -> Finding:
    """The engine's view of a stored finding, so templates see one shape for both."""
    return Finding(
        rule=row.rule,
        level=row.level,
        cluster=row.cluster,
        subject=row.subject,
        monthly_usd=float(row.monthly_usd),
        kind=row.kind,
        confidence=row.confidence,
        evidence=row.evidence,
        recommendation=Recommendation.model_validate(row.recommendation),
    )


def render_detailed(item: FindingRow | Finding) -> str:
    """The detailed explanation from `prompts/explain/<rule>.j2` (template only, no I/O)."""
    finding_id: str | None = None
    status: str | None = None
    if isinstance(item, FindingRow):
        finding_id, status = item.public_id, item.status
        finding = as_finding(item)
    else:
        finding = item
    return render(
        f"explain/{finding.rule}.j2",
        **finding_context(finding),
        finding_id=finding_id,
        status=status,
        summary_text=summary(finding),
        hours_per_month=HOURS_PER_MONTH,
    )


@dataclass(frozen=True)
class _Loaded:
    finding: Finding
    fingerprint: str
    template_text: str


def _load(ctx: Context, finding_id: int) -> _Loaded:
    with transaction(ctx.sessions) as session:
        row = get_finding(session, finding_id)
        if row is None:
            raise UnknownFinding(finding_id)
        return _Loaded(as_finding(row), row.fingerprint, render_detailed(row))


def explain(ctx: Context, finding_id: int, *, use_llm: bool = True) -> Explanation:
    """The detailed explanation of finding `finding_id`; raises UnknownFinding for a bad id."""
    loaded = _load(ctx, finding_id)
    return Explanation(loaded.template_text, None, loaded.template_text, None)


async def explain_async(ctx: Context, finding_id: int, *, use_llm: bool = True) -> Explanation:
    """`explain` off the event loop, for the Slack handlers."""
    return await asyncio.to_thread(explain, ctx, finding_id, use_llm=use_llm)


def drafted_footer(model: str) -> str:
    """The line that says an LLM drafted the text above it."""
    return render("explain/drafted_by.j2", model=model)
