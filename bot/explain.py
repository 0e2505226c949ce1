"""A finding's detailed explanation: always from a template, reworded by an LLM when configured."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import rfc8785
from sqlalchemy import select

from bot.context import Context
from bot.llm import ChatClient, LlmError, data_block
from bot.llm_guard import allowed, unsupported
from bot.wording import finding_context, render, summary
from engine.catalog import default_catalog
from engine.findings import Finding, Recommendation
from engine.units import HOURS_PER_MONTH
from store.db import transaction
from store.explanations import LlmCall, cached_answer
from store.findings import FindingRow, get_finding
from store.models import Cluster

log = logging.getLogger(__name__)

Audience = Literal["operator", "manager"]
# Word budgets the prompts give each audience: a thread reply, a digest paragraph.
MAX_WORDS: dict[Audience, int] = {"operator": 250, "manager": 120}
# Longer answers are refused: they cannot be the shorter, clearer text asked for.
MAX_ANSWER_CHARS = 4000
DIGEST_FINGERPRINT = "digest"


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
    public_id: str
    fingerprint: str
    template_text: str


def _load(ctx: Context, finding_id: int) -> _Loaded:
    with transaction(ctx.sessions) as session:
        row = get_finding(session, finding_id)
        if row is None:
            raise UnknownFinding(finding_id)
        return _Loaded(as_finding(row), row.public_id, row.fingerprint, render_detailed(row))


def evidence_hash(evidence: Any) -> str:
    """sha256 of the canonical JSON (RFC 8785) of `evidence`: equal on SQLite and PostgreSQL."""
    return hashlib.sha256(rfc8785.dumps(evidence)).hexdigest()


def explain(
    ctx: Context, finding_id: int, *, use_llm: bool = True, http: httpx.Client | None = None
) -> Explanation:
    """The detailed explanation of finding `finding_id`; raises UnknownFinding for a bad id.

    With `STEWARD_LLM_URL` set (and `use_llm`), an LLM rewords the template's text for
    the operator; its answer is shown only when the guard finds every figure and name
    in the evidence, and is cached per fingerprint and evidence hash.
    """
    loaded = _load(ctx, finding_id)
    if not use_llm or not ctx.settings.llm_url:
        return Explanation(loaded.template_text, None, loaded.template_text, None)
    finding = loaded.finding
    data = {
        "finding": {
            "id": loaded.public_id,
            "rule": finding.rule,
            "level": finding.level,
            "cluster": finding.cluster,
            "subject": finding.subject,
            "monthly_usd": finding.monthly_usd,
            "kind": finding.kind,
            "confidence": finding.confidence,
            "recommendation": finding.recommendation.model_dump(mode="json", exclude_none=True),
        },
        "evidence": finding.evidence,
        "draft": loaded.template_text,
    }
    return _drafted(
        ctx,
        audience="operator",
        fingerprint=loaded.fingerprint,
        hashed=finding.evidence,
        data=data,
        template_text=loaded.template_text,
        http=http,
    )


def manager_paragraph(
    ctx: Context, text: str, evidence: dict[str, Any], *, http: httpx.Client | None = None
) -> Explanation:
    """The digest's summary paragraph, reworded for a manager when an LLM is configured.

    `evidence` holds every figure `text` states; without an LLM, `text` is returned as is.
    """
    if not ctx.settings.llm_url:
        return Explanation(text, None, text, None)
    return _drafted(
        ctx,
        audience="manager",
        fingerprint=DIGEST_FINGERPRINT,
        # The paragraph is the input too: the same figures may be worded anew each week.
        hashed={"evidence": evidence, "text": text},
        data={"digest": evidence, "draft": text},
        template_text=text,
        http=http,
    )


async def explain_async(ctx: Context, finding_id: int, *, use_llm: bool = True) -> Explanation:
    """`explain` off the event loop, for the Slack handlers."""
    return await asyncio.to_thread(explain, ctx, finding_id, use_llm=use_llm)


def _known_names(ctx: Context) -> list[str]:
    """Names an answer must not bring in from outside its evidence: clusters and models."""
    with transaction(ctx.sessions) as session:
        names = list(session.scalars(select(Cluster.name)))
    for model in default_catalog().models():
        names.append(model.name)
        # The family ("llama", "qwen"): an answer may name a model without its size.
        family = "".join(char for char in model.name.split("-")[0] if char.isalpha())
        names.append(family)
    return names


def _drafted(
    ctx: Context,
    *,
    audience: Audience,
    fingerprint: str,
    hashed: Any,
    data: dict[str, Any],
    template_text: str,
    http: httpx.Client | None,
) -> Explanation:
    settings = ctx.settings
    assert settings.llm_url is not None
    model = settings.llm_model
    if not model:
        reason = "STEWARD_LLM_MODEL is not set; set it to the model the endpoint serves"
        log.warning("LLM explanation skipped: %s", reason)
        return Explanation(template_text, None, template_text, reason)
    digest = evidence_hash(hashed)
    with transaction(ctx.sessions) as session:
        cached = cached_answer(session, fingerprint, digest, audience, model)
        if cached is not None:
            return _shown(cached.text or "", cached.accepted, cached.reason, model, template_text)
    client = ChatClient(
        settings.llm_url,
        model,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_seconds=settings.llm_timeout_seconds,
        http=http,
    )
    call = LlmCall(fingerprint=fingerprint, evidence_hash=digest, audience=audience, model=model)
    try:
        answer = client.complete(_messages(audience, data))
    except LlmError as exc:
        call.accepted, call.reason, call.prompt_tokens, call.completion_tokens = (
            False,
            str(exc),
            0,
            0,
        )
        log.warning("LLM explanation for %s failed, template used: %s", fingerprint, exc)
    else:
        call.text = answer.text
        call.prompt_tokens, call.completion_tokens = answer.prompt_tokens, answer.completion_tokens
        call.reason = _rejection(answer.text, data, template_text, ctx)
        call.accepted = call.reason is None
        if call.reason is not None:
            log.warning("LLM explanation for %s rejected: %s", fingerprint, call.reason)
    with transaction(ctx.sessions) as session:
        session.add(call)
    return _shown(call.text or "", call.accepted, call.reason, model, template_text)


def _messages(audience: Audience, data: dict[str, Any]) -> list[dict[str, str]]:
    words = MAX_WORDS[audience]
    return [
        {"role": "system", "content": render(f"llm/{audience}_system.j2", max_words=words)},
        {"role": "user", "content": render(f"llm/{audience}_user.j2", data=data_block(data))},
    ]


def _rejection(answer: str, data: dict[str, Any], template_text: str, ctx: Context) -> str | None:
    if len(answer) > MAX_ANSWER_CHARS:
        return f"the answer is {len(answer)} characters, over {MAX_ANSWER_CHARS}"
    return unsupported(answer, allowed([data], [template_text], _known_names(ctx)))


def _shown(
    text: str, accepted: bool, reason: str | None, model: str, template_text: str
) -> Explanation:
    if not accepted:
        return Explanation(template_text, None, template_text, reason)
    shown = render("explain/drafted.j2", text=text, model=model)
    return Explanation(shown, model, template_text, None)
