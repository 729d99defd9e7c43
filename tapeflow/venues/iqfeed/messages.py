"""IQConnect's wire vocabulary, protocol 6.x (6.0-6.2 share every layout decoded here).

Sources: DTN's IQFeed developer documentation (Level 1 "Update/Summary", "Fundamental", "System"
messages; Level 2 "Market By Order" / "Market By Price" messages of protocol 6.1+; the historical
lookup responses of ``HTX``/``HTD``/``HTT``, ``HIX``/``HID``/``HIT`` and ``HDX``/``HDT``/``HWX``/``HMX``)
and the protocol lines of the IQFeed.CSharpApiClient unit tests (MIT, in ``../shared/data/iqfeed``).
"""

from __future__ import annotations

VENUE = "iqfeed"
TIMEZONE = "America/New_York"  # every IQFeed time is US Eastern wall-clock time

END_OF_RESPONSE = "!ENDMSG!"
HISTORY_PREFIX = "LH"  # protocol 6.x lookup rows: ``[RequestID,]LH,<fields>``

# historical tick row (HTX/HTD/HTT), protocol 6.x
TICK_FIELDS = ("Timestamp", "Last", "LastSize", "TotalVolume", "Bid", "Ask", "TickID", "BasisForLast",
               "TradeMarketCenter", "TradeConditions", "TradeAggressor", "DayCode")
# historical interval bar row (HIX/HID/HIT)
INTERVAL_FIELDS = ("Timestamp", "High", "Low", "Open", "Close", "TotalVolume", "PeriodVolume",
                   "NumberOfTrades")
# historical daily/weekly/monthly bar row (HDX/HDT/HWX/HMX)
DAILY_FIELDS = ("Timestamp", "High", "Low", "Open", "Close", "PeriodVolume", "OpenInterest")

# Basis For Last: C last qualified trade, E extended trade (form T), O other trade (any trade not
# accounted for by C or E: IQFeed's own bars leave it out), S settle, a/b an ask/bid update
TRADE_BASES = frozenset("CEO")
QUOTE_BASES = frozenset("ab")
NOT_IN_BARS = "O"
# Trade Aggressor: 0 invalid, 1 buy, 2 sell, 3 neither
AGGRESSOR_BUY, AGGRESSOR_SELL = "1", "2"

# Level 1 (port 5009)
L1_UPDATE, L1_SUMMARY, L1_FUNDAMENTAL, L1_REGIONAL = "Q", "P", "F", "R"
SYSTEM, TIMESTAMP, ERROR, NOT_FOUND, NEWS, MARKET_MAKER_NAME = "S", "T", "E", "n", "N", "M"
# the field set after ``S,SET PROTOCOL,6.x`` until a ``S,SELECT UPDATE FIELDS`` changes it
DEFAULT_L1_FIELDS = ("Symbol", "Most Recent Trade", "Most Recent Trade Size", "Most Recent Trade Time",
                     "Most Recent Trade Market Center", "Total Volume", "Bid", "Bid Size", "Ask",
                     "Ask Size", "Open", "High", "Low", "Close", "Message Contents",
                     "Most Recent Trade Conditions")
# the system messages that carry the field set: the server's answer and the request as logged
FIELDSET_MESSAGES = ("CURRENT UPDATE FIELDNAMES", "SELECT UPDATE FIELDS")

# Fundamental message (``F``) of protocol 6.2, in order after the message type
FUNDAMENTAL_FIELDS_62 = (
    "Symbol", "Exchange ID", "PE", "Average Volume", "52 Week High", "52 Week Low", "Calendar Year High",
    "Calendar Year Low", "Dividend Yield", "Dividend Amount", "Dividend Rate", "Pay Date",
    "Ex-dividend Date", "Current Year EPS", "Next Year EPS", "Five-year Growth Percentage",
    "Fiscal Year End", "Company Name", "Root Option Symbol", "Percent Held By Institutions", "Beta",
    "Leaps", "Current Assets", "Current Liabilities", "Balance Sheet Date", "Long-term Debt",
    "Common Shares Outstanding", "Split Factor 1", "Split Factor 2", "Format Code", "Precision", "SIC",
    "Historical Volatility", "Security Type", "Listed Market", "52 Week High Date", "52 Week Low Date",
    "Calendar Year High Date", "Calendar Year Low Date", "Year End Close", "Maturity Date",
    "Coupon Rate", "Expiration Date", "Strike Price", "NAICS", "Exchange Root",
    "Option Premium Multiplier", "Option Multiple Deliverable", "Session Open Time",
    "Session Close Time", "Base Currency", "Contract Size", "Contract Months", "Minimum Tick Size",
    "First Delivery Date", "FIGI", "Security SubType",
)
# the protocol whose ``F`` layout is decoded (6.0/6.1 place reserved columns elsewhere in as many
# fields, so the layout is told by the protocol the session set, never by the field count)
FUNDAMENTAL_PROTOCOL = "6.2"
DEFAULT_PROTOCOL = "6.2"
PROTOCOL_MESSAGES = ("CURRENT PROTOCOL", "SET PROTOCOL")

# Level 2 (port 9200), protocol 6.1+: market by order and market by price
L2_ORDER_ADD, L2_ORDER_UPDATE, L2_ORDER_DELETE, L2_ORDER_SUMMARY = "3", "4", "5", "6"
L2_PRICE_LEVEL_ORDER = "0"
L2_LEVEL_SUMMARY, L2_LEVEL_UPDATE, L2_LEVEL_DELETE = "7", "8", "9"
# protocol 6.0 market-maker quotes (``Z`` summary, ``2`` update); MD01 is the best level
L2_MM_SUMMARY, L2_MM_UPDATE = "Z", "2"
ORDER_FIELDS = ("Symbol", "OrderID", "MMID", "Side", "Price", "OrderSize", "OrderPriority", "Precision",
                "OrderTime", "OrderDate")
ORDER_DELETE_FIELDS = ("Symbol", "OrderID", "MMID", "Side", "OrderTime", "OrderDate")
LEVEL_FIELDS = ("Symbol", "Side", "Price", "Size", "OrderCount", "Precision", "Time", "Date")
LEVEL_DELETE_FIELDS = ("Symbol", "Side", "Price", "Time", "Date")
MM_FIELDS = ("Symbol", "MMID", "Bid", "Ask", "BidSize", "AskSize", "BidTime", "Date", "ConditionCode",
             "AskTime", "BidInfoValid", "AskInfoValid", "EndOfMessageGroup")
TOP_LEVEL_MMID = "MD01"
