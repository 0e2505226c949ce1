"""Findings.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.db import JSONType, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(700), nullable=False, unique=True),
        sa.Column("rule", sa.String(64), nullable=False, index=True),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("cluster", sa.String(63), nullable=True, index=True),
        sa.Column("subject", sa.String(600), nullable=False),
        sa.Column("monthly_usd", sa.Numeric(14, 2), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("confidence", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("evidence", JSONType, nullable=False),
        sa.Column("recommendation", JSONType, nullable=False),
        sa.Column("claims", JSONType, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.Column("decided_usd", sa.Numeric(14, 2), nullable=True),
        sa.Column("snoozed_until", UTCDateTime, nullable=True),
        sa.Column("slack_channel", sa.String(32), nullable=True),
        sa.Column("slack_ts", sa.String(32), nullable=True),
        sa.Column("audit_seq", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("findings")
