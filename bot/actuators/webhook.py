"""The webhook actuator: POST the plan, signed, to a team's own pipeline (GitOps, CI…)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from bot.actuators import ActuationRequest, ActuationResult

SIGNATURE_HEADER = "X-Steward-Signature"
TIMESTAMP_HEADER = "X-Steward-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `timestamp.body` (the timestamp binds the body)."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookActuator:
    """POSTs the plan as JSON; retries 5xx and timeouts with backoff, then gives up."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._url = url
        self._secret = secret
        self._client = client
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds

    def body(self, request: ActuationRequest) -> bytes:
        """The JSON document the receiver gets."""
        document: dict[str, Any] = {
            "finding": request.finding,
            "kind": request.kind,
            "idempotency_key": request.idempotency_key,
            "plan": request.plan.model_dump(mode="json"),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    async def apply(self, request: ActuationRequest) -> ActuationResult:
        """Deliver the plan; a 2xx answer means the receiver took it."""
        body = self.body(request)
        client = self._client or httpx.AsyncClient(timeout=self._timeout)
        log: list[dict[str, Any]] = []
        try:
            for attempt in range(1, self._attempts + 1):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                    TIMESTAMP_HEADER: timestamp,
                    IDEMPOTENCY_HEADER: request.idempotency_key,
                }
                try:
                    response = await client.post(
                        self._url, content=body, headers=headers, timeout=self._timeout
                    )
                except httpx.TimeoutException:
                    log.append({"attempt": attempt, "error": "timeout"})
                except httpx.TransportError as exc:
                    log.append({"attempt": attempt, "error": type(exc).__name__})
                else:
                    log.append({"attempt": attempt, "status": response.status_code})
                    if response.is_success:
                        return ActuationResult(
                            True, f"webhook accepted ({response.status_code})", log
                        )
                    if response.status_code < 500 and response.status_code != 429:
                        return ActuationResult(
                            False,
                            f"webhook refused the plan ({response.status_code}): "
                            f"{response.text[:200]}",
                            log,
                        )
                if attempt < self._attempts:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            return ActuationResult(
                False, f"webhook did not accept the plan after {self._attempts} attempts", log
            )
        finally:
            if self._client is None:
                await client.aclose()
