"""A tiny OpenAI-compatible /v1/chat/completions server on 127.0.0.1 for tests: counts what it is asked,
answers with a caller's function, and can fail (503/429) or hang on purpose."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def request_key(body: dict) -> str:
    """The identity of a request: its messages (the model and sampling settings do not change the question)."""
    return hashlib.sha1(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()[:16]


class FakeOpenAI:
    def __init__(
        self,
        reply,
        *,
        fail_first: int = 0,
        fail_status: int = 503,
        hang_after: int | None = None,
        delay: float = 0.0,
        api_key: str | None = None,
    ):
        self.reply, self.fail_first, self.fail_status = reply, fail_first, fail_status
        self.hang_after, self.delay, self.api_key = hang_after, delay, api_key
        self.received = 0  # every POST, failed ones included
        self.answered: Counter[str] = Counter()  # request_key -> answers sent
        self.in_flight = self.max_in_flight = 0
        self.admitted = 0  # requests let through to an answer (hang_after counts these)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.received += 1
                    n = fake.received
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                        return self._send(401, {"error": {"message": "bad key"}})
                    if self.path != "/v1/chat/completions":
                        return self._send(404, {"error": {"message": f"no route {self.path}"}})
                    if n <= fake.fail_first:
                        return self._send(fake.fail_status, {"error": {"message": "busy"}}, retry_after="0")
                    with (
                        fake.lock
                    ):  # a slot is taken before answering, so concurrent requests cannot overshoot
                        hang = fake.hang_after is not None and fake.admitted >= fake.hang_after
                        fake.admitted += not hang
                    if hang:
                        fake.release.wait(60)
                        return
                    time.sleep(fake.delay)
                    text = fake.reply(body)
                    with fake.lock:
                        fake.answered[request_key(body)] += 1
                    self._send(
                        200,
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop",
                                }
                            ],
                        },
                    )
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _send(self, status, obj, retry_after=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client went away (a killed run)
                    pass

        return Handler
