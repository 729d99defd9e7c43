"""The read API's handlers (``/api/v1``, ``/health``, ``/ready``); :mod:`tapeflow.serve.openapi`
describes each one, and the tests hold the two together.

Every handler parses its parameters with :mod:`tapeflow.serve.params` first, so a bad one is a
400 naming it before any data is read.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tapeflow.serve import params
from tapeflow.serve.encode import MEDIA_TYPES, json_bytes, rows, stream
from tapeflow.serve.history import DATASETS, FILTERS, History, Query
from tapeflow.serve.params import ParamError

COMMON = ("token",)  # the bearer token may ride in the query (WebSockets and downloads cannot set headers)
RANGE_PARAMS = ("venue", "symbol", "start", "end", "cursor", "limit", "format")
MAX_ALERT_ID_CHARS = 128


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def dataset_params(name: str) -> tuple[str, ...]:
    """The query parameters a dataset route takes."""
    extra = ("min_confidence",) if name == "signals" else ()
    return RANGE_PARAMS + FILTERS.get(name, ()) + extra


def parse_query(name: str, query: dict[str, str]) -> tuple[Query, str, params.Cursor | None, int]:
    """A dataset route's parameters: the query, the format, the cursor and the page size."""
    params.unknown(query, dataset_params(name) + COMMON)
    start, end = params.time_range(query)
    fmt = params.choice(query, "format", params.FORMATS, "json")
    cursor, limit = params.cursor(query), params.limit(query)
    if fmt != "json":
        for paged in ("cursor", "limit"):
            if query.get(paged):
                raise ParamError(paged, f"pages are for format=json; format={fmt} streams the whole range")
    equals = {c: v for c in FILTERS.get(name, ()) if (v := params.text(query, c)) is not None}
    confidence = params.number(query, "min_confidence", 0.0, 1.0) if name == "signals" else None
    q = Query(DATASETS[name], params.text(query, "venue"), params.text(query, "symbol"), start, end, equals,
              confidence)
    return q, str(fmt), cursor, limit


