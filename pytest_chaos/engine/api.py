"""The Toxiproxy HTTP API (and the engine's extensions: /events, /metrics) on aiohttp."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pytest_chaos.engine.collection import ProxyCollection
from pytest_chaos.engine.errors import ApiError, bad_request
from pytest_chaos.engine.events import Event, EventLog, select

TOXIPROXY_VERSION = "2.12.0"
REQUEST_ID_HEADER = "X-Toxiproxy-Request-Id"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COLLECTION = web.AppKey("collection", ProxyCollection)
EVENTS = web.AppKey("events", EventLog)
ENGINE_VERSION = web.AppKey("engine_version", str)
# Upstream's `-proxy-metrics` and `-runtime-metrics`: what /metrics serves besides ours.
METRICS_OPTIONS = web.AppKey("metrics_options", dict[str, bool])


def json_response(payload: Any, status: int = 200) -> web.Response:
    """A JSON answer with upstream's trailing newline."""
    return web.Response(
        body=json.dumps(payload).encode() + b"\n",
        status=status,
        content_type="application/json",
    )


def error_response(error: ApiError, **extra: Any) -> web.Response:
    """Upstream's error body: the message and the status, plus any `extra` fields."""
    return json_response({"error": error.message, "status": error.status, **extra}, error.status)


def empty(status: int = 204) -> web.Response:
    """An answer with no body (204 by default, as upstream answers deletes and resets)."""
    return web.Response(status=status)


class _NotJson(ValueError):
    """A token Python's decoder accepts but JSON (and Go's decoder) does not."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> Any:
    """Bodies are JSON whatever the Content-Type says (the Ruby client sends none)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        # As a Toxiproxy error, so that clients show it (upstream reads bodies of any size).
        raise ApiError(
            413, f"bad request body: larger than {request.client_max_size} bytes, the most allowed"
        ) from None
    if not raw.strip():
        raise bad_request("EOF")
    try:
        # Decoded as UTF-8 only, as Go does; `json.loads(bytes)` would also guess UTF-16 and 32.
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, _NotJson) as error:
        raise bad_request(f"invalid JSON: {error}") from None
    except RecursionError:
        raise bad_request("invalid JSON: nested too deeply") from None
    except ValueError:
        # Python refuses to convert integers of more than `sys.get_int_max_str_digits()` digits.
        raise bad_request("invalid JSON: number too long") from None


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, which must be an object (400 naming what came instead)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request(f"expected a JSON object, got {type(body).__name__}")
    return body


# -- middlewares
_request_ids = itertools.count(1)


@web.middleware
async def toxiproxy_conventions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Upstream's browser guard, error bodies, plain-text 404 and empty 405."""
    try:
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            # A guard against web pages driving the API through the user's browser.
            response: web.StreamResponse = web.Response(status=403, text="User agent not allowed\n")
        else:
            response = await handler(request)
    except ApiError as error:
        response = error_response(error)
    except web.HTTPNotFound:
        response = web.Response(status=404, text="404 page not found\n")
    except web.HTTPMethodNotAllowed:
        response = web.Response(status=405)
    return response


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every response gets a request id, streamed ones too (set before their headers go)."""
    response.headers[REQUEST_ID_HEADER] = str(next(_request_ids))


# -- handlers
async def version(request: web.Request) -> web.Response:
    """`GET /version`: upstream's version string, and the engine that answers."""
    payload = {"version": TOXIPROXY_VERSION, "engine": request.app[ENGINE_VERSION]}
    return json_response(payload)


async def list_proxies(request: web.Request) -> web.Response:
    """`GET /proxies`: every proxy by name."""
    collection = request.app[COLLECTION]
    async with collection.lock:
        listing = {name: proxy.to_json() for name, proxy in collection.proxies.items()}
    return json_response(listing)


async def create_proxy(request: web.Request) -> web.Response:
    """`POST /proxies`: create (and by default start) a proxy; 201 with the proxy."""
    proxy = await request.app[COLLECTION].create(await read_json(request))
    return json_response(proxy.to_json(), 201)


