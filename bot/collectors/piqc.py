"""Facts from a piqc endpoint: an HTTP URL serving a piqc facts bundle."""

from __future__ import annotations

from typing import Any

import httpx

from bot.ingest import IngestError, decode_json


class PiqcError(RuntimeError):
    """The piqc endpoint could not be read; the message says what to check."""


async def fetch_bundle(client: httpx.AsyncClient, url: str, *, request_timeout: float) -> Any:
    """GET the bundle at `url` and decode it (validation is the ingest path's job)."""
    try:
        response = await client.get(
            url, timeout=request_timeout, headers={"Accept": "application/json"}
        )
    except httpx.TimeoutException as exc:
        raise PiqcError(
            f"the piqc endpoint {url} did not answer within {request_timeout:g}s; "
            "check that it is up"
        ) from exc
    except httpx.HTTPError as exc:
        raise PiqcError(
            f"cannot reach the piqc endpoint {url} ({type(exc).__name__}); check the URL with "
            "`steward cluster set NAME --piqc-url URL`"
        ) from exc
    if response.status_code >= 400:
        raise PiqcError(
            f"the piqc endpoint {url} answered {response.status_code}: {response.text[:200]}"
        )
    try:
        return decode_json(response.content)
    except IngestError as exc:
        raise PiqcError(f"the piqc endpoint {url} did not serve a bundle: {exc.message}") from exc
