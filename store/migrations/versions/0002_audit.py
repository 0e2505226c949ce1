"""The signed, hash-chained audit log, its keyring and its checkpoints.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# Tables that only ever grow. The triggers stop accidental UPDATE/DELETE by
# anyone using the application's credentials; deliberate tampering by a
# database owner is what the hashes, signatures and checkpoints detect.
_APPEND_ONLY = {
    "audit_log": ("UPDATE", "DELETE"),
    "audit_checkpoints": ("UPDATE", "DELETE"),
    "audit_keys": ("DELETE",),
}


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("entry_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("cosignature", sa.String(128), nullable=True),
    )
    op.create_table(
        "audit_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("retired_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION steward_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table, operations in _APPEND_ONLY.items():
            ops = " OR ".join(operations)
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE {ops} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION steward_audit_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION steward_audit_append_only()"
            )
    else:
        for table, operations in _APPEND_ONLY.items():
            for operation in operations:
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} "
                    f"ON {table} BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS steward_audit_append_only()")
    else:
        for table, operations in _APPEND_ONLY.items():
            for operation in operations:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation.lower()}")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_keys")
    op.drop_table("audit_log")
