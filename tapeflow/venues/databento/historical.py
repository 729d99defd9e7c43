"""A client of Databento's historical HTTP API: the three endpoints the cost guard needs.

Against an ``https://`` gateway (the real API, ``https://hist.databento.com``) every request goes
through the official client, ``databento.Historical`` (0.88.0): ``metadata.get_cost``,
``metadata.get_billable_size`` and ``timeseries.get_range``, its errors turned into
:class:`DatabentoApiError`. The official client rewrites every gateway URL to ``https://``
(``validate_gateway``), so it cannot reach a plain-``http://`` server: against one (the tests' and
the demo's loopback server) this module speaks the same documented API itself (``POST
/v0/metadata.get_cost``, ``/v0/metadata.get_billable_size``, ``/v0/timeseries.get_range``: form
bodies, HTTP Basic with the API key as the user name, JSON answers; ``get_range`` streams DBN).
tests/databento/test_official_historical.py runs the official path against the same loopback server
over TLS and checks it answers as this one does. docs/databento.md says more.

The API key is a :class:`~tapeflow.secrets.Secret`: revealed only into the ``Authorization``
header (or the official client, which sends it there), and scrubbed from any error text quoted in
an exception.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.auth import HTTPBasicAuth

from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.pullcache import FOREVER, PullCache
from tapeflow.secrets import Secret, scrub

API_VERSION = 0
READ_BYTES = 1 << 16
USER_AGENT = "tapeflow"
VENDOR = "databento"  # the pull cache's vendor name


def parse_time_ns(text: str) -> int:
    """A request's ``start``/``end``: ns since the epoch, or an ISO date/time (UTC unless it says)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


class DatabentoApiError(TapeflowError):
    """The historical API answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status (0 when no answer came).
        reason: ``http_error`` or ``connection_error`` (the spend ledger's reason).
    """

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.reason = "http_error" if status else "connection_error"


@dataclass(frozen=True)
class RangeRequest:
    """One historical request: a dataset, a schema, symbols and ``[start_ns, end_ns)``.

    Attributes:
        dataset: the dataset code, e.g. ``GLBX.MDP3``.
        schema: the DBN schema, e.g. ``mbo``.
        symbols: the symbols (``stype_in`` spelling); empty: every symbol (``ALL_SYMBOLS``).
        start_ns, end_ns: the range, ns UTC (filters on ``ts_recv`` where the schema has one).
        stype_in: the input symbology.
        limit: the most records to return (None: no limit).
    """

    dataset: str
    schema: str
    symbols: tuple[str, ...]
    start_ns: int
    end_ns: int
    stype_in: str = "raw_symbol"
    limit: int | None = None

    def __post_init__(self) -> None:
        if not self.dataset or not self.schema:
            raise ConfigError("a Databento request needs a dataset and a schema")
        if self.end_ns <= self.start_ns:
            raise ConfigError(f"a Databento request's end ({self.end_ns}) must be after its start "
                              f"({self.start_ns})")

    def form(self) -> dict[str, str]:
        """The form body the metadata endpoints take."""
        out = {"dataset": self.dataset, "start": str(self.start_ns), "end": str(self.end_ns),
               "symbols": ",".join(self.symbols) or "ALL_SYMBOLS", "schema": self.schema,
               "stype_in": self.stype_in, "stype_out": "instrument_id"}
        if self.limit is not None:
            out["limit"] = str(self.limit)
        return out

    @property
    def request_id(self) -> str:
        """A stable id of the request (the same range asked twice has the same id)."""
        text = "|".join(f"{k}={v}" for k, v in sorted(self.form().items()))
        return hashlib.sha1(text.encode()).hexdigest()[:16]


