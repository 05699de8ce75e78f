"""The same `GET /orders` (300 ms) on a bare standard-library server that does nothing about
SIGTERM: the signal's default action kills it at once, mid-request.

    python bare_server.py PORT
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORK_SECONDS = 0.3


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(WORK_SECONDS)
        body = b'{"orders": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
