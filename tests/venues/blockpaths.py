"""Shared by the block-path tests: the per-line path's output equals the block path's, on lines
mutated byte by byte (Hypothesis)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
from hypothesis import strategies as st

from tapeflow.venues.base import Decoded, merge


def assert_identical(a: list[Decoded], b: list[Decoded]) -> dict[str, pa.Table]:
    """Same bytes read and, merged, the same tables (chunks may be cut elsewhere); returns ``b`` merged."""
    assert sum(c.bytes_read for c in a) == sum(c.bytes_read for c in b)
    ma, mb = merge(a), merge(b)
    assert ma.keys() == mb.keys()
    for name in ma:
        assert ma[name].schema == mb[name].schema, name
        assert ma[name].to_pydict() == mb[name].to_pydict(), name
    return mb


@st.composite
def mutated_lines(draw: st.DrawFn, base: Sequence[str], odd: Sequence[str], max_lines: int) -> list[bytes]:
    """Up to ``max_lines`` lines drawn from ``base``, each with up to two bytes inserted, replaced,
    deleted or cut (``odd`` gives the inserted text), ended by LF or CRLF, the last one maybe by
    nothing."""
    lines = draw(st.lists(st.sampled_from(base), min_size=0, max_size=max_lines))
    out = []
    for line in lines:
        for _ in range(draw(st.integers(0, 2))):
            at = draw(st.integers(0, len(line)))
            text = draw(st.sampled_from(odd))
            how = draw(st.sampled_from(["insert", "replace", "delete", "cut"]))
            if how == "insert":
                line = line[:at] + text + line[at:]
            elif how == "replace":
                line = line[:at] + text + line[at + 1:]
            elif how == "delete":
                line = line[:at] + line[at + 1:]
            else:
                line = line[:at]
        out.append(line.encode("latin-1") + draw(st.sampled_from([b"\n", b"\r\n", b"\n", b"\n"])))
    if out and draw(st.booleans()):
        out[-1] = out[-1].rstrip(b"\r\n")  # a last line without its newline
    return out
