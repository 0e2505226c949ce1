"""Alembic environment: runs on the connection handed over by store.migrate."""

from __future__ import annotations

from alembic import context

# Importing the modules registers their tables on Base.metadata.
import store.audit
import store.events
import store.explanations
import store.findings
import store.models  # noqa: F401
from store.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
