"""Fixtures shared by every suite: a real database, an opened context, a live server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn

from bot.config import Settings
from bot.context import Context, open_context

PG_ENV = "STEWARD_TEST_DATABASE_URL"
ADMIN_TOKEN = "admin-test-token"
REPO = Path(__file__).resolve().parents[1]


def reset_database(url: str) -> None:
    """Empty a PostgreSQL database so each test starts from nothing."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite in a temporary file, or the PostgreSQL named by STEWARD_TEST_DATABASE_URL."""
    url = os.environ.get(PG_ENV)
    if url:
        reset_database(url)
        return url
    return f"sqlite:///{tmp_path / 'steward.db'}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test, every file under its temporary directory."""
    return Settings(
        database_url=database_url,
        signing_key_file=tmp_path / "signing.key",
        key_pepper_file=tmp_path / "pepper.key",
        admin_token=ADMIN_TOKEN,
        auth_failure_audit_seconds=60,
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    """An opened context on a fresh, migrated database."""
    context = open_context(settings)
    yield context
    context.close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on a loopback port in a background thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_api(ctx: Context) -> Iterator[LiveServer]:
    """Steward's HTTP API on a real loopback port."""
    from bot.api import create_app

    with LiveServer(create_app(ctx)) as server:
        yield server
