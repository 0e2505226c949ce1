"""An OpenAI-compatible chat completions client (vLLM, Ollama, OpenAI), text in and text out.

The client sends no tools and reads nothing but the answer's text and token usage: a
model cannot act through Steward, only write words that the guard then checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

# Fact values are data: escaping these keeps a value such as "</finding_data>" from
# closing the delimited block it is quoted in.
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


class LlmError(RuntimeError):
    """The endpoint gave no usable answer; the message says what went wrong."""


@dataclass(frozen=True)
class Completion:
    """One answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def data_block(value: Any) -> str:
    """`value` as indented JSON that cannot close the markers it is placed between."""
    text = json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True, default=str)
    for char, escaped in _JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


class ChatClient:
    """POSTs `{base_url}/chat/completions`; one retry, then LlmError."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_seconds: float = 8.0,
        http: httpx.Client | None = None,
        attempts: int = 2,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self._api_key = api_key
        self._http = http

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """The model's answer to `messages`; raises LlmError after the last failed attempt."""
        http = self._http or httpx.Client()
        try:
            error = LlmError("no attempt made")
            for _ in range(self.attempts):
                try:
                    return self._once(http, messages)
                except LlmError as exc:
                    error = exc
            raise error
        finally:
            if self._http is None:
                http.close()

    def _once(self, http: httpx.Client, messages: list[dict[str, str]]) -> Completion:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": 0.2}
        try:
            response = http.post(self.url, json=body, headers=headers, timeout=self.timeout_seconds)
        except httpx.TimeoutException as exc:
            raise LlmError(f"no answer from {self.url} within {self.timeout_seconds:g} s") from exc
        except httpx.HTTPError as exc:
            raise LlmError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code != 200:
            raise LlmError(f"{self.url} answered HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise LlmError(f"{self.url} answered with something other than JSON") from exc
        return _completion(payload, self.url)


def _completion(payload: Any, url: str) -> Completion:
    """The text and usage of a chat completions answer, or LlmError naming what is missing."""
    try:
        text = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LlmError(f"{url} answered without choices[0].message.content") from exc
    if not isinstance(text, str) or not text.strip():
        raise LlmError(f"{url} answered with an empty message")
    usage = payload.get("usage") if isinstance(payload, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return Completion(
        text=text.strip(),
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
