"""The Slack Web API client: base URL from settings, 429s retried after Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings


def slack_enabled(settings: Settings) -> bool:
    """True when Steward can post to Slack (a bot token is set)."""
    return settings.slack_bot_token is not None


def make_client(settings: Settings) -> AsyncWebClient | None:
    """A Web API client for `settings`, or None when SLACK_BOT_TOKEN is unset."""
    if settings.slack_bot_token is None:
        return None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        # slack_sdk appends the method name to the base URL as is.
        base_url=settings.slack_api_url.rstrip("/") + "/",
        timeout=15,
    )
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    return client


@asynccontextmanager
async def pooled_connections(client: AsyncWebClient | None) -> AsyncIterator[None]:
    """While open, `client` keeps its connections to Slack alive between calls.

    Without a session slack_sdk opens a new aiohttp session (a new TCP and TLS
    connection) per call. Bolt hands each listener a copy of the app's client
    that shares this session, and replies to response_url go through it too.
    """
    if client is None:
        yield
        return
    async with aiohttp.ClientSession() as session:
        client.session = session
        try:
            yield
        finally:
            client.session = None