async def populate(request: web.Request) -> web.Response:
    """`POST /populate`: create or replace a list of proxies in order, stopping at the first
    bad one."""
    # Upstream always reports the proxies done so far, `null` when a bad body stopped it early.
    try:
        done, error = await request.app[COLLECTION].populate(await read_json(request))
    except ApiError as invalid:
        done, error = [], invalid
    proxies = [proxy.to_json() for proxy in done] or None
    if error is not None:
        return error_response(error, proxies=proxies)
    return json_response({"proxies": proxies}, 201)


async def show_proxy(request: web.Request) -> web.Response:
    """`GET /proxies/{proxy}`: one proxy with its toxics."""
    collection = request.app[COLLECTION]
    async with collection.lock:
        shown = collection.get(request.match_info["proxy"]).to_json()
    return json_response(shown)


async def update_proxy(request: web.Request) -> web.Response:
    """`POST` or `PATCH /proxies/{proxy}`: change its listen address, upstream or enabled flag."""
    collection = request.app[COLLECTION]
    name = request.match_info["proxy"]
    collection.get(name)  # As upstream: an unknown proxy is a 404 even when the body is bad.
    proxy = await collection.update(name, await read_json(request))
    return json_response(proxy.to_json())


async def delete_proxy(request: web.Request) -> web.Response:
    """`DELETE /proxies/{proxy}`: stop the proxy and close its connections."""
    await request.app[COLLECTION].delete(request.match_info["proxy"])
    return empty()


async def list_toxics(request: web.Request) -> web.Response:
    """`GET /proxies/{proxy}/toxics`: its toxics, upstream ones first."""
    collection = request.app[COLLECTION]
    async with collection.lock:
        proxy = collection.get(request.match_info["proxy"])
        listing = [spec.to_json() for spec in proxy.toxics.listing()]
    return json_response(listing)


async def create_toxic(request: web.Request) -> web.Response:
    """`POST /proxies/{proxy}/toxics`: add a toxic; live connections get it at once."""
    collection = request.app[COLLECTION]
    name = request.match_info["proxy"]
    collection.get(name)  # As upstream: an unknown proxy is a 404 even when the body is bad.
    spec = await collection.add_toxic(name, await read_object(request))
    return json_response(spec.to_json())


async def show_toxic(request: web.Request) -> web.Response:
    """`GET /proxies/{proxy}/toxics/{toxic}`: one toxic."""
    collection = request.app[COLLECTION]
    async with collection.lock:
        proxy = collection.get(request.match_info["proxy"])
        shown = proxy.toxics.get(request.match_info["toxic"]).to_json()
    return json_response(shown)


async def update_toxic(request: web.Request) -> web.Response:
    """`POST` or `PATCH /proxies/{proxy}/toxics/{toxic}`: change its toxicity or attributes."""
    collection = request.app[COLLECTION]
    proxy_name = request.match_info["proxy"]
    name = request.match_info["toxic"]
    # As upstream: an unknown proxy or toxic is a 404 even when the body is bad.
    collection.get(proxy_name).toxics.get(name)
    spec = await collection.update_toxic(proxy_name, name, await read_object(request))
    return json_response(spec.to_json())


async def delete_toxic(request: web.Request) -> web.Response:
    """`DELETE /proxies/{proxy}/toxics/{toxic}`: remove a toxic, handing on what it held."""
    collection = request.app[COLLECTION]
    await collection.remove_toxic(request.match_info["proxy"], request.match_info["toxic"])
    return empty()


async def reset(request: web.Request) -> web.Response:
    """`POST /reset`: enable every proxy and remove every toxic."""
    await request.app[COLLECTION].reset()
    return empty()


async def show_seed(request: web.Request) -> web.Response:
    """Extension: the seed the engine draws from now (`null`: unseeded)."""
    return json_response({"seed": request.app[COLLECTION].seed})


async def set_seed(request: web.Request) -> web.Response:
    """Extension: `{"seed": N}` (or null) reseeds every proxy; connections accepted from now
    on are numbered from 0 per proxy, so draws do not depend on what came before."""
    body = await read_object(request)
    seed = body.get("seed")
    if seed is not None and (type(seed) is not int or not 0 <= seed < 2**63):
        raise bad_request(f"seed must be a whole number from 0 to 2**63-1 or null, got {seed!r}")
    request.app[COLLECTION].reseed(seed)
    return empty()


# /events answers are written in batches of this many events, yielding to the loop in between,
# so that a large answer (100,000 events are about 14 MB of JSON) never stalls the proxies.
EVENTS_BATCH = 500
QUERY_NUMBER = re.compile(r"-?[0-9]+")


