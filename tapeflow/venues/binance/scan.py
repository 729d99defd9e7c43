"""Compiled scanners of Binance capture bytes: lines, and the three frame shapes sent by the million.

:func:`split_lines` cuts a ``<recv_ns> <json>`` buffer into lines and reads each capture time;
:func:`scan_frames` matches each payload against a strict grammar of ``bookTicker``, ``trade`` and
``depthUpdate`` (as the futures and spot combined streams spell them) and reads its fields in
the same pass: integers, exact decimals as int64 nanos, and every depth level. No Python object
is made per frame or per level.

Why a match is exact: the grammar fixes every key and its order and allows no whitespace,
printable ASCII only inside strings (no escape, no control character), JSON integers without
sign or leading zeros (at most 18 digits), ``true``/``false``, and decimals of the plain shape
``digits{1,9}[.digits{0,9}]``. A matching frame therefore has exactly one meaning, the one the
JSON parser gives it, and each decimal has exactly the value ``tapeflow.wire.numbers.nanos``
gives it. A frame that does not match (kind 0) goes to the per-frame decoder, which accepts it
or writes its reject.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TICKER, TRADE, DEPTH = 1, 2, 3  # kinds; 0: not matched, decode the frame one by one
MAX_SYMBOLS = 4096  # distinct symbols per block; beyond, frames fall back to the per-frame path
_MAX_MS = (2**63 - 1) // 1_000_000  # event times in ms whose ns still fit int64
_I64_MAX = 2**63 - 1
_POW10 = np.array([10**k for k in range(10)], np.int64)


def _lit(text: bytes) -> np.ndarray:
    return np.frombuffer(text, np.uint8)


_STREAM = _lit(b'{"stream":"')
_DATA = _lit(b'","data":{"e":"')
_TICKER = _lit(b'bookTicker","u":')
_TRADE = _lit(b'trade","E":')
_DEPTH = _lit(b'depthUpdate","E":')
_S = _lit(b',"s":"')
_Q_B = _lit(b'","b":"')
_B = _lit(b',"B":"')
_A_LOW = _lit(b',"a":"')
_A = _lit(b',"A":"')
_T = _lit(b',"T":')
_E = _lit(b',"E":')
_Q_T = _lit(b'","t":')
_P = _lit(b',"p":"')
_Q = _lit(b',"q":"')
_X = _lit(b',"X":"')
_M = _lit(b',"m":')
_TRUE = _lit(b"true")
_FALSE = _lit(b"false")
_Q_U = _lit(b'","U":')
_U = _lit(b',"u":')
_PU = _lit(b',"pu":')
_BIDS = _lit(b',"b":[')
_ASKS = _lit(b'],"a":[')
_DEPTH_TAG = _lit(b"@depth")


@njit(cache=True, nogil=True)
def split_lines(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``<recv_ns> <json>`` lines of ``buf`` (uint8), at once.

    Returns:
        ``(line_start, line_end, recv_ns, payload_start, plain, n)`` per line (``line_end``
        excludes the newline; the last line may be unterminated; an empty tail is no line).
        ``plain`` is False where the line is not plainly ``<15-19 digits> <payload>`` without a
        trailing ``\\r`` (or its time exceeds int64): such a line is read by the capture reader's
        own rules (blank lines, ``bad_capture_line`` rejects).
    """
    size = len(buf)
    count = 0
    for i in range(size):
        if buf[i] == 10:
            count += 1
    if size and buf[size - 1] != 10:
        count += 1
    line_start = np.empty(count, np.int64)
    line_end = np.empty(count, np.int64)
    recv = np.zeros(count, np.int64)
    pay = np.zeros(count, np.int64)
    plain = np.zeros(count, np.bool_)
    i = 0
    for r in range(count):
        s = i
        while i < size and buf[i] != 10:
            i += 1
        e = i
        i += 1
        line_start[r] = s
        line_end[r] = e
        if e - s < 17 or buf[e - 1] == 13:
            continue
        v = 0
        j = s
        while j < e and 48 <= buf[j] <= 57 and j - s < 20:
            digit = buf[j] - 48
            if v > (_I64_MAX - digit) // 10:
                j = e  # beyond int64: the reader's rules decide
                break
            v = v * 10 + digit
            j += 1
        if j >= e or buf[j] != 32 or j - s < 15 or j - s > 19:
            continue
        recv[r] = v
        pay[r] = j + 1
        plain[r] = True
    return line_start, line_end, recv, pay, plain, count


@njit(cache=True, nogil=True, inline="always")
def _at(buf: np.ndarray, i: int, end: int, lit: np.ndarray) -> int:
    n = len(lit)
    if i < 0 or i + n > end:
        return -1
    for k in range(n):
        if buf[i + k] != lit[k]:
            return -1
    return i + n