class HistoricalClient:
    """``metadata.get_cost``, ``metadata.get_billable_size`` and ``timeseries.get_range``.

    Args:
        key: the API key.
        base_url: the API's base URL (``https://hist.databento.com``; a local server's
            ``http://127.0.0.1:PORT`` in tests).
        timeout_s: connect and read limit of one request.
    """

    def __init__(self, key: Secret, base_url: str, *, timeout_s: float = 100.0,
                 cache: PullCache | None = None) -> None:
        if not isinstance(key, Secret):
            raise ConfigError("the Databento API key must be a Secret (DATABENTO_API_KEY or its _FILE)")
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.cache = cache

    def settled(self, request: RangeRequest) -> bool:
        """Whether ``request``'s answers may come from the pull cache: a cache is set and the range
        is settled (ended before the market's last close and ``settle_s`` ago: its data, cost and
        size no longer change). A range into the open session is always asked again."""
        if self.cache is None:
            return False
        return self.cache.expiry_ns(self.cache.clock_ns(), request.end_ns) == FOREVER

    def cached_range(self, request: RangeRequest) -> bytes | None:
        """The DBN bytes of a settled ``request`` already pulled, or None."""
        if not self.settled(request):
            return None
        assert self.cache is not None
        return self.cache.get(VENDOR, "timeseries.get_range", request.form())

    def keep_range(self, request: RangeRequest, path: Path) -> None:
        """Put a settled ``request``'s landed file in the pull cache (nothing for an unsettled one)."""
        if self.settled(request):
            assert self.cache is not None
            self.cache.put(VENDOR, "timeseries.get_range", request.form(), Path(path).read_bytes(),
                           end_ns=request.end_ns)

    def __repr__(self) -> str:
        return f"HistoricalClient({self.base_url}, key={self._key!r})"

    @property
    def official(self) -> bool:
        """Whether requests go through the official ``databento.Historical`` (an https gateway)."""
        return self.base_url.startswith("https://")

    def get_cost(self, request: RangeRequest) -> float:
        """The cost of ``request`` in US dollars (``POST metadata.get_cost``; a settled range's answer
        from the pull cache when there is one)."""
        return float(self._metadata("metadata.get_cost", request))

    def get_billable_size(self, request: RangeRequest) -> int:
        """The bytes ``request`` would bill (``POST metadata.get_billable_size``, cached as ``get_cost``)."""
        return int(self._metadata("metadata.get_billable_size", request))

    def _metadata(self, endpoint: str, request: RangeRequest) -> Any:
        def ask() -> Any:
            if self.official:
                return self._official_call(endpoint, request)
            return self._json(endpoint, request.form())

        if not self.settled(request):
            return ask()
        assert self.cache is not None
        body = self.cache.fetch(VENDOR, endpoint, request.form(), lambda: json.dumps(ask()).encode(),
                                end_ns=request.end_ns)
        return json.loads(body)

    def _official_call(self, endpoint: str, request: RangeRequest, path: Path | None = None) -> Any:
        """``endpoint`` through ``databento.Historical`` (imported here: it pulls in pandas)."""
        import databento

        client = databento.Historical(key=self._key.reveal(), gateway=self.base_url)
        form = request.form()
        args: dict[str, Any] = {"dataset": request.dataset, "start": request.start_ns, "end": request.end_ns,
                                "symbols": form["symbols"], "schema": request.schema,
                                "stype_in": request.stype_in, "limit": request.limit}
        try:
            if endpoint == "metadata.get_cost":
                return client.metadata.get_cost(**args)
            if endpoint == "metadata.get_billable_size":
                return client.metadata.get_billable_size(**args)
            assert endpoint == "timeseries.get_range" and path is not None
            client.timeseries.get_range(**args, stype_out="instrument_id", path=path)
            return None
        except databento.BentoHttpError as exc:
            body = exc.http_body.decode("utf-8", "replace") if isinstance(exc.http_body, bytes) \
                else str(exc.http_body or exc.message or "")
            raise DatabentoApiError(f"Databento {endpoint} answered HTTP {exc.http_status}: "
                                    f"{scrub(body[:500], [self._key])}", int(exc.http_status or 0)) from None
        except (databento.BentoError, requests.RequestException, OSError, ValueError) as exc:
            # the official client's text may quote the request; keep its type and a scrubbed text
            raise DatabentoApiError(f"Databento {endpoint} through the official client failed: "
                                    f"{type(exc).__name__}: {scrub(str(exc)[:300], [self._key])}") from None

    def get_range(self, request: RangeRequest, path: Path) -> int:
        """Stream ``request``'s DBN (zstd) into ``path`` (``POST timeseries.get_range``).

        The bytes go to ``path`` + ``.part`` first and are renamed when complete, so a landing
        sensor never reads a download in progress.

        Returns:
            the bytes written.
        """
        form = {**request.form(), "encoding": "dbn", "compression": "zstd"}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        if self.official:
            part.unlink(missing_ok=True)  # the official client opens it exclusively ("x+b")
            try:
                self._official_call("timeseries.get_range", request, part)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, path)
            return path.stat().st_size
        written = 0
        with self._post("timeseries.get_range", form, stream=True) as resp:
            try:
                with open(part, "wb") as fh:
                    for chunk in resp.iter_content(READ_BYTES):
                        fh.write(chunk)
                        written += len(chunk)
            except requests.RequestException as exc:
                part.unlink(missing_ok=True)
                raise DatabentoApiError(f"Databento timeseries.get_range: the stream broke after "
                                        f"{written:,} bytes: {type(exc).__name__}") from None
        os.replace(part, path)
        return written

    def _json(self, endpoint: str, form: dict[str, str]) -> Any:
        with self._post(endpoint, form) as resp:
            try:
                return resp.json()
            except ValueError:
                raise DatabentoApiError(f"Databento {endpoint} answered a body that is not JSON",
                                        resp.status_code) from None

    def _post(self, endpoint: str, form: dict[str, str], *, stream: bool = False) -> requests.Response:
        url = f"{self.base_url}/v{API_VERSION}/{endpoint}"
        try:
            resp = requests.post(url, data=form, stream=stream, timeout=(self.timeout_s, self.timeout_s),
                                 auth=HTTPBasicAuth(self._key.reveal(), ""),
                                 headers={"accept": "application/json", "user-agent": USER_AGENT})
        except requests.RequestException as exc:
            # the exception text may quote the request (never the key: it is in a header), but keep
            # only its type, as a proxy's error page could echo the Authorization header
            raise DatabentoApiError(f"Databento {endpoint}: no answer from {self.base_url}: "
                                    f"{type(exc).__name__}") from None
        if resp.status_code >= 400:
            body = resp.text[:500]
            resp.close()
            raise DatabentoApiError(
                f"Databento {endpoint} answered HTTP {resp.status_code}: {scrub(body, [self._key])}",
                resp.status_code)
        return resp
