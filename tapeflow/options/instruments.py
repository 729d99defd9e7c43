"""Deribit option instrument names -> underlying, expiry, strike, call or put.

Deribit names an option ``UNDERLYING-DMMMYY-STRIKE-C|P``: ``BTC-30APR21-60000-C``, ``ETH-6APR21-2400-P``,
and for its linear (USDC-settled) options ``XRP_USDC-30MAY25-2d2-C`` (``d`` is the decimal point:
a strike of 2.2). Every option expires at 08:00 UTC of its date. A future (``BTC-25JUN21``), a
perpetual (``BTC-PERPETUAL``) or a combo (``BTC-CS-19MAY26-70000_75000``) is no option: it is told
apart from a damaged name, so a ticker of one is ignored by rule, not dead-lettered as damage.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from tapeflow.errors import BadInput
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.rejects import Reason

EXPIRY_HOUR_UTC = 8
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
_OPTION = re.compile(r"^([A-Z0-9]+(?:_[A-Z0-9]+)?)-(\d{1,2})([A-Z]{3})(\d{2})-(\d+(?:d\d+)?)-([CP])$")
_NOT_OPTION = re.compile(r"^[A-Z0-9_]+-(PERPETUAL|\d{1,2}[A-Z]{3}\d{2}|[A-Z]+-.*)$")


@dataclass(frozen=True)
class OptionName:
    """One parsed option name.

    Attributes:
        name: the venue's instrument name, as given.
        underlying: the underlying currency or pair (``BTC``, ``XRP_USDC``).
        expiry_ns: expiry, ns UTC (08:00 UTC of the expiry date).
        strike_nanos: strike in the quote currency, 1e-9 units.
        is_call: True for a call, False for a put.
    """

    name: str
    underlying: str
    expiry_ns: int
    strike_nanos: int
    is_call: bool


def parse_option_name(name: str) -> OptionName:
    """Parse a Deribit option name.

    Raises:
        BadInput: ``unsupported_channel`` for a future, perpetual or combo name (an instrument, but no
            option); ``bad_field`` for anything else that is not an option name, with an impossible
            date (``31FEB21``), or with a zero strike.
    """
    m = _OPTION.match(name)
    if m is None:
        if _NOT_OPTION.match(name):
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"instrument {name!r} is no option (future, perpetual "
                                                       "or combo)")
        raise BadInput(Reason.BAD_FIELD, f"instrument {name!r} is not an option name "
                                         "(UNDERLYING-DMMMYY-STRIKE-C|P)")
    underlying, day, month, year, strike_text, kind = m.groups()
    if month not in _MONTHS:
        raise BadInput(Reason.BAD_FIELD, f"instrument {name!r}: no month {month!r}")
    try:
        expiry = dt.datetime(2000 + int(year), _MONTHS[month], int(day), EXPIRY_HOUR_UTC, tzinfo=dt.UTC)
    except ValueError:
        raise BadInput(Reason.BAD_FIELD, f"instrument {name!r}: no date {day}{month}{year}") from None
    strike_nanos = to_nanos(strike_text.replace("d", "."))
    if strike_nanos <= 0:
        raise BadInput(Reason.BAD_FIELD, f"instrument {name!r}: strike {strike_text!r} is not positive")
    expiry_ns = int(expiry.timestamp()) * 1_000_000_000
    return OptionName(name, underlying, expiry_ns, strike_nanos, kind == "C")
