"""The code under test: a product catalog served over HTTP, with Redis as a cache of prices.

`GET /products/<id>` answers JSON with the product's price. The price is read from Redis
(the cache of a slow pricing service); on a miss it is asked of the pricing service (10 ms)
and written back. The cache client gives up after 50 ms and any cache error counts as a miss,
so a slow, refusing or dead Redis costs a request at most 50 ms + 10 ms, never an error.

`serve(cache, fragile=True)` runs the same catalog the way a lot of real code is written:
its cache reads wait as long as Redis takes (no timeout) and a cache error is the request's
error (HTTP 503). The tests show what each does to the golden signals.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

CACHE_TIMEOUT_SECONDS = 0.05
PRICING_SECONDS = 0.01


def cache_client(host: str, port: int, *, timeout: float | None) -> redis.Redis:
    """A Redis client for a cache: `timeout` seconds per call, and no retries (a retry against
    a struggling cache doubles the time lost before falling back)."""
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def price_from_pricing_service(product: int) -> int:
    """Stands in for the system of record: always right, always slower than the cache."""
    time.sleep(PRICING_SECONDS)
    return 100 + product % 900


class Catalog:
    def __init__(self, cache: redis.Redis, *, fragile: bool = False) -> None:
        self.cache = cache
        self.fragile = fragile

    def price(self, product: int) -> tuple[int, str]:
        """The price and where it came from: "cache", "pricing" (a miss) or "fallback"."""
        key = f"price:{product}"
        try:
            cached = self.cache.get(key)
        except redis.RedisError:
            if self.fragile:
                raise
            return price_from_pricing_service(product), "fallback"
        if cached is not None:
            return int(cached), "cache"
        price = price_from_pricing_service(product)
        with contextlib.suppress(redis.RedisError):  # a cache that cannot take it: next time
            self.cache.set(key, price, ex=300)
        return price, "pricing"


def _handler(catalog: Catalog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart

        def do_GET(self) -> None:
            prefix = "/products/"
            if not self.path.startswith(prefix) or not self.path[len(prefix) :].isdigit():
                self._answer(404, {"error": "not found"})
                return
            product = int(self.path[len(prefix) :])
            try:
                price, source = catalog.price(product)
            except redis.RedisError as error:
                self._answer(503, {"error": f"cache: {error}"})
                return
            self._answer(200, {"product": product, "price": price, "source": source})

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def serve(cache: redis.Redis, *, fragile: bool = False) -> Iterator[str]:
    """Run the catalog on a thread, on 127.0.0.1 and a free port; yields its base URL."""
    server = _Server(("127.0.0.1", 0), _handler(Catalog(cache, fragile=fragile)))
    thread = threading.Thread(target=server.serve_forever, name="catalog", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
