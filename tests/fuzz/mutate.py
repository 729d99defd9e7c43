"""Structure-aware mutations of one input unit, driven by any source of choices.

A mutation is chosen through ``pick(n) -> int in [0, n)``, so the same engine serves Hypothesis
(``data.draw(st.integers(...))``, which shrinks a failure to its smallest choices) and atheris
(``FuzzedDataProvider.ConsumeIntInRange``, whose choices libFuzzer's coverage feedback steers).

JSON frames are mutated as trees (a leaf of the wrong type, NaN/Infinity, a huge exponent, a number
of 5,000 digits, a negated size, a key deleted or written twice); CSV lines as fields; DBN records
as bytes of their fixed layout; every unit also as bytes (cut short, bits flipped, invalid UTF-8,
an oversized frame).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Pick = Callable[[int], int]

HUGE_DIGITS = "7" * 5000  # beyond CPython's 4,300-digit int(str) limit
OVERSIZED_BYTES = (1 << 20) + 17  # beyond a 1 MiB block or line buffer
# values a leaf of the wrong type or out of its domain takes (raw JSON tokens)
JSON_LEAVES = (b"true", b"false", b"null", b"[]", b"{}", b'""', b'"x"', b"0", b"-1", b"1.5", b"[1,2]",
               b"NaN", b"Infinity", b"-Infinity", b'"NaN"', b'"Infinity"', b'"-inf"', b'"nan"',
               b"1e999999", b"-1e999999", b"1e-999999", b'"1e999999"', b'"1E+400"', b"1e400",
               b"9223372036854775808", b"-9223372036854775809", b'"99999999999999999999.5"',
               b"0.0000000001", b'"0.0000000001"', HUGE_DIGITS.encode(), f'"{HUGE_DIGITS}"'.encode(),
               f'"{HUGE_DIGITS}.5"'.encode(), b'"\\ud800"', b'"\\u0000"')
CSV_FIELDS = (b"", b"NaN", b"nan", b"inf", b"-inf", b"Infinity", b"-1", b"-0", b"0", b"-100.5", b"1e999999",
              b"1E-999999", b"1e400", b"9223372036854775808", b"-9223372036854775809",
              b"18446744073709551616", b"99999999999999999999.5", b"0.0000000001", b"abc", b"B\xffC",
              b"\x00", b'"', b'"a,b"', b" 1", b"1 ", b"+1", b"0x10", b"1_000", b"\xc3\x28", b"\xed\xa0\x80")
BAD_UTF8 = (b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xed\xa0\x80",
            b"\xc0\xaf", b"\xf8\x88\x80\x80\x80")


class Raw:
    """A JSON token written verbatim (NaN, 1e999999, a 5,000-digit number)."""

    __slots__ = ("token",)

    def __init__(self, token: bytes) -> None:
        self.token = token


class Pairs(list):
    """An object as its ``(key, value)`` pairs, so a key can be written twice."""


def dump(value: Any) -> bytes:
    """``value`` as JSON bytes, writing :class:`Raw` tokens and :class:`Pairs` as they are."""
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, (dict, Pairs)):
        items = value.items() if isinstance(value, dict) else value
        return b"{" + b",".join(json.dumps(k).encode() + b":" + dump(v) for k, v in items) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(dump(v) for v in value) + b"]"
    return json.dumps(value).encode()


def _containers(value: Any, out: list[Any]) -> list[Any]:
    if isinstance(value, (dict, list)):
        out.append(value)
        for child in (value.values() if isinstance(value, dict) else value):
            _containers(child, out)
    return out


def _negate(leaf: Any) -> Any:
    if isinstance(leaf, bool) or not isinstance(leaf, (int, float, str)):
        return leaf
    if isinstance(leaf, str):
        return leaf[1:] if leaf.startswith("-") else "-" + leaf
    return -leaf


def mutate_json(frame: bytes, pick: Pick) -> bytes:
    """One structural mutation of the JSON ``frame`` (or ``frame`` itself, when it is no JSON)."""
    try:
        tree = json.loads(frame)
    except ValueError:
        return frame
    boxes = _containers(tree, [])
    if not boxes:
        return frame
    box = boxes[pick(len(boxes))]
    keys = list(box) if isinstance(box, dict) else list(range(len(box)))
    if not keys:
        return frame
    key = keys[pick(len(keys))]
    how = pick(5)
    if how == 0:  # a leaf of the wrong type, NaN/Infinity, a huge exponent or digits
        box[key] = Raw(JSON_LEAVES[pick(len(JSON_LEAVES))])
    elif how == 1:  # a negative size (or price, id, time)
        box[key] = _negate(box[key])
    elif how == 2:  # a missing key or element
        del box[key]
    elif how == 3 and isinstance(box, dict):  # a key written twice, the second value wins in json.loads
        pairs = Pairs(box.items())
        pairs.insert(pick(len(pairs) + 1), (key, Raw(JSON_LEAVES[pick(len(JSON_LEAVES))])))
        return _replace(tree, box, pairs)
    else:  # an element or member duplicated
        if isinstance(box, list):
            box.insert(key, box[key])
        else:
            box[str(key) + "_"] = box[key]
    return dump(tree)


def _replace(tree: Any, old: Any, new: Any) -> bytes:
    if tree is old:
        return dump(new)
    for box in _containers(tree, []):
        items = box.items() if isinstance(box, dict) else enumerate(box)
        for k, v in list(items):
            if v is old:
                box[k] = new
                return dump(tree)
    return dump(tree)


def mutate_csv(line: bytes, pick: Pick) -> bytes:
    """One field-level mutation of the CSV ``line``: a field replaced, dropped or doubled."""
    fields = line.split(b",")
    i = pick(len(fields))
    how = pick(4)
    if how <= 1:
        fields[i] = CSV_FIELDS[pick(len(CSV_FIELDS))]
    elif how == 2:
        del fields[i]
    else:
        fields.insert(i, fields[i])
    return b",".join(fields)


def mutate_bytes(unit: bytes, pick: Pick, *, keep: int = 0) -> bytes:
    """One byte-level mutation of ``unit`` after its first ``keep`` bytes (a capture line's prefix).

    Cut short, bits flipped, invalid UTF-8 inserted, or padded beyond 1 MiB. A mutation never
    leaves the unit blank (blank lines are framing, not units).
    """
    head, body = unit[:keep], bytearray(unit[keep:])
    if not body:
        return unit
    how = pick(6)
    if how == 0:  # cut short (at least one byte kept, so the line stays a unit)
        body = body[: 1 + pick(len(body) - 1)] if len(body) > 1 else body
    elif how <= 2:  # bit flips
        for _ in range(1 + pick(4)):
            body[pick(len(body))] ^= 1 << pick(8)
    elif how <= 4:  # invalid UTF-8
        at = pick(len(body) + 1)
        body[at:at] = BAD_UTF8[pick(len(BAD_UTF8))]
    else:  # an oversized frame
        at = pick(len(body) + 1)
        body[at:at] = b"9" * OVERSIZED_BYTES if pick(2) else b" " * OVERSIZED_BYTES
    out = head + bytes(body)
    return out if out.strip() else head + b"x"