def dataset_handler(name: str) -> Any:
    """The handler of ``GET /api/v1/<name>``."""

    async def handler(request: Request) -> Response:
        q, fmt, cursor, limit = parse_query(name, dict(request.query_params))
        history: History = request.app.state.history
        if fmt == "json":
            from starlette.concurrency import run_in_threadpool

            table, after = await run_in_threadpool(history.page, q, cursor, limit)
            return JSON({"dataset": name, "source": history.name, "rows": rows(table),
                         "next_cursor": after.token() if after else None})
        filename = f"{name}.{fmt}"
        return StreamingResponse(stream(history.scan(q), q.record.arrow_schema(), fmt),
                                 media_type=MEDIA_TYPES[fmt],
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    handler.__name__ = f"get_{name}"
    return handler


async def health(request: Request) -> Response:
    params.unknown(dict(request.query_params), COMMON)
    return JSON({"status": "ok"})


async def ready(request: Request) -> Response:
    params.unknown(dict(request.query_params), COMMON)
    ok, detail = request.app.state.history.ready()
    hub = request.app.state.hub
    live = None if hub is None else hub.describe()
    return JSON({"ready": ok, "history": detail, "live": live}, status_code=200 if ok else 503)


async def instruments(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    params.unknown(dict(request.query_params), COMMON)
    history: History = request.app.state.history
    found = await run_in_threadpool(history.instruments)
    hub = request.app.state.hub
    if hub is not None:
        known = {(r["venue"], r["symbol"]) for r in found}
        for venue, symbol in hub.instruments():
            if (venue, symbol) not in known:
                found.append({"venue": venue, "symbol": symbol, "datasets": [], "first_date": None,
                              "last_date": None})
    for row in found:
        row["live"] = hub is not None and hub.has(row["venue"], row["symbol"])
    return JSON({"source": history.name, "instruments": found})


async def feed(request: Request) -> Response:
    """Each instrument's feed state: relayed live when the flow publishes, else the lake's last row."""
    from starlette.concurrency import run_in_threadpool

    query = dict(request.query_params)
    params.unknown(query, ("venue", "symbol") + COMMON)
    venue, symbol = params.text(query, "venue"), params.text(query, "symbol")
    hub = request.app.state.hub
    live = hub.feed() if hub is not None else {}
    history: History = request.app.state.history
    table, _ = await run_in_threadpool(
        history.page, Query(DATASETS["status"], venue, symbol, params.MIN_NS, params.MAX_NS, {}), None,
        params.MAX_LIMIT)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in table.to_pylist():
        row = out.setdefault((r["venue"], r["symbol"]), {"venue": r["venue"], "symbol": r["symbol"],
                                                         "counts": {}, "source": "lake"})
        row["counts"][r["state"]] = row["counts"].get(r["state"], 0) + 1
        row.update(state=r["state"], since_ns=r["ts_event_ns"] if r["ts_event_ns"] >= 0 else r["ts_recv_ns"],
                   detail=r["detail"])
    for key, state in live.items():
        if (venue is None or key[0] == venue) and (symbol is None or key[1] == symbol):
            out[key] = {"venue": key[0], "symbol": key[1], **state, "source": "live"}
    return JSON({"feeds": [out[k] for k in sorted(out)]})


def _alert_id(request: Request) -> str:
    alert_id = request.path_params["alert_id"]
    if not alert_id or len(alert_id) > MAX_ALERT_ID_CHARS or any(ord(c) < 32 for c in alert_id):
        raise ParamError("alert_id", f"must be 1-{MAX_ALERT_ID_CHARS} printable characters")
    return alert_id


def _known_alert(request: Request, alert_id: str) -> bool:
    hub = request.app.state.hub
    if hub is not None and hub.knows_alert(alert_id):
        return True
    q = Query(DATASETS["alerts"], None, None, params.MIN_NS, params.MAX_NS, {"alert_id": alert_id})
    for batch in request.app.state.history.scan(q):
        if batch.num_rows:
            return True
    return False


async def get_ack(request: Request) -> Response:
    params.unknown(dict(request.query_params), COMMON)
    alert_id = _alert_id(request)
    ack = request.app.state.acks.get(alert_id)
    if ack is None:
        return JSON({"alert_id": alert_id, "acknowledged": False, "by": None, "at_ns": None})
    return JSON({"alert_id": alert_id, "acknowledged": True, "by": ack.by, "at_ns": ack.at_ns})


async def post_ack(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    params.unknown(dict(request.query_params), COMMON)
    alert_id = _alert_id(request)
    try:
        body = await request.json()
    except ValueError:
        raise ParamError("body", 'must be a JSON object {"by": NAME}') from None
    if not isinstance(body, dict) or set(body) - {"by"}:
        raise ParamError("body", 'must be a JSON object {"by": NAME} and nothing else')
    by = body.get("by")
    if not isinstance(by, str) or not 1 <= len(by) <= 100 or any(ord(c) < 32 for c in by):
        raise ParamError("by", "must be a name of 1-100 printable characters")
    if not await run_in_threadpool(_known_alert, request, alert_id):
        return JSON({"error": f"no alert {alert_id!r}: neither in the delivery ledger nor relayed live",
                     "parameter": "alert_id"}, status_code=404)
    ack, new = request.app.state.acks.acknowledge(alert_id, by)
    return JSON({"alert_id": alert_id, "acknowledged": True, "by": ack.by, "at_ns": ack.at_ns},
                status_code=201 if new else 200)


async def live_state(request: Request) -> Response:
    """The relay's latest state per instrument (what a browser gets first on the WebSocket)."""
    params.unknown(dict(request.query_params), COMMON)
    hub = request.app.state.hub
    return JSON({"connected": False, "instruments": {}} if hub is None else hub.snapshot())


async def dagster_rows(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from tapeflow.serve.dagster_reads import read

    query = dict(request.query_params)
    params.unknown(query, ("limit",) + COMMON)
    limit = params.limit(query)
    kind = "runs" if request.url.path.endswith("/runs") else "quality"
    return JSON(await run_in_threadpool(read, request.app.state.settings.dagster_home, kind, limit))


def bad_parameter(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ParamError)
    return JSON({"error": str(exc), "parameter": exc.parameter}, status_code=400)


def storage_failed(request: Request, exc: Exception) -> Response:
    return JSON({"error": str(exc).splitlines()[0]}, status_code=503)
