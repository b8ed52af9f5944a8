"""A real HTTP server on a free loopback port, for the channel fakes.

Each fake is a function from the request received to the reply; the server records every
request, and ``fail_next`` makes it answer the next requests with given faults (429 with
``Retry-After``, a 503) before the fake's own answer, as a provider under load would.
Handlers never raise: a check that fails becomes a 4xx reply the adapter must classify,
and the request stays in ``received`` for the test to inspect.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    notes: dict[str, Any] = field(default_factory=dict)  # what the fake found in it


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, text: str, **headers: str) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "application/json", **headers})

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without answering (the work may well have been done)."""
        return cls(DROP)


DROP = 0  # the status of ``Reply.drop()``


Handler = Callable[[Received], Reply]


def served_file(files: Mapping[str, tuple[bytes, str]], request: Received) -> Reply | None:
    """A platform's media (CDN) answer: ``files`` by path, public, with their content type."""
    if request.method != "GET":
        return None
    found = files.get(request.path.split("?")[0])
    return Reply(200, found[0], {"Content-Type": found[1]}) if found is not None else None


class FakeServer:
    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.received: list[Received] = []
        self.faults: deque[Reply] = deque()
        self._lock = threading.Lock()
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length),
                )
                reply = server.answer(request)
                if reply.status == DROP:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            # GET (Mastodon's and Bluesky's polls, WhatsApp's media) is answered the same way:
            # the fake sees the path with its query and an empty body.
            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def answer(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            request.notes["fault"] = fault.status
            return fault
        try:
            return self.handle(request)
        except Exception as error:  # a bug in the fake must show, not hang the adapter
            request.notes["error"] = repr(error)
            return Reply(599, repr(error).encode())

    def fail_next(self, *faults: Reply) -> None:
        self.faults.extend(faults)

    def to(self, path_prefix: str) -> list[Received]:
        return [
            r for r in self.received if r.path.startswith(path_prefix) and "fault" not in r.notes
        ]

    def start(self) -> None:
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def serving(handle: Handler) -> Iterator[FakeServer]:
    server = FakeServer(handle)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def dead_address() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
