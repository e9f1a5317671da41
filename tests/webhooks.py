"""A real HTTP server standing in for Slack's, the pager's or Sentry's endpoint (stdlib, in a thread)."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records every POST; answers 500 to the next ``fail_next`` ones, and to every one on ``down_paths``.

    ``down_paths`` is one webhook down for as long as the test says (Slack down, the pager up).
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failed = 0
        self.fail_next = 0
        self.down_paths: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    down = self.path in receiver.down_paths
                    failing = down or receiver.fail_next > 0
                    if failing and not down:
                        receiver.fail_next -= 1
                    if failing:
                        receiver.failed += 1
                    else:
                        receiver.received.append(Received(self.path, body))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "down"}' if failing else b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, path: str = "/hook") -> list[Received]:
        with self._lock:
            return [item for item in self.received if item.path == path]

    def texts(self, path: str = "/hook") -> list[str]:
        return [item.json()["text"] for item in self.posts(path)]


def sentry_events(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """The events in the envelopes Sentry's SDK posted to ``receiver`` (one JSON document per line)."""
    events = []
    for post in receiver.posts("/api/1/envelope/"):
        lines = post.body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events
