"""A local server of Databento's historical HTTP API, serving real DBN files (tests, the demo).

What it implements (``/v0/...``, HTTP Basic with the API key as the user name, form bodies):

- ``metadata.get_cost`` / ``metadata.get_billable_size`` / ``metadata.get_record_count``: computed
  from the records the same request to ``timeseries.get_range`` would return (billable size =
  their uncompressed bytes; cost = that in GB x the schema's unit price, :data:`UNIT_PRICES_USD_PER_GB`),
  except for the exact requests of the API test vectors, which get the vectors' answers;
- ``timeseries.get_range``: the records of the served files of that dataset and schema whose
  symbol is requested and whose ``ts_recv`` (``ts_event`` where the schema has none) is in
  ``[start, end)``, up to ``limit``, behind the first file's metadata; zstd when asked;
- GET endpoints of the vectors (``metadata.list_datasets``, ...) answered from the vectors;
- errors as the API gives them: JSON ``{"detail": ...}`` with 400 (a user name with illegal
  characters, the vectors' message), 401 (a wrong key), 422 (no data of that dataset and schema).

Not implemented: batch jobs, symbology resolution, ``X-Warning`` headers, metadata rewritten to
the request's range (the first served file's metadata is sent as it is).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from aiohttp import web

from tapeflow.venues.databento.framing import cut_records, read_all, read_dbn_header
from tapeflow.venues.databento.historical import parse_time_ns
from tapeflow.venues.databento.messages import record_dtype

# US dollars per GB of billable data (``metadata.list_unit_prices`` of the test vectors where given)
UNIT_PRICES_USD_PER_GB = {"mbo": 21.05, "mbp-1": 82.05, "status": 62.72}
DEFAULT_PRICE_USD_PER_GB = 10.0
_USERNAME = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass
class _Served:
    dataset: str
    schema: str
    ids: dict[str, set[int]]  # requested symbol -> instrument ids
    meta: bytes
    records: bytes
    offsets: np.ndarray
    lengths: np.ndarray
    ts: np.ndarray  # ts_recv (or ts_event) per record
    iid: np.ndarray


def _load(path: Path) -> _Served:
    header = read_dbn_header(path)
    meta = header.metadata
    raw = read_all(path)
    buf = np.frombuffer(raw, dtype=np.uint8)
    cut = cut_records(buf, header.records_at, None)
    ts = np.zeros(cut.offsets.size, dtype=np.uint64)
    iid = np.zeros(cut.offsets.size, dtype=np.uint32)
    for key in np.unique(buf[cut.offsets + 1].astype(np.int64) * 4096 + cut.lengths).tolist():
        rtype, length = divmod(key, 4096)
        sel = np.flatnonzero((buf[cut.offsets + 1] == rtype) & (cut.lengths == length))
        dtype = record_dtype(rtype, length)
        if dtype is None:
            continue
        rows = [buf[o: o + dtype.itemsize] for o in cut.offsets[sel].tolist()]
        recs = np.stack(rows).view(dtype).reshape(-1)
        ts[sel] = recs["ts_recv"] if "ts_recv" in dtype.names else recs["ts_event"]
        iid[sel] = recs["instrument_id"]
    ids: dict[str, set[int]] = {}
    for symbol, intervals in (meta.mappings or {}).items():
        for interval in intervals:
            text = str(interval["symbol"] if isinstance(interval, dict) else interval.symbol)
            if text.isdigit():
                ids.setdefault(symbol, set()).add(int(text))
    return _Served(meta.dataset, str(meta.schema), ids, raw[: header.records_at], raw, cut.offsets,
                   cut.lengths, ts, iid)


class MockHistorical:
    """The server; ``with MockHistorical(files, key) as server: server.url``.

    Args:
        files: DBN files to serve (their metadata says dataset, schema and symbols).
        key: the API key it accepts.
        vectors: the ``historical_http`` part of ``databento_api_test_vectors.json`` (optional).
        vector_files: where the vectors' ``response_body_file`` names are found.
    """

    def __init__(self, files: list[Path], key: str, *, vectors: dict[str, Any] | None = None,
                 vector_files: Path | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.served = [_load(Path(p)) for p in files]
        self.key = key
        self.vectors = list((vectors or {}).get("endpoints", []))
        self.vector_files = vector_files
        self.requests: list[tuple[str, dict[str, str]]] = []  # (endpoint, form) in arrival order
        self.agents: list[str] = []  # each request's User-Agent, in the same order
        self.ssl_context = ssl_context  # serve https (the official client reaches only https)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> MockHistorical:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                        name="mock-databento-hist")
        self._thread.start()
        ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/v0/{endpoint}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if self.ssl_context is not None else 'http'}://127.0.0.1:{port}"
        ready.set()
        loop.run_forever()
        loop.close()

    # -- requests -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" \
            else dict(request.query)
        self.requests.append((endpoint, form))
        self.agents.append(request.headers.get("User-Agent", ""))
        user = _basic_user(request.headers.get("Authorization", ""))
        if user is None or not _USERNAME.match(user):
            return _error(400, "Authorization failed: illegal chars in username.")
        if user != self.key:
            return _error(401, "Authentication failed.")
        vector = self._vector(request.method, endpoint, form)
        if vector is not None:
            return self._vector_response(vector)
        if endpoint == "timeseries.get_range":
            return self._get_range(form)
        if endpoint in ("metadata.get_cost", "metadata.get_billable_size", "metadata.get_record_count"):
            picked = self._select(form)
            if isinstance(picked, web.Response):
                return picked
            size = sum(int(served.lengths[rows].sum()) for served, rows in picked)
            if endpoint == "metadata.get_record_count":
                return web.json_response(sum(int(rows.size) for _, rows in picked))
            if endpoint == "metadata.get_billable_size":
                return web.json_response(size)
            price = UNIT_PRICES_USD_PER_GB.get(picked[0][0].schema, DEFAULT_PRICE_USD_PER_GB)
            return web.json_response(round(size / 1e9 * price, 9))
        return _error(404, f"unknown endpoint {endpoint}")

    def _vector(self, method: str, endpoint: str, form: dict[str, str]) -> dict[str, Any] | None:
        got = _normalized(form)
        for v in self.vectors:
            if v["method"] != method or v["path"] != f"/v0/{endpoint}" or "status" in v:
                continue
            if _normalized({k: str(x) for k, x in v.get("form", v.get("params", {})).items()}) == got:
                return v
        return None

    def _vector_response(self, vector: dict[str, Any]) -> web.Response:
        if "response_body_file" in vector and self.vector_files is not None:
            body = (self.vector_files / vector["response_body_file"]).read_bytes()
            return web.Response(body=body, content_type="application/octet-stream")
        return web.json_response(vector["response"])

    def _select(self, form: dict[str, str]) -> list[tuple[_Served, np.ndarray]] | web.Response:
        try:
            start = parse_time_ns(form["start"])
            end = parse_time_ns(form["end"]) if form.get("end") else 2**63 - 1
            limit = int(form["limit"]) if form.get("limit") else None
        except (KeyError, ValueError) as exc:
            return _error(422, f"bad request parameter: {type(exc).__name__}: {exc}")
        dataset, schema = form.get("dataset"), form.get("schema")
        served = [s for s in self.served if s.dataset == dataset and s.schema == schema]
        if not served:
            return _error(422, f"no data for dataset {dataset!r} and schema {schema!r}")
        symbols = [s for s in form.get("symbols", "ALL_SYMBOLS").split(",") if s]
        # the served files of one dataset and schema are one stream, in the order of their first record
        picked: list[tuple[_Served, np.ndarray]] = []
        left = limit
        for s in sorted(served, key=lambda f: int(f.ts.min()) if f.ts.size else 0):
            keep = (s.ts >= start) & (s.ts < end)
            if symbols and symbols != ["ALL_SYMBOLS"]:
                ids = set().union(*(s.ids.get(sym, set()) for sym in symbols))
                keep &= np.isin(s.iid, list(ids))
            rows = np.flatnonzero(keep)
            if left is not None:
                rows, left = rows[:left], max(0, left - rows.size)
            if rows.size:
                picked.append((s, rows))
        return picked or [(served[0], np.zeros(0, dtype=np.int64))]

    def _get_range(self, form: dict[str, str]) -> web.Response:
        picked = self._select(form)
        if isinstance(picked, web.Response):
            return picked
        body = picked[0][0].meta + b"".join(
            served.records[o: o + n] for served, rows in picked
            for o, n in zip(served.offsets[rows].tolist(), served.lengths[rows].tolist(), strict=True))
        if form.get("compression", "none") == "zstd":
            body = zstandard.ZstdCompressor().compress(body)
        return web.Response(body=body, content_type="application/octet-stream")


_DEFAULTS = {"stype_in": "raw_symbol", "stype_out": "instrument_id", "encoding": "dbn"}


def _normalized(form: dict[str, str]) -> dict[str, str]:
    """A request's form with the client's defaults left out and times as ns (for matching vectors)."""
    out = {k: v for k, v in form.items() if _DEFAULTS.get(k) != v and k != "compression"}
    for k in ("start", "end"):
        if k in out:
            try:
                out[k] = str(parse_time_ns(out[k]))
            except ValueError:
                pass
    return out


def _basic_user(header: str) -> str | None:
    if not header.startswith("Basic "):
        return None
    try:
        return base64.b64decode(header[6:]).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None


def _error(status: int, detail: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"detail": detail}, separators=(",", ":")),
                        content_type="application/json")
