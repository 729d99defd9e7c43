"""Option definitions and chains: what each option is (underlying, expiry, strike, call or put),
from Databento definition records (OPRA, CME Globex), Deribit's ``public/get_instruments`` answers
and Deribit instrument names.

Databento's ``instrument`` rows (``tapeflow.venues.databento``) keep the whole definition record in
``raw``: strike (1e-9 units), underlying symbol and instrument class come from there. A chain is
the definitions of one venue and underlying grouped by expiry, strikes ascending, calls and puts
side by side. An option whose definition lacks its strike, expiry or underlying is a dead letter
(``rejected``, reason ``missing_field``), never a silent gap in its chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa

from tapeflow.errors import BadInput
from tapeflow.options.instruments import parse_option_name
from tapeflow.schemas.records import REJECTED
from tapeflow.wire.rejects import Reason

UNDEF_I64 = (1 << 63) - 1  # Databento's "no value" for an int64 field
NANOS = 1_000_000_000
DEFINITION_SCHEMA = pa.schema([
    pa.field("venue", pa.string()),
    pa.field("symbol", pa.string()),
    pa.field("instrument_id", pa.int64()),
    pa.field("underlying", pa.string()),
    pa.field("expiry_ns", pa.int64()),
    pa.field("strike_nanos", pa.int64()),
    pa.field("right", pa.string()),  # C call, P put
    pa.field("multiplier_nanos", pa.int64()),  # contract multiplier, 0 where the venue gives none
    pa.field("currency", pa.string()),
])


def from_databento(instrument: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The option rows of Databento ``instrument`` rows (classes ``C`` and ``P``; others skipped:
    futures, spreads and equities are no options) -> (definitions, rejected)."""
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for i, row in enumerate(instrument.to_pylist()):
        if row["instrument_class"] not in ("C", "P"):
            continue
        raw = orjson.loads(row["raw"]) if row["raw"] else {}
        strike, underlying, expiry = raw.get("strike_price"), raw.get("underlying"), row["expiration_ns"]
        missing = [name for name, value in (("strike_price", strike), ("underlying", underlying),
                                            ("expiration", expiry))
                   if value in (None, "", UNDEF_I64) or (isinstance(value, int) and value < 0)]
        if missing:
            bad.append(_rejected(row, Reason.MISSING_FIELD,
                                 f"option {row['symbol']!r}: definition without {', '.join(missing)}",
                                 f"instrument row {i}"))
            continue
        multiplier = row["multiplier_nanos"]
        rows.append(dict(venue=row["venue"], symbol=row["symbol"], instrument_id=row["instrument_id"],
                         underlying=underlying, expiry_ns=expiry, strike_nanos=strike,
                         right=row["instrument_class"],
                         multiplier_nanos=0 if multiplier in (None, UNDEF_I64) else multiplier,
                         currency=row["currency"]))
    return _table(rows), _rejects(bad)


def from_deribit_names(names: Iterable[str], venue: str = "deribit") -> tuple[pa.Table, pa.Table]:
    """Definitions from Deribit option names (``BTC-30APR21-60000-C``) -> (definitions, rejected);
    futures, perpetuals and combos are skipped, a damaged name is a dead letter."""
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for i, name in enumerate(dict.fromkeys(names)):
        try:
            opt = parse_option_name(name)
        except BadInput as exc:
            if exc.reason is not Reason.UNSUPPORTED_CHANNEL:
                bad.append(_rejected({"venue": venue, "symbol": name, "ts_event_ns": 0, "ts_recv_ns": 0},
                                     exc.reason, exc.detail, f"name {i}"))
            continue
        rows.append(dict(venue=venue, symbol=name, instrument_id=-1, underlying=opt.underlying,
                         expiry_ns=opt.expiry_ns, strike_nanos=opt.strike_nanos,
                         right="C" if opt.is_call else "P", multiplier_nanos=0, currency=""))
    return _table(rows), _rejects(bad)


