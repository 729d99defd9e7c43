"""DBN as it arrives: an uncompressed DBN stream (a live session) decoded piece by piece.

The live gateway sends the session's metadata and then records, over TCP, in pieces that end
anywhere. :class:`StreamDecoder` reads the metadata once it is whole, then cuts whole records
with the same framing and converts them with the same per-file context as a batch decode of
the file the bytes were journaled to, so the tables of a session equal ``decode([journal file])``.
"""

from __future__ import annotations

from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pyarrow as pa

from tapeflow.errors import FormatError
from tapeflow.venues.base import Rejects
from tapeflow.venues.databento.framing import Block, DbnHeader, cut_records
from tapeflow.venues.databento.messages import DBN_MAGIC
from tapeflow.venues.databento.parse import FileContext


class StreamDecoder:
    """Decode one DBN stream (metadata + records, not compressed) fed in arbitrary pieces.

    Args:
        path: the file the stream is journaled to (named in dead letters' locations, as a batch
            decode of that file names it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.header: DbnHeader | None = None
        self.ctx: FileContext | None = None
        self._buf = b""
        self._index = 0
        self._stream_offset = 0
        self.bytes_fed = 0

    @property
    def venue(self) -> str:
        """The dataset code once the metadata arrived (``databento`` before)."""
        return self.ctx.venue if self.ctx is not None else "databento"

    def feed(self, data: bytes) -> dict[str, pa.Table]:
        """Add ``data``; return the tables of the records it completed (empty while none).

        Raises:
            FormatError: the stream does not start with DBN metadata (the live gateway always
                sends it first), or the metadata does not decode.
        """
        self.bytes_fed += len(data)
        self._buf += data
        if self.ctx is None and not self._read_header():
            return {}
        assert self.ctx is not None and self.header is not None
        buf = np.frombuffer(self._buf, dtype=np.uint8)
        cut = cut_records(buf, frame=self.header.frame, final=False)
        if cut.corrupt:
            return self.finish()
        if not cut.offsets.size and not cut.damaged:
            return {}
        block = Block(buf, cut.offsets, cut.lengths, self._index, self._stream_offset, self.bytes_fed,
                      cut.damaged)
        self._index += cut.offsets.size
        self._stream_offset += cut.stop
        self._buf = self._buf[cut.stop:]
        return self.ctx.convert(block)

    def finish(self) -> dict[str, pa.Table]:
        """End of the stream: bytes left that are no whole record become one ``truncated`` (or
        ``bad_length``) dead letter, as the batch decode of the journal file makes of them."""
        if self.ctx is None or not self._buf:
            return {}
        rest, self._buf = self._buf, b""
        word = rest[0] * 4
        reason = "bad_length" if word < 16 else "truncated"
        rejects = Rejects(self.ctx.venue)
        detail = (f"{len(rest)} bytes at record section offset {self._stream_offset} are not a whole DBN "
                  f"record (length byte {word} bytes)")
        rejects.add(reason, detail, f"{self.path}:record {self._index}", rest)
        return {"rejected": rejects.table()}

    def _read_header(self) -> bool:
        if len(self._buf) < 8:
            return False
        if self._buf[:3] != DBN_MAGIC:
            raise FormatError(f"{self.path}: the live stream does not start with DBN metadata "
                              f"(starts with {self._buf[:8].hex()})")
        meta_len = int.from_bytes(self._buf[4:8], "little")
        if len(self._buf) < 8 + meta_len:
            return False
        try:
            metadata = dbn.Metadata.decode(self._buf[: 8 + meta_len])
        except Exception as exc:  # the binding raises plain ValueError/DBNError variants
            raise FormatError(f"{self.path}: unreadable DBN metadata: {exc}") from exc
        self.header = DbnHeader(self._buf[3], metadata, False, 8 + meta_len)
        self.ctx = FileContext(self.path, self.header)
        self._buf = self._buf[8 + meta_len:]
        return True
