"""One micro-batch of one instrument's book stage in one call: the grid plan, the book, the outputs.

The book stage (``tapeflow.book.stage.BookStage``) turns a batch of book events into the snapshot
grid instants the batch makes final and the best bid/offer rows it publishes. Its fixed cost per
batch is what a live flow of small batches pays on every item, so the whole step is one compiled
call over preallocated buffers: :func:`plan` (which rows to snapshot, which grid instants are
final), the book kernel (:func:`kernels.l2book_numba.l2_apply` or :func:`kernels.l3book.l3_run`),
then :func:`finish` (the instants' row fields, the quote rows, the pending book).

Grid rule (the batch grid of ``tapeflow.book.grid.grid_rows``): published rows (``F_LAST``) in
arrival order with running-max arrival ``r``; instants ``g = k * step_ns`` from
``ceil(r_0 / step)`` on; instant ``g`` shows the book after the last published row with
``r <= g``. An instant is final once a published row with ``r > g`` arrives, so a batch emits the
instants below its largest ``r``, and the book after its last published row stays *pending* (in
``pend``) for the instants to come. ``step_ns == 0``: one snapshot per published row, stamped with
its ``ts_event_ns``; ``step_ns < 0``: no snapshots.

Arrays (``n`` rows, ``C >= n`` row capacity, ``K`` slot and ``M >= K`` instant capacity, ``L``
levels, ``R`` = 4 for L2 and 6 for L3: the kernels' best-level rows, L3 adding order counts;
``ask`` = 2 or 3):

* ``x`` int64[8, n] (C order: each field a contiguous row): the batch's fields ``X_*`` (book
  columns, flags, ts_recv_ns, sequence, ts_event_ns); an L3 batch's ``order_id`` (uint64) comes apart.
* ``grid`` int64[N_GRID]: the instrument's grid and last-quote state (slots ``G_*``), then the
  call's results (``R_*``: where it stopped, what it produced); ``pend`` int64[4, L]: the pending
  book (bid px, bid sz, ask px, ask sz; UNDEF_PRICE / 0 beyond the levels that exist).
* ``ints`` int64[3 + R, C]: row -> snapshot slot (-1 none), slot -> row, quote rows, then the
  per-row best levels; ``st`` uint8[2, C]: per-row status and anomaly.
* ``books`` int64[R, K, L]: the books at the snapshot slots (rows of the book kernel's layout).
* ``inst`` int64[6, M]: per instant ts, owner slot, ts_recv, sequence, status; row 5 holds the
  snapshot slots' status.

A call returns DONE, NEED_SPACE (``K`` must grow to ``grid[R_NEED]``, ``M`` to ``grid[R_NEED_M]``;
nothing changed), SPLIT (several time jumps: run the batch in parts), or a halt of the book
kernel (``grid[R_STOP]`` is the row to resume at with ``planned`` set, once the host repaired or
grew the book).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._l2state import DONE
from kernels.codes import F_LAST, F_MAYBE_BAD_BOOK, UNDEF_PRICE, VALID
from kernels.l2book_numba import l2_apply
from kernels.l3book import l3_run

# rows of ``x``: an L2 batch's side, action, price, size, or an L3 batch's action, side, price,
# size (its order ids come apart), then the fields every book reads
X_A, X_B, X_PRICE, X_SIZE, X_FLAGS, X_RECV, X_SEQ, X_EVENT = range(8)
N_X = 8
# grid state slots
G_STARTED, G_NEXT, G_RECV, G_ROW_RECV, G_SEQ, G_STATUS, G_HAS_QUOTE = range(7)
G_QUOTE = 7  # 5 slots: bid px, bid sz, ask px, ask sz, flags of the last quote
# result slots of the last call, after the state: R_NEED the snapshot slots and R_NEED_M the
# instants a NEED_SPACE asks for; R_JUMPS the time jumps (below) and the first one's row and from-time
(R_STOP, R_K, R_M, R_NQ, R_STARTED, R_NEXT, R_RECV, R_LAST, R_NEED, R_NEED_M, R_JUMPS, R_JUMP_ROW,
 R_JUMP_FROM) = range(12, 25)
N_GRID = 25
# A published row whose arrival is more than this many grid steps away from the running max (ahead
# or behind) is a time jump: a stale or garbage time, or a feed's clock that moved by years. The
# grid is not filled across it (that would size memory and rows from an untrusted span: 41 GiB for
# a 2024 frame followed by today's): it restarts at the row. 2**18 steps: three days at 1 s,
# longer than any market's weekend close.
MAX_GAP_STEPS = 1 << 18
# return codes beyond the book kernels' halts (kernels._l2state: DONE 0, halts 1..4)
NEED_SPACE = 16
GROW = 17
SPLIT = 18  # more than one time jump in the batch: the host runs it in parts
# quote modes
Q_NONE, Q_CHANGES, Q_EVERY = 0, 1, 2


def new_grid() -> np.ndarray:
    """Grid and quote state of an instrument that has seen nothing yet."""
    return np.zeros(N_GRID, np.int64)


def new_pending(levels: int) -> np.ndarray:
    """An empty pending book of ``levels`` levels."""
    pend = np.zeros((4, levels), np.int64)
    pend[0::2] = UNDEF_PRICE
    return pend


@njit(cache=True, inline="always")
def _ceil_to(x: int, step: int) -> int:
    return -((-x) // step) * step


@njit(cache=True, inline="always")
def max_gap_ns(step_ns: int) -> int:
    """The largest distance between arrivals the grid fills: ``MAX_GAP_STEPS`` steps (saturating)."""
    return MAX_GAP_STEPS * step_ns if step_ns < (1 << 62) // MAX_GAP_STEPS else 1 << 62


@njit(cache=True)
def _walk(x: np.ndarray, grid: np.ndarray, step_ns: int, ints: np.ndarray, inst: np.ndarray,
          write: bool) -> tuple[int, int, int, int, int, int, int]:
    """One walk over the batch's published rows: (slots k, instants m, the grid state after, and
    the time jumps).

    With ``write``, fills the row -> slot and slot -> row maps and the instants (ts, owner slot,
    -1 for the book pending from an earlier batch) and reports the time jumps (``R_JUMPS``,
    ``R_JUMP_ROW``, ``R_JUMP_FROM``); without, only counts them.
    """
    n = x.shape[1]
    flags, recv = x[X_FLAGS], x[X_RECV]
    slot, rows = ints[0], ints[1]
    started, nxt, r = grid[G_STARTED], grid[G_NEXT], grid[G_RECV]
    k = m = jumps = 0
    gap = max_gap_ns(step_ns) if step_ns > 0 else 0
    last = marked = -1  # marked: the last row given a slot (rows get slots in ascending order)
    for i in range(n):
        if not flags[i] & F_LAST:
            continue
        if step_ns > 0:
            if started != 0 and (recv[i] - r > gap or r - recv[i] > gap):
                # a time jump: the instants of the old span not yet final are dropped, the grid
                # starts again at this row (nothing sized from the untrusted span)
                if write and jumps == 0:
                    grid[R_JUMP_ROW], grid[R_JUMP_FROM] = i, r
                jumps += 1
                if write:
                    grid[R_JUMPS] = jumps
                started = 0
            if started == 0:
                started, r = 1, recv[i]
                nxt = _ceil_to(r, step_ns)
            else:
                if recv[i] > r:
                    r = recv[i]
                if nxt < r:
                    # the instants before r are final: the last published row before i owns them
                    owner = -1
                    if last >= 0:
                        if marked != last:
                            if write:
                                slot[last], rows[k] = k, last
                            k += 1
                            marked = last
                        owner = k - 1
                    count = (r - nxt + step_ns - 1) // step_ns
                    if write:
                        for q in range(count):
                            inst[0, m + q], inst[1, m + q] = nxt + q * step_ns, owner
                    m += count
                    nxt += count * step_ns
        elif step_ns == 0:
            if write:
                slot[i], rows[k] = k, i
                inst[0, m], inst[1, m] = x[X_EVENT, i], k
            k += 1
            m += 1
            marked = i
        last = i
    if step_ns > 0 and last >= 0 and marked != last:
        # the last published row: its book stays pending for the instants to come
        if write:
            slot[last], rows[k] = k, last
        k += 1
    return k, m, started, nxt, r, last, jumps


@njit(cache=True)
def plan(x: np.ndarray, grid: np.ndarray, step_ns: int, ints: np.ndarray, books: np.ndarray,
         inst: np.ndarray, n_rows: int) -> int:
    """Choose the snapshot rows and the final grid instants of the batch (the state is not changed).

    ``n_rows``: the ``R`` of the book kernel (the snapshot rows of ``books``). Returns DONE, or
    NEED_SPACE with ``grid[R_NEED]`` / ``grid[R_NEED_M]`` the slots / instants needed, or SPLIT
    (the batch holds several time jumps).
    """
    # count first, so a batch that does not fit changes nothing
    k, m, _, _, _, _, jumps = _walk(x, grid, step_ns, ints, inst, False)
    if jumps > 1 and x.shape[1] > 1:
        return SPLIT  # one time jump per call, so each gets its own status row
    # + 1: the slot finish copies the pending book to; inst's row 5 is per slot
    if k + 1 > books.shape[1] or max(k + 1, m) > inst.shape[1]:
        grid[R_NEED], grid[R_NEED_M] = k + 1, max(k + 1, m)
        return NEED_SPACE
    ints[0, :x.shape[1]] = -1
    grid[R_JUMPS] = 0
    k, m, started, nxt, r, last, _ = _walk(x, grid, step_ns, ints, inst, True)
    # levels end at the first UNDEF_PRICE (the kernels write the levels that exist, best first)
    books[0, :k, :] = UNDEF_PRICE
    books[n_rows // 2, :k, :] = UNDEF_PRICE
    inst[5, :k] = 0
    grid[R_K], grid[R_M] = k, m
    grid[R_STARTED], grid[R_NEXT], grid[R_RECV], grid[R_LAST] = started, nxt, r, last
    return DONE


@njit(cache=True)
def finish(x: np.ndarray, ints: np.ndarray, st: np.ndarray, books: np.ndarray, inst: np.ndarray,
           grid: np.ndarray, pend: np.ndarray, step_ns: int, quote_mode: int, n_rows: int) -> None:
    """Fill the instants' row fields, pick the quote rows, then commit the grid and pending state.

    Every instant's owner is then a slot of ``books`` (the pending book of an earlier batch is
    copied to slot ``k``): read them with :func:`book_lists` before the next call reuses the buffers.
    """
    n = x.shape[1]
    flags = x[X_FLAGS]
    ask = n_rows // 2
    rows = ints[1]
    k = grid[R_K]
    for j in range(grid[R_M]):
        s = inst[1, j]
        if s >= 0:
            row = rows[s]
            inst[2, j], inst[3, j], inst[4, j] = x[X_RECV, row], x[X_SEQ, row], inst[5, s]
        else:
            # the book pending from an earlier batch: it moves on below, so it gets slot k
            inst[2, j], inst[3, j], inst[4, j] = grid[G_ROW_RECV], grid[G_SEQ], grid[G_STATUS]
            inst[1, j] = k
            for q in range(4):
                books[q if q < 2 else ask + q - 2, k, :] = pend[q]
    nq = 0
    if quote_mode != Q_NONE:
        bbo = ints[3:]
        qrows = ints[2]
        last_q = grid[G_QUOTE:G_QUOTE + 5]
        have, b0, b1, b2, b3, b4 = grid[G_HAS_QUOTE], last_q[0], last_q[1], last_q[2], last_q[3], last_q[4]
        for i in range(n):
            if not flags[i] & F_LAST:
                continue
            f = 0 if st[0, i] == VALID else F_MAYBE_BAD_BOOK
            v0, v1, v2, v3 = bbo[0, i], bbo[1, i], bbo[ask, i], bbo[ask + 1, i]
            if quote_mode == Q_EVERY or not have or v0 != b0 or v1 != b1 or v2 != b2 or v3 != b3 or f != b4:
                qrows[nq] = i
                nq += 1
            have, b0, b1, b2, b3, b4 = 1, v0, v1, v2, v3, f
        grid[G_HAS_QUOTE] = have
        last_q[0], last_q[1], last_q[2], last_q[3], last_q[4] = b0, b1, b2, b3, b4
    grid[R_NQ] = nq
    last = grid[R_LAST]
    if step_ns > 0 and last >= 0:
        s = ints[0, last]
        for q in range(4):
            pend[q, :] = books[q if q < 2 else ask + q - 2, s, :]
        grid[G_ROW_RECV], grid[G_SEQ], grid[G_STATUS] = x[X_RECV, last], x[X_SEQ, last], inst[5, s]
    grid[G_STARTED], grid[G_NEXT], grid[G_RECV] = grid[R_STARTED], grid[R_NEXT], grid[R_RECV]


@njit(cache=True)
def l2_step(x: np.ndarray, bid_w: np.ndarray, ask_w: np.ndarray, sp_tick: np.ndarray, sp_sz: np.ndarray,
            meta: np.ndarray, grid: np.ndarray, pend: np.ndarray, step_ns: int, quote_mode: int,
            ints: np.ndarray, st: np.ndarray, books: np.ndarray, inst: np.ndarray, start: int,
            planned: bool) -> int:
    """Plan, apply rows ``start..`` to the L2 book (:mod:`kernels.l2book_numba`), finish.

    ``x`` rows: side, action, price, size, then the common ones. Returns DONE, NEED_SPACE or an
    L2 halt code (``kernels._l2state``).
    """
    if not planned:
        code = plan(x, grid, step_ns, ints, books, inst, 4)
        if code != DONE:
            return code
    stop, code = l2_apply(x[X_A], x[X_B], x[X_PRICE], x[X_SIZE], x[X_FLAGS], start, ints[0],
                          bid_w, ask_w, sp_tick, sp_sz, meta, ints[3:7], st[0], books, inst[5])
    if code != DONE:
        grid[R_STOP] = stop
        return code
    finish(x, ints, st, books, inst, grid, pend, step_ns, quote_mode, 4)
    return DONE


@njit(cache=True)
def l3_step(x: np.ndarray, order_id: np.ndarray, keys: np.ndarray, used: np.ndarray, o_side: np.ndarray,
            o_px: np.ndarray, o_sz: np.ndarray, lv_px: np.ndarray, lv_sz: np.ndarray, lv_ct: np.ndarray,
            n_lv: np.ndarray, meta: np.ndarray, dense: np.ndarray, pos: np.ndarray, grid: np.ndarray,
            pend: np.ndarray, step_ns: int, quote_mode: int, ints: np.ndarray, st: np.ndarray,
            books: np.ndarray, inst: np.ndarray, start: int, planned: bool, anchor_row: np.ndarray,
            anchors: np.ndarray) -> int:
    """Plan, apply rows ``start..`` to the L3 book (:func:`kernels.l3book.l3_run`), finish.

    ``x`` rows: action, side, price, size, then the common ones; ``anchor_row`` / ``anchors``:
    the vendor's books to re-anchor to (``l3_run``). Returns DONE, NEED_SPACE, SPLIT or GROW (a
    table of the book is full).
    """
    if not planned:
        code = plan(x, grid, step_ns, ints, books, inst, 6)
        if code != DONE:
            return code
    stop = l3_run(keys, used, o_side, o_px, o_sz, lv_px, lv_sz, lv_ct, n_lv, meta, dense, pos, order_id,
                  x[X_A], x[X_B], x[X_PRICE], x[X_SIZE], x[X_FLAGS], ints[1, :grid[R_K]], books.shape[2],
                  start, ints[3:9], st[0], st[1], books, inst[5], anchor_row, anchors)
    if stop < x.shape[1]:
        grid[R_STOP] = stop
        return GROW
    finish(x, ints, st, books, inst, grid, pend, step_ns, quote_mode, 6)
    return DONE



@njit(cache=True)
def book_lists(books: np.ndarray, owner: np.ndarray, pend: np.ndarray, first: int,
               pend_first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One side of ``m`` snapshots as list-array parts: the levels that exist, best first.

    Args:
        books: int64[R, K, L] the books at the snapshot slots (prices row ``first``, sizes the next).
        owner: int64[m] the slot of each snapshot, or -1 for ``pend``.
        pend: int64[4, L] the pending book (prices row ``pend_first``, sizes the next).

    Returns:
        (int32[m + 1] offsets, int64 prices, int64 sizes): snapshot j is ``[offsets[j], offsets[j+1])``
        (levels end at the first UNDEF_PRICE: the kernels fill them best first).
    """
    m, width = owner.shape[0], books.shape[2]
    offsets = np.empty(m + 1, np.int32)
    count = 0
    # element reads, not row views: a view per row costs reference counting in the loop
    for j in range(m):
        offsets[j] = count
        s = owner[j]
        q = 0
        if s >= 0:
            while q < width and books[first, s, q] != UNDEF_PRICE:
                q += 1
        else:
            while q < width and pend[pend_first, q] != UNDEF_PRICE:
                q += 1
        count += q
    offsets[m] = count
    prices = np.empty(count, np.int64)
    sizes = np.empty(count, np.int64)
    for j in range(m):
        s = owner[j]
        lo = offsets[j]
        for q in range(offsets[j + 1] - lo):
            if s >= 0:
                prices[lo + q] = books[first, s, q]
                sizes[lo + q] = books[first + 1, s, q]
            else:
                prices[lo + q] = pend[pend_first, q]
                sizes[lo + q] = pend[pend_first + 1, q]
    return offsets, prices, sizes
