"""Raw inputs of the batch runtime: vendor files in the landing folder and the live journal.

Layouts:

- landing: ``<landing>/<format>/.../<file>``: the first folder names the decoder
  (``tapeflow formats``); below it any layout the format reads (``sim`` takes its symbol from the
  file's folder). A cryptofeed ``.http.`` REST capture is decoded together with the ``.ws.``
  captures of the same folder and exchange prefix (``BINANCE.http.0.0`` with ``BINANCE.ws.1.0``),
  a LOBSTER ``_orderbook_`` file with its ``_message_`` file.
- journal: ``<journal>/<venue>/<YYYY-MM-DD>.jsonl[.gz]`` (``tapeflow.journal``): the folder is a
  format name, or a venue code whose part before ``-`` is one (``binance-usdm`` -> ``binance``).

Which instrument-days a source holds is only known after decoding it, so the first decode of a
source is remembered in an index (``<lake>/_sources/index.json``, keyed by path, size and mtime):
sensors use it to register instruments and request partitions, assets to find the sources of a
partition. A changed file (a journal still being appended to) is decoded again.

That first decode also keeps its rows (``<lake>/_sources/decoded/<source hash>/<record>.arrow``,
Arrow IPC with the source's signature beside them), so a run (:mod:`tapeflow.batch.normalize`)
reads them back instead of decoding the source a second time; the copy is dropped once a run has
written every instrument-day the source holds, and ignored (decoded again) when the file changed
since. :func:`earliest_day` tells where the data starts (the first day partitions need).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import REJECTED
from tapeflow.storage.lake import NS_PER_DAY, day_of
from tapeflow.venues import formats, get_format

INDEX_FILE = Path("_sources") / "index.json"
DECODED_DIR = Path("_sources") / "decoded"
_SIGNATURE_FILE = "signature.json"
# IPC body compression: the rows are written once and read once, lz4 costs little either way
_IPC_OPTIONS = ipc.IpcWriteOptions(compression="lz4")
_SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
# files that travel with a feed but are not one: the simulator's labelled ground-truth episodes
_SIDECARS = frozenset({"episodes.parquet"})
# companions are decoded with a main file: a cryptofeed REST capture with the websocket captures of
# its exchange, a LOBSTER orderbook file with its message file
_COMPANION = (".http.", "_orderbook_")


@dataclass(frozen=True)
class Source:
    """One decodable unit: files decoded together with one format.

    Attributes:
        format: the decoder's name.
        paths: the files, the main one first (companions such as REST snapshots after it).
        origin: ``landing`` or ``journal``.
    """

    format: str
    paths: tuple[Path, ...]
    origin: str

    @property
    def key(self) -> str:
        return str(self.paths[0])

    def signature(self) -> list[list[int]]:
        """``[size, mtime_ns]`` per file: a change means the source must be decoded again."""
        out = []
        for p in self.paths:
            st = p.stat()
            out.append([st.st_size, st.st_mtime_ns])
        return out

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


@dataclass
class SourceEntry:
    """What decoding one source found: rows per (venue, symbol, UTC day), over all record types."""

    key: str
    format: str
    origin: str
    paths: list[str]
    signature: list[list[int]]
    partitions: dict[str, int] = field(default_factory=dict)  # "venue\tsymbol\tdate" -> rows
    rejected: int = 0
    error: str = ""

    def holds(self) -> list[tuple[str, str, str]]:
        return [tuple(k.split("\t")) for k in sorted(self.partitions)]  # type: ignore[misc]


def discover(landing: Path | None, journal: Path | None) -> list[Source]:
    """Every source under the landing folder and the journal root (missing folders hold none)."""
    known = formats()
    out: list[Source] = []
    if landing is not None and Path(landing).is_dir():
        for fmt_dir in sorted(Path(landing).iterdir()):
            if fmt_dir.is_dir() and fmt_dir.name in known:
                out.extend(_bundle(fmt_dir.name, _files(fmt_dir), "landing"))
    if journal is not None and Path(journal).is_dir():
        for venue_dir in sorted(Path(journal).iterdir()):
            fmt = _journal_format(venue_dir.name, known)
            if venue_dir.is_dir() and fmt is not None:
                out.extend(Source(fmt, (p,), "journal") for p in _files(venue_dir))
    return out


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not p.name.startswith((".", "_")) and not p.name.endswith(_SKIP_SUFFIXES)
        and p.name not in _SIDECARS
    )


def _bundle(fmt: str, files: Sequence[Path], origin: str) -> list[Source]:
    companions = [p for p in files if any(m in p.name for m in _COMPANION)]
    mains = [p for p in files if p not in companions]
    return [Source(fmt, (p, *[c for c in companions if _belongs(c, p)]), origin) for p in mains]


def _belongs(companion: Path, main: Path) -> bool:
    if companion.parent != main.parent:
        return False
    if "_orderbook_" in companion.name:
        return companion.name.replace("_orderbook_", "_message_") == main.name
    return companion.name.split(".")[0] == main.name.split(".")[0]


def _journal_format(name: str, known: Iterable[str]) -> str | None:
    names = set(known)
    if name in names:
        return name
    head = name.split("-")[0]
    return head if head in names else None


class SourceIndex:
    """The remembered decode results of every source, stored under the lake."""

    def __init__(self, lake: Path) -> None:
        self.path = Path(lake) / INDEX_FILE
        self.entries: dict[str, SourceEntry] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise TapeflowError(f"source index {self.path} is unreadable: {exc}") from exc
            self.entries = {k: SourceEntry(**v) for k, v in raw.items()}

    def refresh(self, sources: Sequence[Source], *, limit: int | None = None) -> list[SourceEntry]:
        """Decode the sources that are new or changed since they were indexed; save the index.

        Args:
            sources: what :func:`discover` found.
            limit: decode at most this many (the rest waits for the next call).

        Returns:
            The entries (re)built now. A source that fails to decode gets an entry with ``error``
            set (shown by the sensor and the assets) instead of stopping the others.
        """
        fresh = []
        for src in sources:
            old = self.entries.get(src.key)
            sig = src.signature()
            if old is not None and old.signature == sig and old.format == src.format:
                continue
            if limit is not None and len(fresh) >= limit:
                break
            entry = index_source(src, sig, keep=self.decoded_dir(src))
            self.entries[src.key] = entry
            fresh.append(entry)
        if fresh:
            self.save()
        return fresh

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: vars(v) for k, v in sorted(self.entries.items())}, indent=1))
        os.replace(tmp, self.path)

    def decoded_dir(self, src: Source) -> Path:
        """Where the rows of the indexing decode of ``src`` are kept."""
        return self.path.parent.parent / DECODED_DIR / hashlib.sha1(src.key.encode()).hexdigest()[:20]

    def decoded(self, src: Source) -> dict[str, pa.Table] | None:
        """The rows kept by the indexing decode of ``src``, whole per record name; None when none are
        kept or the files changed since (see :meth:`decoded_chunks`)."""
        chunks = self.decoded_chunks(src)
        if chunks is None:
            return None
        out: dict[str, list[pa.Table]] = {}
        for name, table in chunks:
            out.setdefault(name, []).append(table)
        return {name: pa.concat_tables(parts) for name, parts in out.items()}

    def decoded_chunks(self, src: Source) -> Iterator[tuple[str, pa.Table]] | None:
        """The kept rows of ``src`` as (record name, chunk) in decode order per record, read lazily;
        None when none are kept or the files changed since (then the caller decodes them).

        Every file is opened (memory-mapped) before the first chunk is handed out, so a copy that
        another run drops meanwhile is either read whole or not at all.
        """
        folder = self.decoded_dir(src)
        try:
            kept = json.loads((folder / _SIGNATURE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if kept != {"format": src.format, "paths": [str(p) for p in src.paths], "signature": src.signature()}:
            return None
        readers = []
        try:
            for path in sorted(folder.glob("*.arrow")):
                readers.append((path.stem, ipc.open_file(pa.memory_map(str(path)))))
        except (OSError, pa.ArrowInvalid):
            return None  # dropped or replaced meanwhile by another run: decode instead
        return _batches(readers)

    def drop_decoded(self, src: Source) -> None:
        """Forget the kept rows of ``src`` (every instrument-day they hold is in the lake)."""
        shutil.rmtree(self.decoded_dir(src), ignore_errors=True)

    def sources_for(self, venue: str, symbol: str, date: str) -> list[Source]:
        """The sources holding rows of one instrument-day (empty when none is indexed)."""
        key = f"{venue}\t{symbol}\t{date}"
        return [
            Source(e.format, tuple(Path(p) for p in e.paths), e.origin)
            for e in self.entries.values() if key in e.partitions
        ]

    def instrument_days(self) -> set[tuple[str, str, str]]:
        """Every (venue, symbol, date) some source holds."""
        return {t for e in self.entries.values() for t in e.holds()}


def _batches(readers: list[tuple[str, ipc.RecordBatchFileReader]]) -> Iterator[tuple[str, pa.Table]]:
    for name, reader in readers:
        for i in range(reader.num_record_batches):
            yield name, pa.Table.from_batches([reader.get_batch(i)])


def index_source(src: Source, signature: list[list[int]] | None = None, *,
                 keep: Path | None = None) -> SourceEntry:
    """Decode one source and count its rows per (venue, symbol, UTC day).

    Args:
        src: the source.
        signature: its :meth:`Source.signature` when the caller has it already.
        keep: a folder to keep the decoded rows in (see :meth:`SourceIndex.decoded`), replaced
            only when the whole source decoded; None keeps nothing.
    """
    entry = SourceEntry(src.key, src.format, src.origin, [str(p) for p in src.paths],
                        signature if signature is not None else src.signature())
    counts: dict[str, int] = {}
    writers = _Writers(keep)
    try:
        for chunk in get_format(src.format).decode(list(src.paths)):
            for name, table in chunk.tables.items():
                writers.write(name, table)
                if name == REJECTED.name:
                    entry.rejected += table.num_rows
                    continue
                for k, n in day_counts(table).items():
                    counts[k] = counts.get(k, 0) + n
    except (TapeflowError, OSError) as exc:
        entry.error = f"{type(exc).__name__}: {exc}"
    writers.close({"format": src.format, "paths": entry.paths, "signature": entry.signature}
                  if not entry.error else None)
    entry.partitions = dict(sorted(counts.items()))
    return entry


class _Writers:
    """One Arrow IPC file per record name, written chunk by chunk into a staging folder that
    replaces ``folder`` on success (a failed or partial decode keeps nothing)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.stage = None if folder is None else folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        self.open: dict[str, ipc.RecordBatchFileWriter] = {}
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage.mkdir(parents=True)

    def write(self, name: str, table: pa.Table) -> None:
        if self.stage is None or table.num_rows == 0:  # merging skips empty chunks too
            return
        if name not in self.open:
            self.open[name] = ipc.new_file(self.stage / f"{name}.arrow", table.schema, options=_IPC_OPTIONS)
        self.open[name].write_table(table)

    def close(self, signature: dict | None) -> None:
        if self.stage is None or self.folder is None:
            return
        for writer in self.open.values():
            writer.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        if signature is None:
            shutil.rmtree(self.stage, ignore_errors=True)
            return
        (self.stage / _SIGNATURE_FILE).write_text(json.dumps(signature))
        try:
            os.replace(self.stage, self.folder)
        except OSError:
            # another process indexed the same source meanwhile and its copy is in place: keep that
            shutil.rmtree(self.stage, ignore_errors=True)


