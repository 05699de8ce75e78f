"""A small HTTP server run as its own process by the graceful-shutdown tests:

    python shutdown_server.py PORT MODE

`GET /slow` answers after 0.3 s, anything else at once. What it does on SIGTERM is MODE:

- `drain`: stops accepting (the listening socket closed at once), finishes the requests in
  flight, exits: a graceful shutdown;
- `abrupt`: nothing of its own, so SIGTERM's default action kills it at once;
- `hang`: stops answering new connections but keeps the listening socket open (they queue in
  the backlog), finishes the requests in flight, and exits 1.5 s later;
- `slow`: drains, then lingers 8 s before exiting.
"""

from __future__ import annotations

import http.server
import signal
import sys
import threading
import time

SLOW_SECONDS = 0.3
HANG_SECONDS = 1.5
LINGER_SECONDS = 8.0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(SLOW_SECONDS)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    server = Server(("127.0.0.1", port), Handler)
    terminated = threading.Event()
    if mode != "abrupt":
        signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    loop.start()
    terminated.wait()
    server.shutdown()  # no more accept(); the listening socket stays open
    if mode == "hang":
        time.sleep(HANG_SECONDS)
    server.server_close()  # closes the listening socket, then waits for the requests in flight
    if mode == "slow":
        time.sleep(LINGER_SECONDS)


if __name__ == "__main__":
    main()
