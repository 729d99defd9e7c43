"""Compiled scanners of Binance capture bytes: lines, and the three frame shapes sent by the million.

:func:`scan_frames` matches each payload against a strict grammar of ``bookTicker``, ``trade`` and
``depthUpdate`` (as the futures and spot combined streams spell them) and reads its fields in the
same pass: integers, exact decimals as int64 nanos, and every depth level; :func:`scan_capture`
does it over a ``<recv_ns> <json>`` buffer, cutting its lines and reading their capture times in
that pass too. No Python object is made per frame or per level.

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
_I64_MAX_TENTH = (2**63 - 1) // 10  # 10 * this + 7 is the largest int64
_POW10 = np.array([10**k for k in range(10)], np.int64)
# byte -> 1 closing quote, 2 not allowed in a string (control, non-ASCII, backslash), 0 plain
_STRING_BYTE = np.zeros(256, np.uint8)
_STRING_BYTE[:32] = 2
_STRING_BYTE[127:] = 2
_STRING_BYTE[ord("\\")] = 2
_STRING_BYTE[ord('"')] = 1
# byte -> its digit value, 10 for any other byte (one table look-up instead of two compares)
_DIGIT = np.full(256, 10, np.uint8)
_DIGIT[ord("0"):ord("9") + 1] = np.arange(10)


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
_CLOSE = _lit(b"}}")
_CLOSE_LEVELS = _lit(b"]}}")


@njit(cache=True, nogil=True)
def _at(buf: np.ndarray, i: int, end: int, lit: np.ndarray) -> int:
    # the index after ``lit`` when it is at ``i``, else -1 (no branch per byte: 4x faster)
    n = len(lit)
    if i < 0 or i + n > end:
        return -1
    differ = 0
    for k in range(n):
        differ |= buf[i + k] ^ lit[k]
    return i + n if differ == 0 else -1


@njit(cache=True, nogil=True)
def _string(buf: np.ndarray, i: int, end: int) -> int:
    # a string body of printable ASCII without quote or backslash: the index of its closing quote
    if i < 0:
        return -1
    while i < end:
        k = _STRING_BYTE[buf[i]]
        if k != 0:
            return i if k == 1 else -1
        i += 1
    return -1


@njit(cache=True, nogil=True)
def _integer(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:
    # a JSON integer without sign or leading zero, at most 18 digits: (index after it, value).
    # The digit loop is written out here and twice in _decimal: as a function call it cost 40 %.
    if i < 0 or i >= end:
        return -1, 0
    d = _DIGIT[buf[i]]
    if d == 0:
        return i + 1, 0
    if d > 9:
        return -1, 0
    v = 0
    j = i
    while j < end:
        d = _DIGIT[buf[j]]
        if d > 9:
            break
        v = v * 10 + d
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
        d = _DIGIT[buf[j]]
        if d > 9:
            break
        v = v * 10 + d
        j += 1
    if j == i or j - i > 9 or j >= end:
        return -1, 0
    if buf[j] == 46:
        j += 1
        s = j
        f = 0
        while j < end:
            d = _DIGIT[buf[j]]
            if d > 9:
                break
            f = f * 10 + d
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
def _scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, usable: np.ndarray, lines: bool) -> tuple:
    # The one loop of scan_frames (lines False) and scan_capture (lines True). No call per frame
    # with arrays: passing arrays costs reference counting, which made a frame half as fast. Only
    # _decimal is inlined by numba (7 % faster, 1.3 s more to compile); inlining every helper
    # saved a few % more and made the compile 4x longer.
    size = len(buf)
    n = size // 100 + 64 if lines else len(starts)  # lines: a first guess, counted exactly if short
    for _ in range(2):
        kind = np.zeros(n, np.int8)
        sym = np.zeros(n, np.int64)
        ms = np.zeros(n, np.int64)
        ids = np.full((n, 3), -1, np.int64)
        maker = np.zeros(n, np.bool_)
        dec = np.zeros((n, 4), np.int64)
        lv = np.zeros((n, 3), np.int64)
        cut = np.zeros((n, 4), np.int64)  # lines: start, end, capture time, payload start
        plain = np.zeros(n, np.bool_)
        px = np.empty(size // 9 + 1, np.int64)
        sz = np.empty(size // 9 + 1, np.int64)
        uniq = np.zeros((MAX_SYMBOLS, 2), np.int64)
        n_uniq = np.zeros(1, np.int64)
        nl = 0
        at = 0  # lines: where the next line starts
        r = 0
        while r < n and (not lines or at < size):
            start = -1
            end = size  # lines: a frame is bounded by the buffer and must end at the newline
            if lines:
                j = at
                v = 0
                while j < size and j - at < 20:
                    d = _DIGIT[buf[j]]
                    if d > 9:
                        break
                    if v > _I64_MAX_TENTH or (v == _I64_MAX_TENTH and d > 7):
                        j = size  # beyond int64: the reader's rules decide
                        break
                    v = v * 10 + d
                    j += 1
                if j < size and buf[j] == 32 and 15 <= j - at <= 19:
                    start = j + 1
                    cut[r, 2], cut[r, 3] = v, start
            elif usable[r]:
                start, end = starts[r], ends[r]
            fin = -1  # the index after a matched frame
            levels = 0
            while start >= 0:  # one pass: break leaves it unmatched
                i = _at(buf, start, end, _STREAM)
                j = _string(buf, i, end)
                if j < 0:
                    break
                partial = False  # "@depth<digit>": a top-N snapshot stream, not diffs
                for k in range(i, j - 6):
                    if buf[k] == 64 and 48 <= buf[k + 6] <= 57:
                        same = True
                        for m in range(6):
                            if buf[k + m] != _DEPTH_TAG[m]:
                                same = False
                        partial |= same
                i = _at(buf, j, end, _DATA)
                if partial or i < 0 or i >= end:
                    break
                c = buf[i]  # the event type's first letter picks the grammar
                if c == 98:  # b: bookTicker
                    i, u = _integer(buf, _at(buf, i, end, _TICKER), end)
                    i = _at(buf, i, end, _S)
                    j = _string(buf, i, end)
                    if j <= i:
                        break
                    s0 = i
                    i, b = _decimal(buf, _at(buf, j, end, _Q_B), end)
                    i, bq = _decimal(buf, _at(buf, i, end, _B), end)
                    i, a = _decimal(buf, _at(buf, i, end, _A_LOW), end)
                    i, aq = _decimal(buf, _at(buf, i, end, _A), end)
                    i, tt = _integer(buf, _at(buf, i, end, _T), end)
                    i, _ = _integer(buf, _at(buf, i, end, _E), end)
                    i = _at(buf, i, end, _CLOSE)
                    if i < 0 or tt > _MAX_MS:
                        break
                    k = _symbol_id(buf, s0, j, uniq, n_uniq)
                    if k < 0:
                        break
                    kind[r], sym[r], ms[r], ids[r, 0] = TICKER, k, tt, u
                    dec[r, 0], dec[r, 1], dec[r, 2], dec[r, 3] = b, bq, a, aq
                    fin = i
                elif c == 116:  # t: trade
                    i, _ = _integer(buf, _at(buf, i, end, _TRADE), end)
                    i, tt = _integer(buf, _at(buf, i, end, _T), end)
                    i = _at(buf, i, end, _S)
                    j = _string(buf, i, end)
                    if j <= i:
                        break
                    s0 = i
                    i, tid = _integer(buf, _at(buf, j, end, _Q_T), end)
                    i, p = _decimal(buf, _at(buf, i, end, _P), end)
                    i, q = _decimal(buf, _at(buf, i, end, _Q), end)
                    x = _at(buf, i, end, _X)
                    if x >= 0:
                        x = _string(buf, x, end)
                        i = x + 1 if x >= 0 else -1
                    i = _at(buf, i, end, _M)
                    x = _at(buf, i, end, _TRUE)
                    mk = x >= 0
                    i = _at(buf, x if mk else _at(buf, i, end, _FALSE), end, _CLOSE)
                    if i < 0 or tt > _MAX_MS:
                        break
                    k = _symbol_id(buf, s0, j, uniq, n_uniq)
                    if k < 0:
                        break
                    kind[r], sym[r], ms[r], ids[r, 0], maker[r] = TRADE, k, tt, tid, mk
                    dec[r, 0], dec[r, 1] = p, q
                    fin = i
                elif c == 100:  # d: depthUpdate
                    i, tt = _integer(buf, _at(buf, i, end, _DEPTH), end)
                    x = _at(buf, i, end, _T)
                    if x >= 0:
                        i, tt = _integer(buf, x, end)
                    i = _at(buf, i, end, _S)
                    j = _string(buf, i, end)
                    if j <= i:
                        break
                    s0 = i
                    i, first = _integer(buf, _at(buf, j, end, _Q_U), end)
                    i, last = _integer(buf, _at(buf, i, end, _U), end)
                    prev = -1
                    x = _at(buf, i, end, _PU)
                    if x >= 0:
                        i, prev = _integer(buf, x, end)
                    i, nb = _levels(buf, _at(buf, i, end, _BIDS), end, px, sz, nl)
                    i, na = _levels(buf, _at(buf, i, end, _ASKS), end, px, sz, nl + nb)
                    i = _at(buf, i, end, _CLOSE_LEVELS)
                    if i < 0 or tt > _MAX_MS or first > last:
                        break
                    k = _symbol_id(buf, s0, j, uniq, n_uniq)
                    if k < 0:
                        break
                    kind[r], sym[r], ms[r] = DEPTH, k, tt
                    ids[r, 0], ids[r, 1], ids[r, 2] = first, last, prev
                    lv[r, 0], lv[r, 1], lv[r, 2] = nl, nb, na
                    fin, levels = i, nb + na
                break
            if lines:
                if fin >= 0 and (fin == size or buf[fin] == 10):
                    e = fin
                else:
                    fin = -1
                    e = at
                    while e < size and buf[e] != 10:
                        e += 1
                plain[r] = start >= 0 and buf[e - 1] != 13
                cut[r, 0], cut[r, 1] = at, e
                at = e + 1
            elif fin != end:
                fin = -1
            if fin < 0:
                kind[r] = 0
            else:
                nl += levels
            r += 1
        if not lines or at >= size:
            break
        n = _count_lines(buf)  # shorter lines than guessed: size the outputs exactly
    return (kind[:r], sym[:r], ms[:r], ids[:r], maker[:r], dec[:r], lv[:r], px, sz, uniq, n_uniq[0], cut[:r],
            plain[:r])


@njit(cache=True, nogil=True)
def _count_lines(buf: np.ndarray) -> int:
    count = 0
    for c in buf:
        count += c == 10
    return count + (len(buf) > 0 and buf[len(buf) - 1] != 10)


def scan_frames(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, usable: np.ndarray) -> tuple:
    """Match every payload ``buf[starts[i]:ends[i]]`` (see the module docstring).

    Returns:
        ``(kind, sym, ms, ids, maker, dec, lv, px, sz, uniq, n_uniq)``: per frame its kind (0
        where it did not match or ``usable`` is False), symbol id (an index of ``uniq``, the
        symbols' byte ranges), event time in ms (``T``, else ``E``), ids (ticker ``u``; trade
        ``t``; depth ``U``, ``u``, ``pu`` or -1), the trade's buyer-is-maker, decimals in nanos
        (ticker ``b B a A``, trade ``p q``), depth levels (first index into ``px``/``sz``, bids,
        asks: bids first).
    """
    return _scan(buf, starts, ends, usable, False)[:11]


def scan_capture(buf: np.ndarray) -> tuple:
    """:func:`scan_frames` over ``<recv_ns> <json>`` lines, cutting them in the same pass.

    Returns:
        :func:`scan_frames`' outputs, one entry per line, then ``lines`` (start, end without the
        newline, capture time, payload start of each line; the last line may be unterminated, an
        empty tail is no line) and ``plain``: whether the line is plainly ``<15-19 digits>
        <payload>`` without a trailing ``\\r`` and a time within int64. Other lines are read by
        the capture reader's own rules (blank lines, ``bad_capture_line`` rejects).
    """
    no = np.zeros(0, np.int64)
    return _scan(buf, no, no, np.zeros(0, np.bool_), True)
