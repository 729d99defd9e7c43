"""The live gateway's control messages: text lines ``key=value|key=value\\n`` and the CRAM answer.

As the official client implements them (``databento/live/gateway.py``, ``databento/common/cram.py``)
and the API test vectors record them.
"""

from __future__ import annotations

import hashlib


def cram_response(challenge: str, key: str) -> str:
    """The CRAM answer the gateway expects: ``sha256_hex(f"{challenge}|{key}") + "-" + key[-5:]``."""
    return f"{hashlib.sha256(f'{challenge}|{key}'.encode()).hexdigest()}-{key[-5:]}"


def parse_line(line: str) -> dict[str, str]:
    """A gateway control line (``key=value|key=value\\n``) as a dict.

    Raises:
        ValueError: the line does not end with a newline (as the official client's parser).
    """
    if not line.endswith("\n"):
        raise ValueError(f"{line!r} does not end with a newline")
    return {k: v for k, _, v in (t.partition("=") for t in line.strip().split("|"))}
