"""DBN wire structs: record types, magic bytes and the numpy layouts of each record.

The layouts come from ``databento_dbn`` itself (each record class carries ``_dtypes``, the same
description Databento's own ``to_ndarray`` uses), so a new DBN release that changes a struct
changes it here too. Only the records whose layout differs between DBN versions (definition,
statistics, symbol mapping, error, system) are looked up by version or by record length.
"""

from __future__ import annotations

import databento_dbn as dbn
import numpy as np

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Legacy DBZ files start with a zstd skippable frame (magic 0x184D2A50..5F, little-endian).
DBZ_SKIPPABLE_TAIL = b"\x2a\x4d\x18"
DBN_MAGIC = b"DBN"
HEADER_BYTES = (
    16  # RecordHeader: length u8 (in 4-byte words), rtype u8, publisher u16, instrument u32, ts u64
)

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TIMESTAMP = dbn.UNDEF_TIMESTAMP
UNDEF_STAT_QUANTITY_V3 = dbn.UNDEF_STAT_QUANTITY
UNDEF_STAT_QUANTITY_V1 = 2**31 - 1
I32_UNDEF = 2**31 - 1

R = dbn.RType
MBP_0 = R.MBP_0.value
MBP_1 = R.MBP_1.value
MBP_10 = R.MBP_10.value
OHLCV_DEPRECATED = R.OHLCV_DEPRECATED.value
OHLCV_1S = R.OHLCV_1S.value
OHLCV_1M = R.OHLCV_1M.value
OHLCV_1H = R.OHLCV_1H.value
OHLCV_1D = R.OHLCV_1D.value
OHLCV_EOD = R.OHLCV_EOD.value
STATUS = R.STATUS.value
INSTRUMENT_DEF = R.INSTRUMENT_DEF.value
IMBALANCE = R.IMBALANCE.value
ERROR = R.ERROR.value
SYMBOL_MAPPING = R.SYMBOL_MAPPING.value
SYSTEM = R.SYSTEM.value
STATISTICS = R.STATISTICS.value
MBO = R.MBO.value
CMBP_1 = R.CMBP_1.value
CBBO_1S = R.CBBO_1S.value
CBBO_1M = R.CBBO_1M.value
TCBBO = R.TCBBO.value
BBO_1S = R.BBO_1S.value
BBO_1M = R.BBO_1M.value
# TBBO records (0xC5): databento-dbn 0.72 names the rtype (RType.TBBO); 0.70, the line the official
# databento client pins, does not (it writes TBBO as MBP_1), so the number is spelled out here.
TBBO = 0xC5

# rtype -> bar interval; the deprecated OHLCV rtype takes its interval from the metadata schema.
OHLCV_INTERVALS: dict[int, str] = {
    OHLCV_1S: "1s",
    OHLCV_1M: "1m",
    OHLCV_1H: "1h",
    OHLCV_1D: "1d",
    OHLCV_EOD: "eod",
}
SCHEMA_INTERVALS: dict[str, str] = {
    "ohlcv-1s": "1s",
    "ohlcv-1m": "1m",
    "ohlcv-1h": "1h",
    "ohlcv-1d": "1d",
    "ohlcv-eod": "eod",
}

# Records whose layout is the same in DBN v1, v2 and v3.
_FIXED: dict[int, type] = {
    MBO: dbn.MBOMsg,
    MBP_0: dbn.TradeMsg,
    MBP_1: dbn.MBP1Msg,
    TBBO: dbn.MBP1Msg,
    MBP_10: dbn.MBP10Msg,
    OHLCV_DEPRECATED: dbn.OHLCVMsg,
    OHLCV_1S: dbn.OHLCVMsg,
    OHLCV_1M: dbn.OHLCVMsg,
    OHLCV_1H: dbn.OHLCVMsg,
    OHLCV_1D: dbn.OHLCVMsg,
    OHLCV_EOD: dbn.OHLCVMsg,
    BBO_1S: dbn.BBOMsg,
    BBO_1M: dbn.BBOMsg,
    CBBO_1S: dbn.CBBOMsg,
    CBBO_1M: dbn.CBBOMsg,
    TCBBO: dbn.CBBOMsg,
    CMBP_1: dbn.CMBP1Msg,
    STATUS: dbn.StatusMsg,
    IMBALANCE: dbn.ImbalanceMsg,
}

# Records whose layout changed between versions: every known variant, told apart by size.
_VERSIONED: dict[int, tuple[type, ...]] = {
    INSTRUMENT_DEF: (dbn.v1.InstrumentDefMsg, dbn.v2.InstrumentDefMsg, dbn.v3.InstrumentDefMsg),
    STATISTICS: (dbn.v1.StatMsg, dbn.v3.StatMsg),
    SYMBOL_MAPPING: (dbn.v1.SymbolMappingMsg, dbn.v3.SymbolMappingMsg),
    ERROR: (dbn.v1.ErrorMsg, dbn.v3.ErrorMsg),
    SYSTEM: (dbn.v1.SystemMsg, dbn.v3.SystemMsg),
}

_DTYPES: dict[type, np.dtype] = {}


def _dtype_of(cls: type) -> np.dtype:
    dt = _DTYPES.get(cls)
    if dt is None:
        dt = _DTYPES[cls] = np.dtype(cls._dtypes)  # type: ignore[attr-defined]
    return dt


def record_dtype(rtype: int, length_bytes: int) -> np.dtype | None:
    """The numpy layout of a record of ``rtype`` that is ``length_bytes`` long (None if unknown).

    A record may be longer than its struct: live data appends ``ts_out`` (8 bytes), so the
    struct that fits is the largest variant not longer than the record.
    """
    if rtype in _FIXED:
        dt = _dtype_of(_FIXED[rtype])
        return dt if dt.itemsize <= length_bytes else None
    fits = [_dtype_of(c) for c in _VERSIONED.get(rtype, ()) if _dtype_of(c).itemsize <= length_bytes]
    return max(fits, key=lambda d: d.itemsize) if fits else None


TS_OUT_BYTES = 8  # live data may append the gateway send time to every record


def looks_like_record(length_bytes: int, rtype: int) -> bool:
    """Whether a record header could start a fragment: a known rtype whose struct is exactly
    ``length_bytes`` long (or that plus ``ts_out``). Used to tell fragments from other files."""
    variants = (_FIXED[rtype],) if rtype in _FIXED else _VERSIONED.get(rtype, ())
    return any(length_bytes - _dtype_of(c).itemsize in (0, TS_OUT_BYTES) for c in variants)
