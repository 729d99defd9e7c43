"""The consumer side of the bus: a consumer group reading streams at its own pace (docs/bus.md).

Plain ``redis`` calls, so any program can do the same in its own language: create the group at
``0`` (every entry still retained) or ``$`` (only new ones), ``XREADGROUP ... >`` for entries not yet
delivered to the group, ``XACK`` once handled.
"""

from __future__ import annotations

from typing import Any

from tapeflow.bus.streams import FIELD


def ensure_group(client: Any, stream: str, group: str, start: str = "0") -> None:
    """Create consumer group ``group`` on ``stream`` from ``start`` (the stream too), unless it exists."""
    import redis

    try:
        client.xgroup_create(stream, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_group(client: Any, group: str, consumer: str, streams: list[str], *, count: int = 1000,
               block_ms: int | None = None, ack: bool = True) -> list[tuple[str, str, bytes]]:
    """Up to ``count`` entries per stream not yet delivered to ``group``, as ``(stream, id, row)``,
    acknowledged unless ``ack`` is False (then they stay pending until ``XACK``)."""
    if not streams:
        return []
    answer = client.xreadgroup(group, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms)
    out: list[tuple[str, str, bytes]] = []
    for stream, entries in answer or ():
        name = stream.decode() if isinstance(stream, bytes) else stream
        ids = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            out.append((name, entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
                        fields[FIELD.encode()] if FIELD.encode() in fields else fields[FIELD]))
        if ack and ids:
            client.xack(name, group, *ids)
    return out


def drain(client: Any, group: str, consumer: str, streams: list[str], *, count: int = 5000
          ) -> dict[str, list[tuple[str, bytes]]]:
    """Everything the group has not read yet on ``streams`` (group created at ``0`` where missing),
    read and acknowledged: ``{stream: [(id, row), ...]}`` in id order."""
    for stream in streams:
        ensure_group(client, stream, group)
    out: dict[str, list[tuple[str, bytes]]] = {s: [] for s in streams}
    while True:
        batch = read_group(client, group, consumer, streams, count=count)
        if not batch:
            return out
        for stream, entry_id, row in batch:
            out[stream].append((entry_id, row))


def streams_matching(client: Any, pattern: str = "*") -> list[str]:
    """Stream keys matching ``pattern`` (``SCAN ... TYPE stream``), sorted."""
    return sorted(k.decode() if isinstance(k, bytes) else k
                  for k in client.scan_iter(match=pattern, _type="stream"))
