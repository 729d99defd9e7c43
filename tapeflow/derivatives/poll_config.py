"""What the derivatives REST pollers ask for, how often, and within which rate budget
(docs/derivatives.md, "Pollers").

A :class:`VenuePoll` is one venue's base URL, its endpoints (path, query, interval, request weight)
and its rate budget: at most ``budget_weight`` of request weight in any ``budget_window_s``.
:func:`binance_usdm`, :func:`binance_coinm`, :func:`okx` and :func:`bybit` build the defaults of the
replaced system (funding 30 s, mark 10 s, open interest 15 s, insurance fund 5 min); every value is
checked when it is built, a bad one is a :class:`~tapeflow.errors.ConfigError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlencode, urlparse

from tapeflow.derivatives import FORMATS
from tapeflow.errors import ConfigError

# The replaced system's poll intervals, by what an endpoint brings.
FUNDING_INTERVAL_S = 30.0
MARK_INTERVAL_S = 10.0
OPEN_INTEREST_INTERVAL_S = 15.0
INSURANCE_FUND_INTERVAL_S = 300.0

# Binance USD-M: 2400 request weight per IP per minute; premiumIndex with a symbol, openInterest and
# insuranceBalance weigh 1 each (Binance's API reference).
BINANCE_BUDGET_WEIGHT = 2400
BINANCE_WINDOW_S = 60.0
# Binance COIN-M (dapi): 2400 request weight per IP per minute, as USD-M; premiumIndex weighs 10 (it
# answers every contract of the pair, one request per symbol as asked), openInterest 1 (Binance's
# COIN-M API reference). COIN-M documents no insurance-fund endpoint (USD-M's /fapi/v1/insuranceBalance
# has no /dapi twin), so none is polled.
BINANCE_COINM_PREMIUM_WEIGHT = 10
# OKX limits each public endpoint separately, 10 to 20 requests per 2 s per IP (its API reference,
# not checked against the venue here); one budget of 10 per 2 s for the whole venue stays under all.
OKX_BUDGET_WEIGHT = 10
OKX_WINDOW_S = 2.0
# Bybit v5: 600 HTTP requests per IP in any 5 s window (its rate-limit rules), every public request 1.
BYBIT_BUDGET_WEIGHT = 600
BYBIT_WINDOW_S = 5.0


@dataclass(frozen=True)
class Endpoint:
    """One REST request polled at a fixed interval.

    Attributes:
        path: the URL path (it picks the decoder's reader: ``/fapi/v1/premiumIndex``).
        params: the query parameters.
        interval_s: seconds between two polls (before jitter).
        weight: the request weight the venue charges against its rate budget.
    """

    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    interval_s: float = MARK_INTERVAL_S
    weight: int = 1

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ConfigError(f"endpoint path {self.path!r} must start with '/'")
        if not (isinstance(self.interval_s, int | float) and 0 < self.interval_s < float("inf")):
            raise ConfigError(f"{self.path}: interval_s must be a positive number, not {self.interval_s!r}")
        if not (isinstance(self.weight, int) and self.weight >= 1):
            raise ConfigError(f"{self.path}: weight must be an integer >= 1, not {self.weight!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def url(self, base_url: str) -> str:
        """The request URL under ``base_url``."""
        query = urlencode(sorted(self.params.items()))
        return f"{base_url.rstrip('/')}{self.path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class VenuePoll:
    """One venue's endpoints and rate budget.

    Attributes:
        fmt: the derivatives format whose decoder reads the answers (``binance-futures``, ``okx``).
        base_url: scheme and host (``https://fapi.binance.com``); tests point it at loopback.
        endpoints: what is polled.
        budget_weight: the most request weight spent in any ``budget_window_s``.
        budget_window_s: the budget's window.
        jitter: each interval is drawn uniformly within ``interval_s * (1 ± jitter)``.
        backoff_s: first wait after a network error or a 5xx answer, doubled on each in a row.
        max_backoff_s: the longest such wait.
        timeout_s: one request's time limit (a timeout is a network error).
    """

    fmt: str
    base_url: str
    endpoints: Sequence[Endpoint]
    budget_weight: int
    budget_window_s: float
    jitter: float = 0.1
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ConfigError(f"unknown derivatives format {self.fmt!r}; known: {', '.join(sorted(FORMATS))}")
        url = urlparse(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc or url.path.strip("/") or url.query:
            raise ConfigError(f"base_url {self.base_url!r} must be http(s)://host[:port]")
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        if not self.endpoints:
            raise ConfigError(f"{self.fmt}: no endpoints to poll")
        if not (isinstance(self.budget_weight, int) and self.budget_weight >= 1):
            raise ConfigError(
                f"{self.fmt}: budget_weight must be an integer >= 1, not {self.budget_weight!r}"
            )
        for name in ("budget_window_s", "backoff_s", "max_backoff_s", "timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise ConfigError(f"{self.fmt}: {name} must be a positive number, not {value!r}")
        if not (isinstance(self.jitter, int | float) and 0 <= self.jitter < 1):
            raise ConfigError(f"{self.fmt}: jitter must be in [0, 1), not {self.jitter!r}")
        if self.max_backoff_s < self.backoff_s:
            raise ConfigError(
                f"{self.fmt}: max_backoff_s {self.max_backoff_s} is below backoff_s {self.backoff_s}"
            )
        for ep in self.endpoints:
            if ep.weight > self.budget_weight:  # such a request could never be sent
                raise ConfigError(f"{ep.path}: weight {ep.weight} exceeds the budget {self.budget_weight}")


def binance_usdm(
    symbols: Sequence[str] = ("BTCUSDT",),
    base_url: str = "https://fapi.binance.com",
    *,
    mark_interval_s: float = MARK_INTERVAL_S,
    open_interest_interval_s: float = OPEN_INTEREST_INTERVAL_S,
    insurance_fund_interval_s: float = INSURANCE_FUND_INTERVAL_S,
) -> VenuePoll:
    """Binance USD-M: ``premiumIndex`` (mark, index and funding), ``openInterest`` per symbol, and
    ``insuranceBalance``.

    Binance sends the funding rate only inside ``premiumIndex``, so funding comes at the mark's
    interval (10 s, more often than the 30 s asked): a second request for the same body would only
    spend budget.
    """
    eps: list[Endpoint] = []
    for symbol in symbols:
        eps.append(Endpoint("/fapi/v1/premiumIndex", {"symbol": symbol}, mark_interval_s))
        eps.append(Endpoint("/fapi/v1/openInterest", {"symbol": symbol}, open_interest_interval_s))
    eps.append(Endpoint("/fapi/v1/insuranceBalance", {}, insurance_fund_interval_s))
    return VenuePoll("binance-futures", base_url, eps, BINANCE_BUDGET_WEIGHT, BINANCE_WINDOW_S)


def binance_coinm(
    symbols: Sequence[str] = ("BTCUSD_PERP",),
    base_url: str = "https://dapi.binance.com",
    *,
    mark_interval_s: float = MARK_INTERVAL_S,
    open_interest_interval_s: float = OPEN_INTEREST_INTERVAL_S,
) -> VenuePoll:
    """Binance COIN-M (venue ``binance-coinm``, decoded as ``binance-delivery``): ``premiumIndex``
    (mark, index and, for perpetuals, funding; weight 10) and ``openInterest`` (weight 1) per symbol
    (``BTCUSD_PERP``, ``BTCUSD_240927``). COIN-M has no insurance-fund endpoint to poll."""
    eps: list[Endpoint] = []
    for symbol in symbols:
        eps.append(Endpoint("/dapi/v1/premiumIndex", {"symbol": symbol}, mark_interval_s,
                            BINANCE_COINM_PREMIUM_WEIGHT))
        eps.append(Endpoint("/dapi/v1/openInterest", {"symbol": symbol}, open_interest_interval_s))
    return VenuePoll("binance-delivery", base_url, eps, BINANCE_BUDGET_WEIGHT, BINANCE_WINDOW_S)


def okx(
    inst_ids: Sequence[str] = ("BTC-USDT-SWAP",),
    base_url: str = "https://www.okx.com",
    *,
    funding_interval_s: float = FUNDING_INTERVAL_S,
    mark_interval_s: float = MARK_INTERVAL_S,
    open_interest_interval_s: float = OPEN_INTEREST_INTERVAL_S,
    insurance_fund_interval_s: float = INSURANCE_FUND_INTERVAL_S,
) -> VenuePoll:
    """OKX v5 public endpoints for perpetual swaps: funding rate, mark price, open interest per
    instrument, and the insurance fund of each instrument's family (``BTC-USDT``)."""
    eps: list[Endpoint] = []
    families: dict[str, None] = {}
    for inst in inst_ids:
        eps.append(Endpoint("/api/v5/public/funding-rate", {"instId": inst}, funding_interval_s))
        swap = {"instType": "SWAP", "instId": inst}
        eps.append(Endpoint("/api/v5/public/mark-price", swap, mark_interval_s))
        eps.append(Endpoint("/api/v5/public/open-interest", swap, open_interest_interval_s))
        families["-".join(inst.split("-")[:2])] = None
    for family in families:
        eps.append(
            Endpoint(
                "/api/v5/public/insurance-fund",
                {"instType": "SWAP", "instFamily": family},
                insurance_fund_interval_s,
            )
        )
    return VenuePoll("okx", base_url, eps, OKX_BUDGET_WEIGHT, OKX_WINDOW_S)


def bybit(
    symbols: Sequence[str] = ("BTCUSDT",),
    base_url: str = "https://api.bybit.com",
    *,
    category: str = "linear",
    mark_interval_s: float = MARK_INTERVAL_S,
    insurance_fund_interval_s: float = INSURANCE_FUND_INTERVAL_S,
) -> VenuePoll:
    """Bybit v5: ``/v5/market/tickers`` per symbol, which carries the funding rate (with its next
    time), mark, index and open interest in one body, so one request at the mark's interval brings
    all four (a funding or open-interest request of its own would only spend budget), and
    ``/v5/market/insurance`` (every coin's pools in one body; weight 1 as every public request).

    ``category`` is ``linear`` (USDT/USDC perpetuals and futures) or ``inverse``.

    Raises:
        ConfigError: another category.
    """
    if category not in ("linear", "inverse"):
        raise ConfigError(f"Bybit category {category!r}: linear or inverse")
    eps = [Endpoint("/v5/market/tickers", {"category": category, "symbol": s}, mark_interval_s)
           for s in symbols]
    eps.append(Endpoint("/v5/market/insurance", {}, insurance_fund_interval_s))
    return VenuePoll("bybit", base_url, eps, BYBIT_BUDGET_WEIGHT, BYBIT_WINDOW_S)
