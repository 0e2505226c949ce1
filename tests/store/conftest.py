"""Database fixtures of the store tests.

SQLite by default; the PostgreSQL named by STEWARD_TEST_DATABASE_URL when set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade

PG_URL_ENV = "STEWARD_TEST_DATABASE_URL"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite file, or the PostgreSQL named by STEWARD_TEST_DATABASE_URL.

    CI runs the whole suite once each way.
    """
    return os.environ.get(PG_URL_ENV) or f"sqlite:///{tmp_path / 'steward.db'}"


def _reset_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database migrated to the newest schema."""
    engine = make_engine(db_url, pool_size=20) if "postgresql" in db_url else make_engine(db_url)
    if engine.dialect.name == "postgresql":
        _reset_postgres(engine)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on the migrated test database."""
    return make_sessionmaker(engine)
