"""Reading a request body without trusting its declared size."""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    """The body is over the limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than the {limit}-byte limit")
        self.limit = limit


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes `limit` bytes.

    The declared Content-Length is checked first, but a chunked or lying
    client is caught while streaming, before the excess is held in memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