def _query_number(request: web.Request, name: str, minimum: int, meaning: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = minimum - 1
    if QUERY_NUMBER.fullmatch(raw) is not None:
        try:
            value = int(raw)
        except ValueError:
            # More digits than Python converts (4,300): beyond any sequence number or count.
            value = minimum - 1 if raw.startswith("-") else sys.maxsize
    if value < minimum:
        raise ApiError(
            400,
            f"query parameter {name} must be a whole number, {minimum} or more ({meaning}),"
            f" got {raw!r}",
        )
    return value


async def events(request: web.Request) -> web.StreamResponse:
    """Extension: what the engine saw (see `events` for the fields and the query)."""
    log = request.app[EVENTS]
    since = _query_number(request, "since", 0, "the last_seq of the previous answer; 0: all")
    limit = _query_number(request, "limit", 1, "the most events to answer with")
    proxy = request.query.get("proxy")
    # Every byte read so far is in a data event before the answer is chosen.
    log.close_open_runs()
    last_seq, oldest_seq = log.last_seq, log.oldest_seq
    snapshot = log.snapshot(since or 0)
    if len(snapshot) <= EVENTS_BATCH:
        selected = list(select(snapshot, proxy=proxy, limit=limit))
        if limit is not None and len(selected) == limit:
            last_seq = selected[-1]["seq"]
        payload = {"events": selected, "last_seq": last_seq, "oldest_seq": oldest_seq}
        return json_response(payload)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"events": [')
    chosen = select(snapshot, proxy=proxy, limit=limit)
    written = 0
    last_written: Event | None = None
    while batch := list(itertools.islice(chosen, EVENTS_BATCH)):
        text = json.dumps(batch)[1:-1]
        await response.write((", " + text if written else text).encode())
        written += len(batch)
        last_written = batch[-1]
        await asyncio.sleep(0)  # let the proxies run between batches
    if limit is not None and written == limit and last_written is not None:
        last_seq = last_written["seq"]
    await response.write(f'], "last_seq": {last_seq}, "oldest_seq": {oldest_seq}}}\n'.encode())
    await response.write_eof()
    return response


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text, with upstream's metrics when the options ask for them."""
    # prometheus_client is imported on the first scrape, not at start-up.
    from pytest_chaos.engine.metrics import render_metrics

    body, content_type = render_metrics(request.app[COLLECTION], **request.app[METRICS_OPTIONS])
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def build_app(
    collection: ProxyCollection,
    events_log: EventLog,
    engine_version: str,
    *,
    proxy_metrics: bool = False,
    runtime_metrics: bool = False,
) -> web.Application:
    """The aiohttp application serving upstream Toxiproxy's API and the engine's extensions."""
    app = web.Application(middlewares=[toxiproxy_conventions])
    app.on_response_prepare.append(add_request_id)
    app[COLLECTION] = collection
    app[EVENTS] = events_log
    app[ENGINE_VERSION] = engine_version
    app[METRICS_OPTIONS] = {"proxy_metrics": proxy_metrics, "runtime_metrics": runtime_metrics}
    add = app.router.add_route
    add("GET", "/version", version)
    add("GET", "/proxies", list_proxies)
    add("POST", "/proxies", create_proxy)
    add("POST", "/populate", populate)
    add("POST", "/reset", reset)
    add("GET", "/events", events)
    add("GET", "/seed", show_seed)
    add("POST", "/seed", set_seed)
    add("GET", "/metrics", metrics)
    add("GET", "/proxies/{proxy}", show_proxy)
    add("POST", "/proxies/{proxy}", update_proxy)
    add("PATCH", "/proxies/{proxy}", update_proxy)
    add("DELETE", "/proxies/{proxy}", delete_proxy)
    add("GET", "/proxies/{proxy}/toxics", list_toxics)
    add("POST", "/proxies/{proxy}/toxics", create_toxic)
    add("GET", "/proxies/{proxy}/toxics/{toxic}", show_toxic)
    add("POST", "/proxies/{proxy}/toxics/{toxic}", update_toxic)
    add("PATCH", "/proxies/{proxy}/toxics/{toxic}", update_toxic)
    add("DELETE", "/proxies/{proxy}/toxics/{toxic}", delete_toxic)
    return app
