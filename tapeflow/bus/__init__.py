"""The live bus: the flow's rows published to Redis Streams for other programs (docs/bus.md)."""

from tapeflow.bus.deadletter import Drop, read_dead_letters
from tapeflow.bus.publisher import BusState, BusStats, RedisPublisher, connect
from tapeflow.bus.settings import BusSettings
from tapeflow.bus.streams import BusError, decode_rows, record_of_stream, stream_name

__all__ = ["BusError", "BusSettings", "BusState", "BusStats", "Drop", "RedisPublisher", "connect",
           "decode_rows", "read_dead_letters", "record_of_stream", "stream_name"]