@njit(cache=True, nogil=True, inline="always")
def _string(buf: np.ndarray, i: int, end: int) -> int:
    # a string body of printable ASCII without quote or backslash: the index of its closing quote
    if i < 0:
        return -1
    while i < end:
        c = buf[i]
        if c == 34:
            return i
        if c < 32 or c > 126 or c == 92:
            return -1
        i += 1
    return -1


@njit(cache=True, nogil=True, inline="always")
def _integer(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:
    # a JSON integer without sign or leading zero, at most 18 digits: (index after it, value)
    if i < 0 or i >= end:
        return -1, 0
    c = buf[i]
    if c == 48:
        return i + 1, 0
    if c < 49 or c > 57:
        return -1, 0
    v = 0
    j = i
    while j < end:
        c = buf[j]
        if c < 48 or c > 57:
            break
        v = v * 10 + (c - 48)
        j += 1
    if j - i > 18:
        return -1, 0
    return j, v


@njit(cache=True, nogil=True, inline="always")
def _decimal(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:
    # digits{1,9}[.digits{0,9}] then the closing quote: (index after the quote, nanos)
    if i < 0:
        return -1, 0
    v = 0
    j = i
    while j < end:
        c = buf[j]
        if c < 48 or c > 57:
            break
        v = v * 10 + (c - 48)
        j += 1
    if j == i or j - i > 9 or j >= end:
        return -1, 0
    if buf[j] == 46:
        j += 1
        s = j
        f = 0
        while j < end:
            c = buf[j]
            if c < 48 or c > 57:
                break
            f = f * 10 + (c - 48)
            j += 1
        if j - s > 9:
            return -1, 0
        v = v * 1_000_000_000 + f * _POW10[9 - (j - s)]
    else:
        v = v * 1_000_000_000
    if j >= end or buf[j] != 34:
        return -1, 0
    return j + 1, v


@njit(cache=True, nogil=True)
def _levels(buf: np.ndarray, i: int, end: int, px: np.ndarray, sz: np.ndarray, at: int) -> tuple[int, int]:
    # ["p","q"],... up to the closing ']' (not consumed): (index of it, levels written from ``at``)
    if i < 0:
        return -1, 0
    if i < end and buf[i] == 93:
        return i, 0
    count = 0
    cap = len(px)
    while True:
        if i + 2 > end or buf[i] != 91 or buf[i + 1] != 34:
            return -1, 0
        i, p = _decimal(buf, i + 2, end)
        if i < 0 or i + 2 > end or buf[i] != 44 or buf[i + 1] != 34:
            return -1, 0
        i, q = _decimal(buf, i + 2, end)
        if i < 0 or i >= end or buf[i] != 93 or at + count >= cap:
            return -1, 0
        px[at + count] = p
        sz[at + count] = q
        count += 1
        i += 1
        if i < end and buf[i] == 44:
            i += 1
        else:
            return i, count


@njit(cache=True, nogil=True)
def _symbol_id(buf: np.ndarray, s: int, e: int, uniq: np.ndarray, n_uniq: np.ndarray) -> int:
    n = e - s
    for k in range(n_uniq[0]):
        us, ue = uniq[k, 0], uniq[k, 1]
        if ue - us == n:
            same = True
            for j in range(n):
                if buf[us + j] != buf[s + j]:
                    same = False
                    break
            if same:
                return k
    k = n_uniq[0]
    if k >= len(uniq):
        return -1
    uniq[k, 0] = s
    uniq[k, 1] = e
    n_uniq[0] = k + 1
    return k


@njit(cache=True, nogil=True)
def scan_frames(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, usable: np.ndarray,
                level_cap: int) -> tuple:
    """Match every payload ``buf[starts[i]:ends[i]]`` (see the module docstring).

    Returns:
        ``(kind, sym, ms, ids, maker, dec, lv, px, sz, n_levels, uniq, n_uniq)``: per frame its
        kind (0: not matched), symbol id (an index of ``uniq``, the symbols' byte ranges), event
        time in ms (``T``, else ``E``), ids (ticker ``u``; trade ``t``; depth ``U``, ``u``,
        ``pu`` or -1), the trade's buyer-is-maker, decimals in nanos (ticker ``b B a A``, trade
        ``p q``), depth levels (first index into ``px``/``sz``, bids, asks: bids first).
    """
    n = len(starts)
    kind = np.zeros(n, np.int8)
    sym = np.full(n, -1, np.int32)
    ms = np.zeros(n, np.int64)
    ids = np.full((n, 3), -1, np.int64)
    maker = np.zeros(n, np.bool_)
    dec = np.zeros((n, 4), np.int64)
    lv = np.zeros((n, 3), np.int64)
    px = np.empty(level_cap, np.int64)
    sz = np.empty(level_cap, np.int64)
    uniq = np.zeros((MAX_SYMBOLS, 2), np.int64)
    n_uniq = np.zeros(1, np.int64)
    nl = 0
    for r in range(n):
        if not usable[r]:
            continue
        s = starts[r]
        e = ends[r]
        i = _at(buf, s, e, _STREAM)
        j = _string(buf, i, e)
        if j < 0:
            continue
        partial = False  # "@depth<digit>": a top-N snapshot stream, not diffs
        for k in range(i, j - 6):
            if buf[k] == 64 and 48 <= buf[k + 6] <= 57:
                partial = True
                for m in range(6):
                    if buf[k + m] != _DEPTH_TAG[m]:
                        partial = False
                        break
                if partial:
                    break
        if partial:
            continue
        i = _at(buf, j, e, _DATA)
        if i < 0:
            continue
        t = _at(buf, i, e, _TICKER)
        if t >= 0:
            i, u = _integer(buf, t, e)
            i = _at(buf, i, e, _S)
            j = _string(buf, i, e)
            if j <= i:
                continue
            s0, s1 = i, j
            i, b = _decimal(buf, _at(buf, j, e, _Q_B), e)
            i, bq = _decimal(buf, _at(buf, i, e, _B), e)
            i, a = _decimal(buf, _at(buf, i, e, _A_LOW), e)
            i, aq = _decimal(buf, _at(buf, i, e, _A), e)
            i, tt = _integer(buf, _at(buf, i, e, _T), e)
            i, _ = _integer(buf, _at(buf, i, e, _E), e)
            if i < 0 or i + 2 != e or buf[i] != 125 or buf[i + 1] != 125 or tt > _MAX_MS:
                continue
            k = _symbol_id(buf, s0, s1, uniq, n_uniq)
            if k < 0:
                continue
            kind[r], sym[r], ms[r], ids[r, 0] = TICKER, k, tt, u
            dec[r, 0], dec[r, 1], dec[r, 2], dec[r, 3] = b, bq, a, aq
            continue
        t = _at(buf, i, e, _TRADE)
        if t >= 0:
            i, ev = _integer(buf, t, e)
            i, tt = _integer(buf, _at(buf, i, e, _T), e)
            i = _at(buf, i, e, _S)
            j = _string(buf, i, e)
            if j <= i:
                continue
            s0, s1 = i, j
            i, tid = _integer(buf, _at(buf, j, e, _Q_T), e)
            i, p = _decimal(buf, _at(buf, i, e, _P), e)
            i, q = _decimal(buf, _at(buf, i, e, _Q), e)
            x = _at(buf, i, e, _X)
            if x >= 0:
                x = _string(buf, x, e)
                i = x + 1 if x >= 0 else -1
            i = _at(buf, i, e, _M)
            mk = False
            x = _at(buf, i, e, _TRUE)
            if x >= 0:
                mk = True
                i = x
            else:
                i = _at(buf, i, e, _FALSE)
            if i < 0 or i + 2 != e or buf[i] != 125 or buf[i + 1] != 125 or tt > _MAX_MS:
                continue
            k = _symbol_id(buf, s0, s1, uniq, n_uniq)
            if k < 0:
                continue
            kind[r], sym[r], ms[r], ids[r, 0], maker[r] = TRADE, k, tt, tid, mk
            dec[r, 0], dec[r, 1] = p, q
            continue
        t = _at(buf, i, e, _DEPTH)
        if t >= 0:
            i, ev = _integer(buf, t, e)
            tt = ev
            x = _at(buf, i, e, _T)
            if x >= 0:
                i, tt = _integer(buf, x, e)
            i = _at(buf, i, e, _S)
            j = _string(buf, i, e)
            if j <= i:
                continue
            s0, s1 = i, j
            i, first = _integer(buf, _at(buf, j, e, _Q_U), e)
            i, last = _integer(buf, _at(buf, i, e, _U), e)
            prev = -1
            x = _at(buf, i, e, _PU)
            if x >= 0:
                i, prev = _integer(buf, x, e)
            i, nb = _levels(buf, _at(buf, i, e, _BIDS), e, px, sz, nl)
            i, na = _levels(buf, _at(buf, i, e, _ASKS), e, px, sz, nl + nb)
            if (i < 0 or i + 3 != e or buf[i] != 93 or buf[i + 1] != 125 or buf[i + 2] != 125
                    or tt > _MAX_MS or first > last):
                continue
            k = _symbol_id(buf, s0, s1, uniq, n_uniq)
            if k < 0:
                continue
            kind[r], sym[r], ms[r] = DEPTH, k, tt
            ids[r, 0], ids[r, 1], ids[r, 2] = first, last, prev
            lv[r, 0], lv[r, 1], lv[r, 2] = nl, nb, na
            nl += nb + na
    return kind, sym, ms, ids, maker, dec, lv, px, sz, nl, uniq, n_uniq[0]
