"""Block Kit builders: pure functions from stored findings to Slack messages, and Slack's limits.

Words come from `prompts/slack/*.j2` and `prompts/digest/*.j2`; numbers are
formatted by `bot.wording`. Nothing here talks to Slack or the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.wording import plan_diff, render
from engine.catalog import default_catalog
from store.findings import OPEN, FindingRow

APPROVE = "finding_approve"
DISMISS = "finding_dismiss"
EXPLAIN = "finding_explain"
REVERT = "finding_revert"
MAX_PLAN_LINES = 6
DISMISS_VIEW = "finding_dismiss_view"
DISMISS_REASONS = (("wrong", "Wrong"), ("planned", "Planned"), ("accepted_risk", "Accepted risk"))

# Slack's documented limits (api.slack.com/reference/block-kit).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_TEXT = 75
MAX_FALLBACK_TEXT = 40_000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_PRIVATE_METADATA = 3000


@dataclass(frozen=True)
class Message:
    """A Slack message: fallback `text` (notifications, screen readers) and its blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for chat.postMessage / chat.update."""
        return {"text": self.text, "blocks": self.blocks}


def mrkdwn(text: str) -> dict[str, str]:
    """A mrkdwn text object, cut to Slack's section limit."""
    return {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}


def plain(text: str, limit: int = MAX_BUTTON_TEXT) -> dict[str, Any]:
    """A plain_text object."""
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict[str, Any]:
    """A section block of mrkdwn."""
    return {"type": "section", "text": mrkdwn(text)}


def context(text: str) -> dict[str, Any]:
    """A context block with one mrkdwn element."""
    return {"type": "context", "elements": [mrkdwn(text)]}


def sections(
    text: str, limit: int = MAX_SECTION_TEXT, max_blocks: int = 40
) -> list[dict[str, Any]]:
    """Long text as consecutive sections, split on line ends, each within Slack's limit."""
    chunks: list[str] = []
    current = ""
    for whole in text.splitlines():
        # A single line longer than a section is cut into pieces of its own.
        pieces = [whole[i : i + limit] for i in range(0, len(whole), limit)] or [""]
        for line in pieces:
            candidate = f"{current}\n{line}" if current else line
            if len(candidate) > limit:
                chunks.append(current)
                current = line
            else:
                current = candidate
    if current.strip():
        chunks.append(current)
    if len(chunks) > max_blocks:
        chunks = [*chunks[: max_blocks - 1], "… (cut to fit Slack; run `steward explain` for all)"]
    return [section(chunk) for chunk in chunks if chunk.strip()]


def mention(actor: str | None) -> str:
    """How a decider is named: `<@U123>` for Slack users, `alice (CLI)` for `cli:alice`."""
    if not actor:
        return "someone"
    if actor.startswith("cli:"):
        return f"{actor[4:]} (CLI)"
    return f"<@{actor}>"