def from_deribit_instruments(body: bytes, venue: str = "deribit") -> tuple[pa.Table, pa.Table]:
    """Definitions from a Deribit ``public/get_instruments`` answer (JSON-RPC ``result`` list, the
    fields of Deribit's API reference v2.1.1) -> (definitions, rejected).

    Options only (``kind`` ``option``; futures, spot and combos skipped). Each option's fields
    (``strike``, ``expiration_timestamp``, ``option_type``, ``base_currency``) must agree with its
    ``instrument_name``; one that does not, or lacks one, is a dead letter naming the field. An
    error answer or a body that is no JSON-RPC result is one dead letter.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _table([]), _rejects([_answer(venue, body, Reason.BAD_JSON, f"not JSON: {exc}")])
    if not isinstance(doc, dict) or "error" in doc or not isinstance(doc.get("result"), list):
        error = isinstance(doc, dict) and "error" in doc
        why = f"error answer: {doc['error']}" if error else "no result list"
        reason = Reason.VENUE_ERROR if error else Reason.BAD_SHAPE
        return _table([]), _rejects([_answer(venue, body, reason, why)])
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for i, item in enumerate(doc["result"]):
        if not isinstance(item, dict):
            bad.append(_answer(venue, orjson.dumps(item), Reason.BAD_SHAPE, f"result[{i}] is no object"))
            continue
        if item.get("kind") != "option":
            continue
        try:
            rows.append(_deribit_option(item, venue))
        except BadInput as exc:
            bad.append(_answer(venue, orjson.dumps(item), exc.reason, f"result[{i}]: {exc.detail}",
                               str(item.get("instrument_name", ""))))
    return _table(rows), _rejects(bad)


def _deribit_option(item: dict[str, Any], venue: str) -> dict[str, Any]:
    name = item.get("instrument_name")
    if not isinstance(name, str):
        raise BadInput(Reason.MISSING_FIELD, "no instrument_name")
    opt = parse_option_name(name)
    for field in ("strike", "expiration_timestamp", "option_type", "base_currency", "contract_size"):
        if item.get(field) in (None, ""):
            raise BadInput(Reason.MISSING_FIELD, f"option {name!r} without {field}")
    strike_nanos = round(float(item["strike"]) * NANOS)
    expiry_ns = int(item["expiration_timestamp"]) * 1_000_000
    right = {"call": "C", "put": "P"}.get(item["option_type"])
    said = {"strike": (strike_nanos, opt.strike_nanos), "expiration_timestamp": (expiry_ns, opt.expiry_ns),
            "option_type": (right, "C" if opt.is_call else "P"),
            "base_currency": (item["base_currency"], opt.underlying.split("_")[0])}
    for field, (value, from_name) in said.items():
        if value != from_name:
            raise BadInput(Reason.BAD_FIELD,
                           f"option {name!r}: {field} {item[field]!r} disagrees with the name")
    return dict(venue=venue, symbol=name, instrument_id=int(item.get("instrument_id", -1)),
                underlying=opt.underlying, expiry_ns=expiry_ns, strike_nanos=strike_nanos, right=right,
                multiplier_nanos=round(float(item["contract_size"]) * NANOS),
                currency=str(item.get("settlement_currency") or item.get("quote_currency") or ""))


def _answer(venue: str, raw: bytes, reason: Reason, detail: str, symbol: str = "") -> dict[str, Any]:
    return {"ts_event_ns": 0, "ts_recv_ns": 0, "venue": venue, "symbol": symbol, "reason": str(reason),
            "detail": detail, "location": "public/get_instruments", "raw": raw}


def chains(definitions: pa.Table) -> pa.Table:
    """One row per (venue, underlying, expiry, strike): the call's and the put's symbol ('' where
    the chain lacks one), sorted by venue, underlying, expiry and strike."""
    pairs: dict[tuple[str, str, int, int], dict[str, str]] = {}
    for row in definitions.to_pylist():
        key = (row["venue"], row["underlying"], row["expiry_ns"], row["strike_nanos"])
        pairs.setdefault(key, {"C": "", "P": ""})[row["right"]] = row["symbol"]
    keys = sorted(pairs)
    return pa.table({
        "venue": pa.array([k[0] for k in keys], pa.string()),
        "underlying": pa.array([k[1] for k in keys], pa.string()),
        "expiry_ns": pa.array([k[2] for k in keys], pa.int64()),
        "strike_nanos": pa.array([k[3] for k in keys], pa.int64()),
        "call": pa.array([pairs[k]["C"] for k in keys], pa.string()),
        "put": pa.array([pairs[k]["P"] for k in keys], pa.string()),
    })


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DEFINITION_SCHEMA)


def _rejected(row: dict[str, Any], reason: Reason, detail: str, location: str) -> dict[str, Any]:
    raw = row.get("raw") or b""
    return {"ts_event_ns": row.get("ts_event_ns", 0), "ts_recv_ns": row.get("ts_recv_ns", 0),
            "venue": row.get("venue", ""), "symbol": row.get("symbol", ""), "reason": str(reason),
            "detail": detail, "location": location, "raw": raw.encode() if isinstance(raw, str) else raw}


def _rejects(rows: list[dict[str, Any]]) -> pa.Table:
    if not rows:
        return REJECTED.empty_table()
    return REJECTED.table({name: [r[name] for r in rows] for name in REJECTED.column_names})
