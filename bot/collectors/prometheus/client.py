"""The HTTP side of a pull: instant queries to one Prometheus through an injected client.

`PrometheusCollector` sends the named queries of `build_queries` in a few
requests at once, and hands the answers, by name, to `map_facts`. Every way a
request can fail becomes a `PrometheusError` that says what to check.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from bot.collectors.prometheus.mapping import map_facts
from bot.collectors.prometheus.queries import (
    Series,
    Window,
    build_queries,
    combined,
    request_groups,
    split,
)

# `Series` is defined with the queries (`split` builds it) and re-exported here:
# it is what `instant_query` answers.
__all__ = ["PrometheusCollector", "PrometheusError", "Series", "instant_query"]


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; the message says what to check."""


async def instant_query(
    client: httpx.AsyncClient,
    base_url: str,
    query: str,
    at: datetime,
    *,
    request_timeout: float,
    token: str | None = None,
) -> list[Series]:
    """Run one instant query at `at`; NaN and infinite samples are left out."""
    url = base_url.rstrip("/") + "/api/v1/query"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # POSTed as a form, as Prometheus allows: long PromQL stays out of URLs and logs.
        response = await client.post(
            url,
            data={"query": query, "time": f"{at.timestamp():.3f}"},
            headers=headers,
            timeout=request_timeout,
        )
    except httpx.TimeoutException as exc:
        raise PrometheusError(
            f"Prometheus at {base_url} did not answer within {request_timeout:g}s; check that "
            "it is up, or raise STEWARD_PULL_REQUEST_TIMEOUT_SECONDS"
        ) from exc
    except httpx.HTTPError as exc:
        raise PrometheusError(
            f"cannot reach Prometheus at {base_url} ({type(exc).__name__}); check the URL with "
            "`steward cluster set NAME --prometheus-url URL`"
        ) from exc
    if response.status_code in (401, 403):
        raise PrometheusError(
            f"Prometheus at {base_url} refused the request ({response.status_code}); check the "
            "token file given with --prometheus-token-file"
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else response.text[:200]
        raise PrometheusError(
            f"Prometheus at {base_url} answered {response.status_code} to a query: {detail}"
        )
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus at {base_url} reported an error: {body.get('error')}")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError(
            f"Prometheus at {base_url} answered a {data.get('resultType')} where a vector "
            "was expected; is the URL a Prometheus-compatible query API?"
        )
    out: list[Series] = []
    for item in data.get("result") or []:
        try:
            number = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(Series(labels=dict(item.get("metric") or {}), value=number))
    return out


@dataclass
class PrometheusCollector:
    """Pulls one cluster's facts from its Prometheus through an injected client."""

    client: httpx.AsyncClient
    base_url: str
    token: str | None = None
    window_seconds: int = 3600
    stale_seconds: float = 300.0
    scrape_interval_seconds: float = 30.0
    request_timeout: float = 10.0

    def window(self, at: datetime | None = None) -> Window:
        """The window of a pull evaluated at `at` (now when None)."""
        return Window(
            at=(at or datetime.now(UTC)).astimezone(UTC),
            seconds=self.window_seconds,
            stale_seconds=self.stale_seconds,
            scrape_interval_seconds=self.scrape_interval_seconds,
        )

    async def collect(self, at: datetime | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Facts per workloadId, every query evaluated at `at` (now when None)."""
        window = self.window(at)
        queries = build_queries(window)
        groups = request_groups(queries)
        tasks = [
            asyncio.ensure_future(
                instant_query(
                    self.client,
                    self.base_url,
                    combined(group),
                    window.at,
                    request_timeout=self.request_timeout,
                    token=self.token,
                )
            )
            for group in groups
        ]
        try:
            answers = await asyncio.gather(*tasks)
        finally:
            # One failed query fails the pull: facts computed from half the answers
            # (allocation without pod phases, say) would be wrong, not just incomplete.
            for task in tasks:
                task.cancel()
        by_name: dict[str, list[Series]] = {}
        for group, answer in zip(groups, answers, strict=True):
            by_name.update(split(group, answer))
        return map_facts(by_name, queries, window)
