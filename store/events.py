"""Deliveries already handled, so a retried Slack request does not repeat work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, UTCDateTime, utcnow


class HandledDelivery(Base):
    """One handled inbound delivery, keyed by what identifies it across retries."""

    __tablename__ = "handled_deliveries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
