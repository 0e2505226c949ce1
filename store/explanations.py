"""LLM-drafted explanations: cached per finding fingerprint and evidence hash, usage recorded."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import Base, UTCDateTime, utcnow


class LlmCall(Base):
    """One call to the LLM endpoint: what it cost, and whether its text was used."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(700), index=True)
    evidence_hash: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


def cached_answer(
    session: Session, fingerprint: str, evidence_hash: str, audience: str, model: str
) -> LlmCall | None:
    """The latest answered call for this evidence, audience and model (accepted or rejected)."""
    query = (
        select(LlmCall)
        .where(
            LlmCall.fingerprint == fingerprint,
            LlmCall.evidence_hash == evidence_hash,
            LlmCall.audience == audience,
            LlmCall.model == model,
            LlmCall.text.is_not(None),
        )
        .order_by(LlmCall.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def llm_usage_since(session: Session, since: datetime) -> tuple[int, int, int]:
    """Calls, prompt tokens and completion tokens since `since`, for the digest."""
    query = select(
        func.count(LlmCall.id),
        func.coalesce(func.sum(LlmCall.prompt_tokens), 0),
        func.coalesce(func.sum(LlmCall.completion_tokens), 0),
    ).where(LlmCall.created_at >= since)
    calls, prompt, completion = session.execute(query).one()
    return int(calls), int(prompt), int(completion)
