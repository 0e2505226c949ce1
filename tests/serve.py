"""`steward serve` as a subprocess: its environment built from a Settings, its log, its stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from bot.config import Settings, env_name
from tests.conftest import free_port


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment under which a `serve` process reads exactly `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STEWARD_")}
    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            text = ",".join(value)
        elif isinstance(value, dict):
            text = json.dumps(value)
        else:
            text = str(value)
        env[env_name(field)] = text
    env.update(extra)
    return env


class ServeProcess:
    """One `steward serve` subprocess on a free loopback port, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.handle = log.open("wb")
        steward = Path(sys.executable).parent / "steward"
        self.process = subprocess.Popen(
            [str(steward), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"steward serve exited:\n{self.text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"steward serve did not start:\n{self.text()[-3000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()
