"""A stand-in for the Slack Web API, served over HTTP on a loopback port, recording every call.

Point `AsyncWebClient(base_url=fake.api_url)` (or STEWARD_SLACK_API_URL) at it.
It answers the methods Steward uses (auth.test, chat.*, views.open, the
three-step file upload), accepts response_url posts under `/respond/…`, and
can answer 429 with Retry-After to exercise the client's retry handler.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TEAM = "T0STEWARD"
BOT_USER = "U0BOT"


@dataclass
class Call:
    """One request the fake received: Web API method (or `respond`/`upload`) and its arguments."""

    method: str
    args: dict[str, Any]
    path: str
    headers: dict[str, str]
    raw: bytes = b""
    peer: tuple[str, int] = ("", 0)  # the caller's address: one per TCP connection


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    throttle: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _decode_args(content_type: str, raw: bytes, query: str) -> dict[str, Any]:
    args: dict[str, Any] = {key: values[0] for key, values in parse_qs(query).items()}
    if "application/json" in content_type and raw:
        args.update(json.loads(raw))
    elif "application/x-www-form-urlencoded" in content_type and raw:
        args.update({k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()})
    for key in ("blocks", "files", "view", "attachments"):
        if isinstance(args.get(key), str):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(args[key])
    return args


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # bursts of concurrent calls must not overflow the listen backlog

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller that went away mid-answer (a stopped Steward) is not the fake's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeSlackApi:
    """The fake server; use as a context manager."""

    def __init__(self) -> None:
        self.state = _State()
        self._ts = itertools.count(1)
        self._files = itertools.count(1)
        state = self.state
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                parsed = urlparse(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if parsed.path.startswith("/upload/"):
                    file_id = parsed.path.rsplit("/", 1)[-1]
                    with state.lock:
                        state.uploads[file_id] = raw
                        call = Call(
                            "upload",
                            {"file_id": file_id},
                            self.path,
                            headers,
                            raw,
                            self.client_address,
                        )
                        state.calls.append(call)
                    self._send(200, b"OK - " + str(len(raw)).encode(), "text/plain")
                    return
                if parsed.path.startswith("/respond/"):
                    args = _decode_args(headers.get("content-type", ""), raw, parsed.query)
                    with state.lock:
                        state.calls.append(
                            Call("respond", args, self.path, headers, raw, self.client_address)
                        )
                    self._send(200, b"ok", "text/plain")
                    return
                method = parsed.path.removeprefix("/api/")
                args = _decode_args(headers.get("content-type", ""), raw, parsed.query)
                with state.lock:
                    if state.throttle.get(method, 0) > 0:
                        state.throttle[method] -= 1
                        state.calls.append(
                            Call(
                                f"{method}:429", args, self.path, headers, raw, self.client_address
                            )
                        )
                        self._send(429, b'{"ok":false,"error":"ratelimited"}', retry_after="1")
                        return
                    state.calls.append(
                        Call(method, args, self.path, headers, raw, self.client_address)
                    )
                reply = fake.answer(method, args)
                self._send(200, json.dumps(reply).encode())

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str = "application/json; charset=utf-8",
                retry_after: str | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.url}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSlackApi:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- answers ---------------------------------------------------------------

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """What Slack would answer, minimally but faithfully enough for slack_sdk."""
        if method == "auth.test":
            return {"ok": True, "url": "https://steward.slack.com/", "team": "Steward",
                    "team_id": TEAM, "user": "steward", "user_id": BOT_USER,
                    "bot_id": "B0BOT", "is_enterprise_install": False}  # fmt: skip
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            return {"ok": True, "channel": args.get("channel"), "ts": ts,
                    "message": {"text": args.get("text"), "ts": ts}}  # fmt: skip
        if method == "chat.update":
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}
        if method == "views.open":
            return {"ok": True, "view": {"id": "V0FAKE", **(args.get("view") or {})}}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._files):08d}"
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = args.get("files") or []
            done = [{"id": f.get("id"), "title": f.get("title")} for f in files]
            return {"ok": True, "files": done}
        return {"ok": False, "error": "unknown_method"}

    # --- what tests read -------------------------------------------------------

    def throttle(self, method: str, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and Retry-After: 1."""
        with self.state.lock:
            self.state.throttle[method] = times

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls received so far, optionally of one method."""
        with self.state.lock:
            return [c for c in self.state.calls if method is None or c.method == method]

    def uploads(self) -> dict[str, bytes]:
        """Bytes uploaded per file id."""
        with self.state.lock:
            return dict(self.state.uploads)

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until at least `count` calls of `method` arrived; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls(method)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        seen = [c.method for c in self.calls()]
        raise AssertionError(f"expected {count} {method} call(s); the fake saw {seen}")

    def respond_url(self, name: str = "r") -> str:
        """A response_url that lands on this fake."""
        return f"{self.url}/respond/{name}"

    def reset(self) -> None:
        """Forget recorded calls."""
        with self.state.lock:
            self.state.calls.clear()
            self.state.uploads.clear()


class FakeSlackProcess:
    """The fake in a process of its own, so its work does not share a GIL with the caller's.

    Only its addresses are available (`api_url`, `respond_url`); calls are not
    recorded back. Used by the benchmarks.
    """

    def __enter__(self) -> FakeSlackProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.slack_api"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("the fake Slack process did not start")
        self.api_url = f"{self.url}/api/"
        return self

    def respond_url(self, name: str = "r") -> str:
        return f"{self.url}/respond/{name}"

    def __exit__(self, *_exc: object) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()  # the child stops when its stdin closes
        self.process.stdout.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    with FakeSlackApi() as served:
        print(served.url, flush=True)
        sys.stdin.read()
