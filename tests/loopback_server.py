"""A real HTTP server on 127.0.0.1 (random port, own thread) for the download tests: no test touches the internet.

Serves ``files`` (URL path -> bytes) with ``Range: bytes=N-`` support (206), 404 for anything else, and
can misbehave on purpose: ``drop_after`` cuts the first ``drops`` transfers after that many bytes (the
connection closes mid-body, as a flaky network does); ``ignore_range`` answers every request with the whole
file (200), as servers without Range support do. ``requests`` records (path, Range header) of each request.
"""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class LoopbackServer:
    """State of one server: its files, its misbehaviour switches and the requests it saw."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.drop_after: int | None = None
        self.drops = 0
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path


def _handler(state: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            data = state.files.get(self.path)
            if data is None:
                body = b"not found"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            start = 0
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.drop_after is not None and state.drops > 0:
                state.drops -= 1
                self.wfile.write(body[:state.drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[LoopbackServer]:
    """Run a :class:`LoopbackServer` for ``files`` on 127.0.0.1 for the duration of the block."""
    state = LoopbackServer(files)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="loopback-http")
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
