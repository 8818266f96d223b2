"""A tiny helpdesk for end-to-end tests: records every POST (headers and raw body) and
answers 200, or 500 for the users told to fail. Runs in a thread on a free loopback
port; `stop()` shuts exactly it down."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from zapstream.brokers.process import free_port


@dataclass(frozen=True)
class Post:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def doc(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Helpdesk:
    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[Post] = []
        self.failing_users: set[str] = set()
        self.held_users: dict[str, threading.Event] = {}
        """A post for one of these users is answered only once its event is set."""
        self._lock = threading.Lock()
        desk = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    user = json.loads(body).get("user_id")
                except ValueError:
                    user = None
                status = 500 if user in desk.failing_users else 200
                with desk._lock:
                    desk.posts.append(
                        Post({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                held = desk.held_users.get(user) if isinstance(user, str) else None
                if held is not None:
                    held.wait(timeout=120)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Helpdesk:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def posts_for(self, user: str, event: str | None = None) -> list[Post]:
        with self._lock:
            posts = list(self.posts)
        return [
            p
            for p in posts
            if p.doc.get("user_id") == user and (event is None or p.doc.get("event") == event)
        ]

    def wait_for(self, user: str, event: str, count: int = 1, timeout: float = 60.0) -> list[Post]:
        deadline = time.monotonic() + timeout
        found: list[Post] = []
        while time.monotonic() < deadline:
            found = self.posts_for(user, event)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return found
