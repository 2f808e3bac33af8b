"""A webhook receiver for the benchmarks: ``python -m bench.receiver PORT``.

Answers every POST with 204 and counts them; ``GET /count`` returns the count. It runs as
its own process so that its work does not share the benchmark's interpreter lock.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received += 1
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        body = str(type(self).received).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver)
    server.serve_forever()


if __name__ == "__main__":
    main()
