"""LOBSTER files as the vendor spells them: file names, columns, codes and sentinels.

See https://lobsterdata.com/info/DataStructure.php. Files are ``TICKER_DATE_<startms>_<endms>_
{message|orderbook}_<LEVELS>.csv`` without a header; the orderbook row ``i`` is the book after
message row ``i``.
"""

from __future__ import annotations

import re

VENUE = "lobster"
TIMEZONE = "America/New_York"  # Nasdaq: LOBSTER times are wall-clock seconds after local midnight

FILE_NAME = re.compile(
    r"^(?P<ticker>[A-Za-z0-9.\-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start_ms>\d+)_(?P<end_ms>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)

# message file columns, in order
MESSAGE_FIELDS = ("Time", "Type", "OrderID", "Size", "Price", "Direction")

# message Type codes
SUBMISSION = 1        # a new visible limit order
CANCELLATION = 2      # partial cancel: Size is the amount removed
DELETION = 3          # the whole (remaining) order is removed: Size is what was left
EXECUTION_VISIBLE = 4  # a visible resting order is executed: Direction is the resting side
EXECUTION_HIDDEN = 5  # a hidden resting order is executed: the visible book does not change
CROSS_TRADE = 6       # an auction (cross) trade
TRADING_HALT = 7      # Price -1 halt, 0 quoting only, 1 trading resumes
MESSAGE_TYPES = (SUBMISSION, CANCELLATION, DELETION, EXECUTION_VISIBLE, EXECUTION_HIDDEN, CROSS_TRADE,
                 TRADING_HALT)
VISIBLE_TYPES = (SUBMISSION, CANCELLATION, DELETION, EXECUTION_VISIBLE)  # change the visible book

HALT_CODES = {-1: "halt", 0: "quoting", 1: "resume"}

# Direction codes
BUY = 1
SELL = -1

# Price is in dollars x 10000: one unit is 1e-4 USD = 100_000 units of 1e-9
PRICE_UNIT_NANOS = 100_000

# orderbook file: per level k the columns AskPrice_k, AskSize_k, BidPrice_k, BidSize_k; an empty
# level is written as these prices with size 0
EMPTY_ASK_PRICE = 9999999999
EMPTY_BID_PRICE = -9999999999
ORDERBOOK_FIELDS_PER_LEVEL = ("AskPrice", "AskSize", "BidPrice", "BidSize")

