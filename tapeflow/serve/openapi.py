"""The OpenAPI 3.1 document of the read API, built from the same tables the handlers use
(:data:`~tapeflow.serve.history.DATASETS`, :data:`~tapeflow.serve.history.FILTERS`, the records'
fields), so a route or a column cannot change without its description; Schemathesis checks the
server against it in the tests."""

from __future__ import annotations

from typing import Any

from tapeflow.schemas import RecordType
from tapeflow.serve import params
from tapeflow.serve.encode import MEDIA_TYPES
from tapeflow.serve.history import DATASETS, FILTERS

_KIND_SCHEMA: dict[str, dict[str, Any]] = {
    "i64": {"type": "integer"},
    "i32": {"type": "integer"},
    "u64": {"type": "integer", "minimum": 0},
    "u32": {"type": "integer", "minimum": 0},
    "u16": {"type": "integer", "minimum": 0},
    "u8": {"type": "integer", "minimum": 0},
    "f64": {"type": ["number", "null"]},  # NaN travels as null
    "bool": {"type": "boolean"},
    "str": {"type": "string"},
    "lstr": {"type": "string"},
    "bytes": {"type": "string"},
    "list_i64": {"type": "array", "items": {"type": "integer"}},
}
_DESCRIPTIONS = {
    "bars": "Bars (OHLCV, buy/sell volume): each bar's final revision.",
    "snapshots": "Top-N book snapshots (the 1 s grid by default).",
    "metrics": "Book and flow metrics on the snapshot grid (spread, microprice, imbalance, OFI, CVD).",
    "signals": "Detector signals with confidence and evidence.",
    "status": "Feed-health events (connected, resyncing, stale, degraded, gap, ...).",
    "trades": "Trades.",
    "bbo": "Best bid and offer rebuilt from the book, at each change.",
    "alerts": "The alert delivery ledger: one row per delivery attempt outcome.",
    "option_tickers": "Option tickers with tapeflow's Black-76 implied vol of the mark beside the venue's "
                      "(symbol: the option, e.g. BTC-30APR21-60000-C).",
    "surfaces": "Implied-vol surfaces per underlying (symbol: BTC), snapshot and expiry: ATM IV, 25-delta "
                "risk reversal and butterfly, total variance, no-arbitrage counts.",
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}


def _param(
    name: str, description: str, schema: dict[str, Any], where: str = "query", required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description, "schema": schema}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# what params.text accepts: printable characters (no control characters), up to 200
_PRINTABLE = "^[^\\x00-\\x1f]*$"
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": _PRINTABLE}
_TIME = {
    "type": "string",
    "maxLength": 64,
    "pattern": r"^([0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)$",
    "description": "integer ns since the epoch, or an ISO-8601 time (UTC unless it says otherwise)",
}
_BAD = _json({"$ref": "#/components/schemas/Error"}, "a bad parameter; `parameter` names it")
_UNAVAILABLE = _json({"$ref": "#/components/schemas/Error"}, "the history store cannot be read")
_UNAUTHORIZED = _json({"$ref": "#/components/schemas/Error"}, "a token is set and the request lacks it")
_TOKEN = _param("token", "the bearer token, where a header cannot be set", {"type": "string"})


def _row_schema(record: RecordType) -> dict[str, Any]:
    return {
        "type": "object",
        "required": record.column_names,
        "additionalProperties": False,
        "properties": {f.name: {**_KIND_SCHEMA[f.kind], "description": f.doc} for f in record.fields},
    }


def _dataset_path(name: str, record: RecordType) -> dict[str, Any]:
    parameters = [
        _param("venue", "only this venue", _TEXT),
        _param("symbol", "only this instrument", _TEXT),
        _param("start", "first ts_event_ns included", _TIME),
        _param("end", "first ts_event_ns excluded (after start)", _TIME),
        _param(
            "cursor",
            "where the page starts: the `next_cursor` of the previous page (format=json)",
            {"type": "string", "pattern": r"^[0-9]+_[0-9]+$", "maxLength": 64},
        ),
        _param(
            "limit",
            "rows per page (format=json)",
            {"type": "integer", "minimum": 1, "maximum": params.MAX_LIMIT, "default": params.DEFAULT_LIMIT},
        ),
        _param(
            "format",
            "json: one page; arrow, parquet, csv: the whole range, streamed",
            {"type": "string", "enum": list(params.FORMATS), "default": "json"},
        ),
    ]
    parameters += [_param(c, f"only rows whose {c} equals this", _TEXT) for c in FILTERS.get(name, ())]
    if name == "signals":
        parameters.append(
            _param(
                "min_confidence",
                "only signals at least this confident",
                {"type": "number", "minimum": 0, "maximum": 1},
            )
        )
    parameters.append(_TOKEN)
    page = {
        "type": "object",
        "required": ["dataset", "source", "rows", "next_cursor"],
        "properties": {
            "dataset": {"const": name},
            "source": {"enum": ["lake", "clickhouse"]},
            "rows": {"type": "array", "items": {"$ref": f"#/components/schemas/{record.name}"}},
            "next_cursor": _NULLABLE_STR,
        },
    }
    ok = _json(page, "one page, in ts_event_ns order")
    ok["content"] |= {
        MEDIA_TYPES[f]: {"schema": {"type": "string", "format": "binary"}}
        for f in ("arrow", "parquet", "csv")
    }
    return {
        "get": {
            "operationId": f"get_{name}",
            "summary": _DESCRIPTIONS[name],
            "tags": ["history"],
            "parameters": parameters,
            "responses": {"200": ok, "400": _BAD, "401": _UNAUTHORIZED, "503": _UNAVAILABLE},
        }
    }


