"""Requests against a served app (:func:`tapeflow.serve.thread.serving`: a real uvicorn on a free port)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from tapeflow.serve.thread import serving

__all__ = ["get", "get_json", "serving"]


def get(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (an HTTP error status is returned, not raised)."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, **kwargs: Any) -> tuple[int, Any]:
    status, _, body = get(url, **kwargs)
    return status, orjson.loads(body)
