"""Action plans, the actuation outbox, outcomes and Kubernetes credentials.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.db import JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("plan", JSONType, nullable=True))
        batch.add_column(sa.Column("actuated_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        batch.add_column(sa.Column("outcome_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("realised_usd", sa.Numeric(14, 2), nullable=True))
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("k8s_api_url", sa.String(2048), nullable=True))
        batch.add_column(sa.Column("k8s_token_file", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("k8s_ca_file", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("kubeconfig", sa.String(1024), nullable=True))
    op.create_table(
        "actuations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "finding_id",
            sa.Integer,
            sa.ForeignKey("findings.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("plan", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("finding_id", "kind"),
    )


def downgrade() -> None:
    op.drop_table("actuations")
    with op.batch_alter_table("clusters") as batch:
        for column in ("kubeconfig", "k8s_ca_file", "k8s_token_file", "k8s_api_url"):
            batch.drop_column(column)
    with op.batch_alter_table("findings") as batch:
        for column in ("realised_usd", "outcome_at", "outcome", "actuated_at", "plan"):
            batch.drop_column(column)
