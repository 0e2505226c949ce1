"""Cluster registry, API keys and the fact store.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.db import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("last_facts_at", UTCDateTime, nullable=True),
        sa.Column("prometheus_url", sa.String(2048), nullable=True),
        sa.Column("prometheus_token_file", sa.String(1024), nullable=True),
        sa.Column("piqc_url", sa.String(2048), nullable=True),
        sa.Column("pull_interval_seconds", sa.Integer, nullable=True),
        sa.Column("last_pull_at", UTCDateTime, nullable=True),
        sa.Column("last_pull_status", sa.String(16), nullable=True),
        sa.Column("last_pull_error", sa.String(2048), nullable=True),
        sa.Column("pull_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_pull_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column(
            "cluster_id",
            sa.Integer,
            sa.ForeignKey("clusters.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("secret_hmac", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "workload_facts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "cluster_id",
            sa.Integer,
            sa.ForeignKey("clusters.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("workload_id", sa.String(512), nullable=False),
        sa.Column("facts", JSONType, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("observed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("cluster_id", "workload_id"),
    )
    op.create_table(
        "fact_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "cluster_id",
            sa.Integer,
            sa.ForeignKey("clusters.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("workload_id", sa.String(512), nullable=False),
        sa.Column("facts", JSONType, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("observed_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_fact_history_workload", "fact_history", ["cluster_id", "workload_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_fact_history_workload", table_name="fact_history")
    op.drop_table("fact_history")
    op.drop_table("workload_facts")
    op.drop_table("api_keys")
    op.drop_table("clusters")