def _simple(
    operation: str,
    summary: str,
    schema: dict[str, Any],
    extra: list[dict[str, Any]] | None = None,
    *,
    tag: str = "status",
    errors: tuple[str, ...] = ("400", "401"),
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(schema, summary)}
    table = {"400": _BAD, "401": _UNAUTHORIZED, "503": _UNAVAILABLE}
    responses |= {code: table[code] for code in errors}
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": [tag],
            "parameters": [*(extra or []), _TOKEN],
            "responses": responses,
        }
    }


def document() -> dict[str, Any]:
    """The OpenAPI document served at ``/openapi.json``."""
    instrument = {
        "type": "object",
        "required": ["venue", "symbol", "datasets", "first_date", "last_date", "live"],
        "properties": {
            "venue": {"type": "string"},
            "symbol": {"type": "string"},
            "datasets": {"type": "array", "items": {"type": "string"}},
            "first_date": _NULLABLE_STR,
            "last_date": _NULLABLE_STR,
            "live": {"type": "boolean"},
        },
    }
    feed = {
        "type": "object",
        "required": ["venue", "symbol", "source"],
        "properties": {
            "venue": {"type": "string"},
            "symbol": {"type": "string"},
            "state": {"type": "string"},
            "since_ns": _NULLABLE_INT,
            "detail": _NULLABLE_STR,
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "source": {"enum": ["live", "lake"]},
        },
    }
    ack = {
        "type": "object",
        "required": ["alert_id", "acknowledged", "by", "at_ns"],
        "properties": {
            "alert_id": {"type": "string"},
            "acknowledged": {"type": "boolean"},
            "by": _NULLABLE_STR,
            "at_ns": _NULLABLE_INT,
        },
    }
    dagster = {
        "type": "object",
        "required": ["source", "detail", "rows"],
        "properties": {
            "source": {"enum": ["dagster", "none"]},
            "detail": {"type": "string"},
            "rows": {"type": "array", "items": {"type": "object"}},
        },
    }
    alert_id = _param(
        "alert_id",
        "the alert's id (the ledger's alert_id)",
        {"type": "string", "minLength": 1, "maxLength": 128, "pattern": _PRINTABLE},
        "path",
        True,
    )
    paths: dict[str, Any] = {
        "/health": _simple(
            "health",
            "the process answers",
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
            errors=("400",),
        ),
        "/ready": _simple(
            "ready",
            "history can be read (503 when it cannot)",
            {
                "type": "object",
                "required": ["ready", "history", "live"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "history": {"type": "string"},
                    "live": {"type": ["object", "null"]},
                },
            },
            errors=("400", "503"),
        ),
        "/api/v1/instruments": _simple(
            "instruments",
            "instruments with history or live data",
            {
                "type": "object",
                "required": ["source", "instruments"],
                "properties": {
                    "source": {"type": "string"},
                    "instruments": {"type": "array", "items": instrument},
                },
            },
            tag="history",
            errors=("400", "401", "503"),
        ),
        "/api/v1/feed": _simple(
            "feed",
            "each instrument's feed state, live when relayed, else the lake's last",
            {
                "type": "object",
                "required": ["feeds"],
                "properties": {"feeds": {"type": "array", "items": feed}},
            },
            [
                _param("venue", "only this venue", _TEXT),
                _param("symbol", "only this instrument", _TEXT),
            ],
            errors=("400", "401", "503"),
        ),
        "/api/v1/live": _simple(
            "live",
            "the relay's latest state per instrument",
            {
                "type": "object",
                "required": ["connected", "instruments"],
                "properties": {
                    "connected": {"type": "boolean"},
                    "instruments": {"type": "object"},
                    "alerts": {"type": "array", "items": {"type": "object"}},
                },
            },
        ),
        "/api/v1/alerts/{alert_id}/ack": {
            "get": {
                "operationId": "get_ack",
                "summary": "an alert's acknowledgement",
                "tags": ["alerts"],
                "parameters": [alert_id, _TOKEN],
                "responses": {"200": _json(ack, "acknowledged or not"), "400": _BAD, "401": _UNAUTHORIZED},
            },
            "post": {
                "operationId": "post_ack",
                "summary": "acknowledge an alert (the first acknowledgement stands)",
                "tags": ["alerts"],
                "parameters": [alert_id, _TOKEN],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["by"],
                                "additionalProperties": False,
                                "properties": {
                                    "by": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 100,
                                        "pattern": _PRINTABLE,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(ack, "already acknowledged: the standing one"),
                    "201": _json(ack, "acknowledged now"),
                    "400": _BAD,
                    "401": _UNAUTHORIZED,
                    "404": _json({"$ref": "#/components/schemas/Error"}, "no such alert"),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/v1/quality": _simple(
            "quality",
            "asset-check evaluations (Dagster), newest first",
            dagster,
            [_param("limit", "rows", {"type": "integer", "minimum": 1, "maximum": params.MAX_LIMIT})],
            tag="dagster",
        ),
        "/api/v1/runs": _simple(
            "runs",
            "Dagster runs, newest first",
            dagster,
            [_param("limit", "rows", {"type": "integer", "minimum": 1, "maximum": params.MAX_LIMIT})],
            tag="dagster",
        ),
    }
    for name, record in DATASETS.items():
        paths[f"/api/v1/{name}"] = _dataset_path(name, record)
    schemas = {record.name: _row_schema(record) for record in DATASETS.values()} | {"Error": _ERROR}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tapeflow read API",
            "version": "1",
            "description": "History from the lake (or ClickHouse), live state from the flow's relay. "
            "With a token set, send `Authorization: Bearer TOKEN` (or `?token=`).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
