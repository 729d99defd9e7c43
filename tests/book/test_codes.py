"""Wire codes are declared once (kernels/codes.py), re-exported by the records, and compiled as
constants into the numba kernels."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from numba import njit

import kernels.codes as codes
import tapeflow.schemas.records as records
from kernels.codes import F_SNAPSHOT

REPO = Path(__file__).resolve().parents[2]
NAMES = list(codes.__all__)
# a declaration of a code name (alone or in a tuple) bound to a literal: an int, ord("X"), 2**63 - 1
_DECLARATION = re.compile(
    r"^\s*(?:_?[A-Z_]+\s*,\s*)*_?(?P<name>" + "|".join(NAMES) + r")\s*(?:,\s*_?[A-Z_]+\s*)*="
    r"\s*(?:\(?\s*)(?:-?\d|ord\(|2\s*\*\*)", re.M)


def test_the_records_re_export_the_codes() -> None:
    for name in NAMES:
        assert getattr(records, name) == getattr(codes, name), name


def test_codes_keep_databento_and_ascii_meanings() -> None:
    # independent of the code under test: DBN's flag bits and the ASCII letters of sides/actions
    flags = (codes.F_LAST, codes.F_TOB, codes.F_SNAPSHOT, codes.F_MBP, codes.F_BAD_TS_RECV)
    assert flags == (128, 64, 32, 16, 8)
    assert (codes.F_MAYBE_BAD_BOOK, codes.F_GAP, codes.F_SUPERSEDED) == (4, 2, 1)
    assert bytes([codes.BID, codes.ASK, codes.NO_SIDE]) == b"BAN"
    assert bytes([codes.L2_SET, codes.L2_DELETE, codes.L2_CLEAR]) == b"UDR"
    l3 = (codes.L3_ADD, codes.L3_CANCEL, codes.L3_MODIFY, codes.L3_CLEAR, codes.L3_TRADE, codes.L3_FILL,
          codes.L3_NONE)
    assert bytes(l3) == b"ACMRTFN"
    assert codes.UNDEF_PRICE == np.iinfo(np.int64).max
    assert (codes.VALID, codes.RESYNC, codes.CROSSED) == (0, 1, 2)


def test_no_module_declares_its_own_copy() -> None:
    found = []
    for root in ("kernels", "tapeflow"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path == REPO / "kernels" / "codes.py":
                continue
            for m in _DECLARATION.finditer(path.read_text()):
                found.append(f"{path.relative_to(REPO)}: {m.group(0).strip()}")
    assert not found, found


def test_the_pattern_finds_copies() -> None:
    # the scan above must be able to fail: it recognizes the forms the copies had
    for text in ('F_LAST = 128', '_F_LAST, _F_SNAPSHOT, _F_GAP, _F_SUPERSEDED = 128, 32, 2, 1',
                 'UNDEF_PRICE = 2**63 - 1', 'VALID, RESYNC, CROSSED = 0, 1, 2',
                 '_BID, _ASK = ord("B"), ord("A")'):
        assert _DECLARATION.search(text), text
    assert not _DECLARATION.search("UNDEF_PRICE = dbn.UNDEF_PRICE")


@njit
def _snapshot_rows(flags: np.ndarray) -> int:
    count = 0
    for f in flags:
        if f & F_SNAPSHOT:  # imported as the kernels import it
            count += 1
    return count


def test_numba_compiles_an_imported_code_as_a_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = np.array([0, F_SNAPSHOT, codes.F_LAST | F_SNAPSHOT, codes.F_LAST], np.uint8)
    assert _snapshot_rows(flags) == 2
    typed = io.StringIO()
    _snapshot_rows.inspect_types(file=typed)
    assert "global(F_SNAPSHOT: 32)  :: Literal[int](32)" in typed.getvalue()
    # frozen at compile time: rebinding the name afterwards changes nothing in the compiled kernel
    monkeypatch.setitem(_snapshot_rows.py_func.__globals__, "F_SNAPSHOT", 1)
    assert _snapshot_rows(flags) == 2
