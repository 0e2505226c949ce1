"""Words shown to people: Jinja2 templates from `prompts/`, numbers formatted in one place."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from engine.findings import Finding
from store.findings import FindingRow


def usd(value: float | int | str) -> str:
    """`$3,200` for whole-dollar scale figures, `$0.81` below ten dollars."""
    amount = float(value)
    if abs(amount) < 10:
        return f"${amount:,.2f}"
    return f"${amount:,.0f}"


def usd_month(value: float | int | str) -> str:
    """`$3,200/month`."""
    return f"{usd(value)}/month"


def usd_hour(value: float | int | str) -> str:
    """`$6.88/h` — GPU-hour prices keep their cents."""
    return f"${float(value):,.3g}/h" if float(value) < 1 else f"${float(value):,.2f}/h"


def gb(value: float | int) -> str:
    """`14.5 GB` (10^9 bytes)."""
    return f"{float(value):,.1f} GB"


def tok_s(value: float | int) -> str:
    """`62 tok/s`."""
    return f"{float(value):,.0f} tok/s"


def tokens(value: float | int) -> str:
    """`15,879 tokens`."""
    return f"{math.floor(float(value)):,} tokens"


def pct(value: float | int) -> str:
    """`34 %` — integers stay integers, fractions keep one decimal."""
    number = float(value)
    return f"{number:.0f} %" if number.is_integer() else f"{number:.1f} %"


def num(value: float | int | str) -> str:
    """`7,248,023,552`, `14.5`, `0.9`: whole numbers with separators, fractions to 4 digits."""
    number = float(value)
    if number.is_integer() or abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.4g}"


def share(value: float | int) -> str:
    """A fraction as a percentage: `0.2` → `20 %`."""
    return pct(round(float(value) * 100, 1))


def ms(value: float | int) -> str:
    """`2,400 ms`."""
    return f"{num(value)} ms"


def seconds(value: float | int) -> str:
    """`240 s`."""
    return f"{num(value)} s"


def fact_value(value: Any) -> str:
    """A fact's value as reported: numbers with separators, lists joined."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return num(value)
    if isinstance(value, list | tuple):
        return ", ".join(fact_value(item) for item in value)
    return str(value)


def name(workload_id: str) -> str:
    """The last segment of a workload id: `ns/chat/deployment/x` → `x`."""
    return workload_id.rsplit("/", 1)[-1]


FILTERS = {
    "usd": usd,
    "usd_month": usd_month,
    "usd_hour": usd_hour,
    "gb": gb,
    "tok_s": tok_s,
    "tokens": tokens,
    "pct": pct,
    "name": name,
    "num": num,
    "share": share,
    "ms": ms,
    "seconds": seconds,
    "fact_value": fact_value,
}


@cache
def environment() -> Environment:
    """The one Jinja2 environment: strict, so a missing field fails in tests."""
    env = Environment(
        loader=PackageLoader("prompts", ""),
        undefined=StrictUndefined,
        autoescape=False,  # plain text and Slack mrkdwn, never HTML  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates ship with the package; no stat() on every render
    )
    env.filters.update(FILTERS)
    return env


def render(template: str, **context: Any) -> str:
    """Render `prompts/<template>` with `context`."""
    return environment().get_template(template).render(**context).strip()


def _fact_reader(evidence: dict[str, Any]) -> Any:
    facts = evidence.get("facts", {})

    def fact(key: str) -> Any:
        if key not in facts:
            raise KeyError(f"evidence has no fact {key!r}")
        return facts[key]["value"]

    return fact


def finding_context(finding: Finding) -> dict[str, Any]:
    """What every finding template sees: `f`, `evidence`, `rec` and `fact(key)`."""
    return {
        "f": finding,
        "evidence": finding.evidence,
        "rec": finding.recommendation,
        "fact": _fact_reader(finding.evidence),
    }


def summary(finding: Finding) -> str:
    """The one-line summary of a finding, from `prompts/summary/<rule>.j2`."""
    return " ".join(render(f"summary/{finding.rule}.j2", **finding_context(finding)).split())


def plan_diff(plan: dict[str, Any] | None) -> list[str]:
    """An action plan as readable lines, one per changed field (or its runbook)."""
    if not plan:
        return []
    if plan.get("mode") != "patch":
        return [render("plan/runbook.j2", runbook=plan.get("runbook") or "manual")]
    return [
        render("plan/change.j2", target=target, change=change)
        for target in plan.get("targets", [])
        for change in target.get("changes", [])
    ]


def finding_json(row: FindingRow) -> dict[str, Any]:
    """A stored finding as `steward findings --json` and `GET /v1/findings` show it."""
    return {**row.as_json(), "plan_diff": plan_diff(row.plan)}
