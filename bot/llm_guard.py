"""The guard on LLM text: every number and name it states must come from the evidence.

An answer may round and reformat (`$3,200/month` for 3200.32, `14.5 GB` for 14.496,
`62 tok/s` for 61.8, `81 %` for 0.8134, `$40k`), but a figure, GPU, model or cluster
that the evidence and the template text do not hold rejects the whole answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Technical words with digits that name no GPU, model, cluster or figure.
GENERIC_TOKENS = frozenset(
    {
        "fp8",
        "fp16",
        "fp32",
        "bf16",
        "int4",
        "int8",
        "p50",
        "p90",
        "p95",
        "p99",
        "k8s",
        "l1",
        "l2",
        "http2",
    }
)
# Decimal multipliers an answer may abbreviate figures with.
_MULTIPLIERS = {"k": 1e3, "K": 1e3, "M": 1e6}
# Parameter counts are written as "70B" for 70,553,706,496: allow the usual rounding.
_BILLIONS_TOLERANCE = 0.02
# Plain numbers (thousands separators optional), as people and templates write them.
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
# A word that mixes letters and digits, or a number with a unit glued on.
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.,_\-/|:]*")
_WITH_UNIT_RE = re.compile(rf"^(?P<number>{_NUMBER})(?P<mult>[kKM])?(?P<unit>[-/]?[A-Za-z/%]*)$")
_FREE_NUMBER_RE = re.compile(
    rf"(?<![\w.])(?P<number>{_NUMBER})(?:\s?(?P<mult>[kKM])\b)?(?P<pct>\s?%)?"
)
# Words next to "cluster": "the prod-west cluster", "cluster staging-eu".
_CLUSTER_RES = (
    re.compile(r"\bclusters?\s+([A-Za-z0-9][\w.-]*)", re.IGNORECASE),
    re.compile(r"([A-Za-z0-9][\w.-]*)\s+clusters?\b", re.IGNORECASE),
)


@dataclass(frozen=True)
class Allowed:
    """What an answer may state: these numbers, this text, and no other known name."""

    numbers: tuple[float, ...]
    text: str
    names: frozenset[str]


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _parse(number: str) -> float:
    return float(number.replace(",", ""))


def allowed(data: Iterable[Any], texts: Iterable[str], known_names: Iterable[str]) -> Allowed:
    """What an answer may state, from the evidence (any JSON) and the texts it was given."""
    numbers: set[float] = set()
    strings: list[str] = list(texts)
    for item in data:
        for leaf in _leaves(item):
            if isinstance(leaf, bool) or leaf is None:
                continue
            if isinstance(leaf, int | float):
                if math.isfinite(leaf):
                    numbers.add(abs(float(leaf)))
            else:
                strings.append(str(leaf))
    for text in strings:
        numbers.update(_figures(text))
    names = {name.lower() for name in known_names if len(name) >= 3}
    return Allowed(tuple(sorted(numbers)), "\n".join(strings).lower(), frozenset(names))


def _figures(text: str) -> Iterator[float]:
    """The numbers a text states.

    Digits inside a word that starts with a letter belong to a name or a path
    ("H100", "Mistral-7B", "/tmp/run-95/prices.json"), not to a figure.
    """
    for match in _TOKEN_RE.finditer(text):
        word = match.group()
        if not word[0].isalpha():
            yield from (_parse(number) for number in _NUMBER_RE.findall(word))


def _decimals(number: str) -> int:
    return len(number.split(".", 1)[1]) if "." in number else 0


def _near(value: float, unit: float, allowed: Allowed, *, relative: float = 0.0) -> bool:
    # Half the last written digit: "14.5" stands for anything in [14.45, 14.55].
    slack = unit / 2 + 1e-9 * max(1.0, value)
    return any(
        abs(value - candidate) <= max(slack, relative * candidate) for candidate in allowed.numbers
    )


def _number_ok(number: str, mult: str | None, unit: str, allowed: Allowed) -> bool:
    value = _parse(number)
    step = 10.0 ** -_decimals(number)
    scale = _MULTIPLIERS.get(mult or "", 1.0)
    if unit in ("B", "b") and not mult:
        return _near(value * 1e9, step * 1e9, allowed, relative=_BILLIONS_TOLERANCE)
    if _near(value * scale, step * scale, allowed):
        return True
    # "81 %" for a fraction of 0.8134 in the evidence.
    return unit.endswith("%") and _near(value / 100, step / 100, allowed)


def unsupported(answer: str, allowed: Allowed) -> str | None:
    """Why `answer` states something the evidence does not hold, or None when it does not."""
    masked = answer
    for match in _TOKEN_RE.finditer(answer):
        token = match.group().rstrip(".,-/:|")
        if not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
            continue
        reason = _token_reason(token, allowed)
        if reason:
            return reason
        start = match.start()
        masked = masked[:start] + " " * len(token) + masked[start + len(token) :]
    for match in _FREE_NUMBER_RE.finditer(masked):
        number, mult = match.group("number"), match.group("mult")
        if not _number_ok(number, mult, "%" if match.group("pct") else "", allowed):
            return f"the figure {match.group().strip()} is not in the evidence"
    lowered = answer.lower()
    for name in sorted(allowed.names):
        if name not in allowed.text and re.search(
            rf"(?<![\w-]){re.escape(name)}(?![\w-])", lowered
        ):
            return f"the name {name!r} is not in the evidence"
    for pattern in _CLUSTER_RES:
        for match in pattern.finditer(answer):
            word = match.group(1).rstrip(".,-")
            looks_like_a_name = "-" in word or any(c.isdigit() for c in word)
            if looks_like_a_name and word.lower() not in allowed.text:
                return f"the cluster {word!r} is not in the evidence"
    return None


def _token_reason(token: str, allowed: Allowed) -> str | None:
    lowered = token.lower()
    if lowered in allowed.text or lowered in GENERIC_TOKENS:
        return None
    shaped = _WITH_UNIT_RE.match(token)
    if shaped:
        if _number_ok(shaped.group("number"), shaped.group("mult"), shaped.group("unit"), allowed):
            return None
        return f"the figure {token} is not in the evidence"
    return f"the name {token!r} is not in the evidence"