def when(moment: datetime | None) -> str:
    """`2025-06-02 14:02 UTC`."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _label(gpu_id: str | None) -> str | None:
    """The `nvidia.com/gpu.product` label of a catalog GPU, or the id itself."""
    if not gpu_id:
        return None
    spec = default_catalog().gpu(gpu_id)
    return spec.product_label if spec is not None else gpu_id


def _finding_vars(row: FindingRow) -> dict[str, Any]:
    return {
        "public_id": row.public_id,
        "rule": row.rule,
        "monthly": row.monthly_usd,
        "cluster": row.cluster,
        "subject": row.subject,
        "confidence": row.confidence,
        "kind": row.kind,
        "status": row.status,
    }


def proposed_change(row: FindingRow) -> str:
    """The exact change a finding proposes, in one line."""
    rec = dict(row.recommendation or {})
    params = dict(rec.get("params") or {})
    return render(
        "slack/change.j2",
        rec=rec,
        params=params,
        current_label=_label(params.get("current_gpu")) or "the current GPU",
        target_label=_label(rec.get("target_gpu")),
        **_finding_vars(row),
    )


def status_line(row: FindingRow) -> str:
    """Who decided and when, or that the finding resolved itself."""
    return render(
        "slack/status.j2",
        status=row.status,
        who=mention(row.decided_by),
        at=when(row.decided_at if row.decided_at else row.resolved_at or row.updated_at),
        until=when(row.snoozed_until),
        reason=row.decision_reason,
        audit_seq=row.audit_seq,
        actuated_at=when(row.actuated_at),
        outcome=row.outcome,
        outcome_at=when(row.outcome_at),
        realised=row.realised_usd,
    )


def _buttons(row: FindingRow) -> dict[str, Any]:
    value = row.public_id
    return {
        "type": "actions",
        "block_id": f"decide:{row.public_id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE,
                "text": plain("Approve"),
                "style": "primary",
                "value": value,
                "confirm": {
                    "title": plain("Approve this change?", 100),
                    "text": mrkdwn(render("slack/confirm.j2", change=proposed_change(row))),
                    "confirm": plain("Approve", 30),
                    "deny": plain("Cancel", 30),
                },
            },
            {"type": "button", "action_id": DISMISS, "text": plain("Dismiss"), "value": value},
            {"type": "button", "action_id": EXPLAIN, "text": plain("Explain"), "value": value},
        ],
    }


def _revertible(row: FindingRow) -> bool:
    return (
        row.status == "actuated"
        and row.outcome != "reverted"
        and (row.plan or {}).get("mode") == "patch"
    )


def _revert_button(row: FindingRow) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"revert:{row.public_id}",
        "elements": [
            {
                "type": "button",
                "action_id": REVERT,
                "text": plain("Revert"),
                "style": "danger",
                "value": row.public_id,
                "confirm": {
                    "title": plain("Revert this change?", 100),
                    "text": mrkdwn(render("slack/revert_confirm.j2", lines=plan_diff(row.plan))),
                    "confirm": plain("Revert", 30),
                    "deny": plain("Cancel", 30),
                },
            }
        ],
    }


def finding_message(row: FindingRow) -> Message:
    """The top-level message of a finding: figure, rule, where, confidence, change, buttons."""
    variables = _finding_vars(row)
    blocks: list[dict[str, Any]] = [
        section(render("slack/title.j2", **variables)),
        context(render("slack/context.j2", **variables)),
        section(row.summary),
        section(proposed_change(row)),
    ]
    diff = plan_diff(row.plan)
    if diff:
        shown = diff[:MAX_PLAN_LINES]
        more = len(diff) - len(shown)
        blocks.append(context(render("slack/plan.j2", lines=shown, more=more)))
    if row.status == OPEN:
        blocks.append(_buttons(row))
    else:
        blocks.append(context(status_line(row)))
        if _revertible(row):
            blocks.append(_revert_button(row))
    return Message(clip(render("slack/fallback.j2", **variables), 3000), blocks)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def evidence_message(row: FindingRow) -> Message:
    """The thread reply under a finding: the facts and figures it rests on."""
    evidence = dict(row.evidence or {})
    raw_facts = evidence.pop("facts", {}) or {}
    facts = [
        (key, _json_text(item.get("value")), item.get("confidence") or item.get("dataConfidence"))
        if isinstance(item, Mapping)
        else (key, _json_text(item), None)
        for key, item in sorted(raw_facts.items())
    ]
    figures = [(key, _json_text(value)) for key, value in sorted(evidence.items())]
    text = render(
        "slack/evidence.j2",
        public_id=row.public_id,
        summary=row.summary,
        facts=facts,
        figures=figures,
    )
    return Message(f"Evidence for {row.public_id}", sections(text, max_blocks=MAX_BLOCKS))


def dismiss_modal(row: FindingRow, private_metadata: str) -> dict[str, Any]:
    """The Dismiss form: a reason (wrong, planned, accepted risk) and optional snooze days."""
    return {
        "type": "modal",
        "callback_id": DISMISS_VIEW,
        "private_metadata": private_metadata[:MAX_PRIVATE_METADATA],
        "title": plain(f"Dismiss {row.public_id}", 24),
        "submit": plain("Dismiss", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            section(render("slack/dismiss_intro.j2", **_finding_vars(row))),
            {
                "type": "input",
                "block_id": "reason",
                "label": plain("Reason", 2000),
                "element": {
                    "type": "static_select",
                    "action_id": "reason",
                    "options": [
                        {"text": plain(text), "value": value} for value, text in DISMISS_REASONS
                    ],
                },
            },
            {
                "type": "input",
                "block_id": "snooze",
                "optional": True,
                "label": plain("Snooze for days (empty: dismiss for good)", 2000),
                "element": {
                    "type": "number_input",
                    "action_id": "days",
                    "is_decimal_allowed": False,
                    "min_value": "1",
                    "max_value": "365",
                },
            },
        ],
    }


def text_message(text: str) -> Message:
    """A plain reply: the text in sections (slash command answers, notices)."""
    return Message(clip(text, 3000), sections(text, max_blocks=MAX_BLOCKS))


def findings_list(rows: Sequence[FindingRow], cluster: str | None, limit: int = 15) -> Message:
    """`/steward findings`: the largest open findings, one line each."""
    lines = [
        render(
            "slack/findings_line.j2",
            change=proposed_change(row),
            **_finding_vars(row),
        )
        for row in rows[:limit]
    ]
    text = render(
        "slack/findings.j2", lines=lines, cluster=cluster, total=len(rows), shown=len(lines)
    )
    return text_message(text)


def check_limits(message: Message | Mapping[str, Any]) -> list[str]:
    """Every way a message or view breaks Slack's limits; empty when it is fine."""
    if isinstance(message, Message):
        problems = []
        if not message.text.strip():
            problems.append("no fallback text")
        if len(message.text) > MAX_FALLBACK_TEXT:
            problems.append("fallback text too long")
        return problems + _check_blocks(message.blocks)
    problems = _check_blocks(list(message.get("blocks", [])))
    if len(str(message.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
        problems.append("private_metadata too long")
    return problems


def _check_blocks(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    for index, block in enumerate(blocks):
        where = f"block {index} ({block.get('type')})"
        kind = block.get("type")
        text = block.get("text")
        if kind == "section":
            if isinstance(text, Mapping) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT:
                problems.append(f"{where}: text > {MAX_SECTION_TEXT}")
            if isinstance(text, Mapping) and not str(text.get("text", "")).strip():
                problems.append(f"{where}: empty text")
            fields = block.get("fields", [])
            if len(fields) > MAX_FIELDS:
                problems.append(f"{where}: {len(fields)} fields > {MAX_FIELDS}")
            problems += [
                f"{where}: field > {MAX_FIELD_TEXT}"
                for item in fields
                if len(str(item.get("text", ""))) > MAX_FIELD_TEXT
            ]
        elif kind == "header" and isinstance(text, Mapping):
            if len(str(text.get("text", ""))) > MAX_HEADER_TEXT:
                problems.append(f"{where}: header > {MAX_HEADER_TEXT}")
        elif kind == "context" and len(block.get("elements", [])) > MAX_CONTEXT_ELEMENTS:
            problems.append(f"{where}: more than {MAX_CONTEXT_ELEMENTS} elements")
        elif kind == "actions":
            elements = block.get("elements", [])
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                problems.append(f"{where}: more than {MAX_ACTIONS_ELEMENTS} elements")
            problems += _check_buttons(where, elements)
    return problems


def _check_buttons(where: str, elements: Iterable[Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    for element in elements:
        if element.get("type") != "button":
            continue
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append(f"{where}: button value > {MAX_BUTTON_VALUE}")
        if len(str(element.get("text", {}).get("text", ""))) > MAX_BUTTON_TEXT:
            problems.append(f"{where}: button text > {MAX_BUTTON_TEXT}")
        if len(str(element.get("action_id", ""))) > 255:
            problems.append(f"{where}: action_id > 255")
    return problems