def day_counts(table: pa.Table) -> dict[str, int]:
    """Rows of ``table`` per ``venue\\tsymbol\\tdate`` (the lake's partition rule; empty symbols skipped)."""
    if table.num_rows == 0:
        return {}
    ts = table.column("ts_event_ns").to_numpy()
    if "ts_recv_ns" in table.column_names:
        ts = np.where(ts >= 0, ts, table.column("ts_recv_ns").to_numpy())
    frame = pl.DataFrame({
        "venue": pl.from_arrow(table.column("venue")).cast(pl.String),
        "symbol": pl.from_arrow(table.column("symbol")).cast(pl.String),
        "day": np.floor_divide(ts, NS_PER_DAY),
    })
    grouped = frame.filter(pl.col("symbol") != "").group_by(["venue", "symbol", "day"]).len()
    return {
        f"{v}\t{s}\t{day_of(int(d) * NS_PER_DAY)}": int(n)
        for v, s, d, n in grouped.iter_rows()
    }


def earliest_day(lake: Path | None, journal: Path | None) -> str | None:
    """The first UTC day (``YYYY-MM-DD``) any known source or lake partition holds, None when none.

    Known are: the instrument-days in the source index (what the sensors decoded), the journal's
    day files (``<journal>/<venue>/<YYYY-MM-DD>.jsonl[.gz]``) and the lake's ``date=`` partitions.
    Reads names and the index only, never the data.
    """
    days: list[str] = []
    if lake is not None and (Path(lake) / INDEX_FILE).exists():
        index = SourceIndex(Path(lake))
        days += [d for e in index.entries.values() for k in e.partitions for d in [k.rsplit("\t", 1)[-1]]]
    if journal is not None and Path(journal).is_dir():
        days += [p.name[:10] for p in Path(journal).glob("*/*.jsonl*")]
    if lake is not None and Path(lake).is_dir():
        days += [p.name[5:] for p in Path(lake).glob("*/venue=*/symbol=*/date=*")]
    valid = [d for d in days if _is_day(d)]
    return min(valid) if valid else None


def _is_day(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False
