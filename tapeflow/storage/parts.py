"""One lake partition on disk: immutable part files, published by rename, swapped whole by exchange.

A partition directory (``<root>/<dataset>/venue=<v>/symbol=<s>/date=<d>/``) holds only committed
part files, never a temporary one:

- ``part-0.parquet``: the base, written by a replace, a merge or a full compaction;
- ``part-<lo>-<hi>.parquet`` (12-digit numbers): appended rows, covering the partition's append
  sequence numbers ``lo..hi`` (one per append, ``lo == hi``; a tiered merge of appends covers a run).

Every part records, in its Parquet key-value metadata and therefore in the same rename as its rows,
the batch tokens it holds (``tapeflow.batch_tokens``) and the highest append sequence number it
covers (``tapeflow.seq``), so names are never reused with other content. Temporary files and
directories live in the lake's staging area ``<root>/.tapeflow/tmp`` (same filesystem, outside every
dataset), so no hive reader ever lists one.

Commit steps (the docs' "commit protocol", docs/storage.md):

- append: write the part in staging, fsync, rename it into the partition, fsync the directory;
- swap (replace, merge, compaction): build the complete new directory in staging (unchanged parts
  hard-linked, new ones written and fsynced), then exchange it with the partition directory in one
  ``renameat2(RENAME_EXCHANGE)`` (macOS: ``renamex_np(RENAME_SWAP)``), fsync, delete the old one.

A directory listing therefore shows the old set or the new set, never both. Where the filesystem
cannot exchange directories, two renames are used and a journal in staging lets :func:`recover`
finish a swap a crash interrupted between them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.errors import StorageError
from tapeflow.storage.locks import register_owner

BASE = "part-0.parquet"
STAGING = Path(".tapeflow") / "tmp"
TOKENS_KEY = b"tapeflow.batch_tokens"
SEQ_KEY = b"tapeflow.seq"
_PART = re.compile(r"^part-(\d{12})-(\d{12})\.parquet$")
_JOURNAL = ".swap.json"


@dataclass(frozen=True)
class Part:
    """A committed part file of a partition.

    Attributes:
        name: the file name in the partition directory.
        lo, hi: the append sequence numbers it covers; the base has ``lo == hi == 0`` by name
            (its metadata says how far it reaches).
    """

    name: str
    lo: int
    hi: int

    @property
    def is_base(self) -> bool:
        return self.name == BASE

    @property
    def appends(self) -> int:
        """How many appends the part holds (0 for the base)."""
        return 0 if self.is_base else self.hi - self.lo + 1


def part_name(lo: int, hi: int) -> str:
    """The file name of the part covering append sequence numbers ``lo..hi``."""
    return f"part-{lo:012d}-{hi:012d}.parquet"


def list_parts(directory: Path) -> list[Part]:
    """The committed parts of a partition, base first, then appends in sequence order.

    A missing directory has none; files that are not part files are not the lake's and are ignored.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    parts = []
    for name in names:
        if name == BASE:
            parts.append(Part(name, 0, 0))
        elif (m := _PART.match(name)) is not None:
            parts.append(Part(name, int(m.group(1)), int(m.group(2))))
    return sorted(parts, key=lambda p: (not p.is_base, p.lo))


@dataclass(frozen=True)
class PartMeta:
    """What a part's footer says: rows, size, the batch tokens it holds and how far it reaches."""

    rows: int
    bytes: int
    tokens: tuple[str, ...]
    seq: int


def read_meta(path: Path) -> PartMeta:
    """The footer metadata of one part file."""
    try:
        meta = pq.read_metadata(path)
        size = path.stat().st_size
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"reading {path} failed: {exc}") from exc
    kv = meta.metadata or {}
    tokens = tuple(json.loads(kv.get(TOKENS_KEY, b"[]")))
    return PartMeta(meta.num_rows, size, tokens, int(kv.get(SEQ_KEY, b"0")))


def with_meta(schema: pa.Schema, tokens: list[str], seq: int) -> pa.Schema:
    """``schema`` carrying the part metadata (tokens, highest append sequence number)."""
    meta = dict(schema.metadata or {})
    meta[TOKENS_KEY] = json.dumps(tokens).encode()
    meta[SEQ_KEY] = str(seq).encode()
    return schema.with_metadata(meta)


def staging(root: Path) -> Path:
    """The lake's staging area (created on demand): temporary files and directories only."""
    register_owner(root)  # before anything of ours is there: cleanup spares only live owners' files
    path = Path(root) / STAGING
    path.mkdir(parents=True, exist_ok=True)
    return path


def temp_path(root: Path, suffix: str = ".parquet") -> Path:
    """A fresh name in the staging area."""
    return staging(root) / f"{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def write_file(table: pa.Table, path: Path, **options: object) -> int:
    """Write one Parquet file and fsync it (no rename); return its size."""
    try:
        with open(path, "wb") as sink:
            pq.write_table(table, sink, **options)
            sink.flush()
            os.fsync(sink.fileno())
    except (OSError, pa.ArrowException) as exc:
        Path(path).unlink(missing_ok=True)
        raise StorageError(f"writing {path} failed: {exc}") from exc
    return Path(path).stat().st_size


def publish(tmp: Path, directory: Path, name: str) -> Path:
    """Rename a finished (fsynced) file from staging into a partition: the append's commit point."""
    created = make_dirs(directory)
    target = directory / name
    try:
        os.rename(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"publishing {target} failed: {exc}") from exc
    for d in [directory, *created]:
        fsync_path(d)
    return target


def new_version(root: Path) -> Path:
    """An empty directory in staging in which to build a partition's next version."""
    path = temp_path(root, ".dir")
    path.mkdir()
    return path


def link_into(directory: Path, name: str, version: Path) -> None:
    """Put the unchanged part ``directory/name`` into a new version (hard link; a copy where links fail)."""
    try:
        os.link(directory / name, version / name)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise StorageError(f"linking {directory / name} failed: {exc}") from exc
        shutil.copy2(directory / name, version / name)


def swap(root: Path, version: Path, directory: Path) -> None:
    """Make the fully written ``version`` the partition ``directory`` in one step (its commit point).

    An empty ``version`` removes the partition. The previous contents are deleted afterwards.
    """
    fsync_path(version)
    if not directory.exists():
        if any(version.iterdir()):
            created = make_dirs(directory.parent)
            os.rename(version, directory)
            for d in [directory.parent, *created]:
                fsync_path(d)
        else:
            version.rmdir()
        return
    if not any(version.iterdir()):
        retired = temp_path(root, ".old")
        os.rename(directory, retired)  # one rename: the partition disappears whole
        fsync_path(directory.parent)
        shutil.rmtree(retired, ignore_errors=True)
        return
    try:
        _exchange(version, directory)
    except _NoExchange:
        _swap_by_two_renames(root, version, directory)
        return
    fsync_path(directory.parent)
    fsync_path(version.parent)
    shutil.rmtree(version, ignore_errors=True)  # now the old contents


def recover(root: Path) -> int:
    """Finish swaps a crash interrupted on a filesystem without directory exchange; return how many.

    Only :func:`swap`'s two-rename fallback can leave a partition missing (between its renames);
    its journal names the new version, which is complete, so it is renamed into place.
    """
    area = Path(root) / STAGING
    done = 0
    for journal in sorted(area.glob(f"*{_JOURNAL}")) if area.exists() else []:
        entry = json.loads(journal.read_text())
        target, version = Path(root) / entry["target"], area / entry["version"]
        if not target.exists() and version.exists():
            os.rename(version, target)
            fsync_path(target.parent)
            done += 1
        journal.unlink()
    return done


def _swap_by_two_renames(root: Path, version: Path, directory: Path) -> None:
    area = staging(root)
    journal = area / f"{version.name}{_JOURNAL}"
    journal.write_text(json.dumps({"target": str(directory.relative_to(root)), "version": version.name}))
    fsync_path(journal)
    fsync_path(area)
    retired = temp_path(root, ".old")
    os.rename(directory, retired)
    os.rename(version, directory)
    fsync_path(directory.parent)
    journal.unlink()
    shutil.rmtree(retired, ignore_errors=True)


class _NoExchange(Exception):
    pass


_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h
_AT_FDCWD = -100
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _exchange(a: Path, b: Path) -> None:
    if sys.platform.startswith("linux") and hasattr(_libc, "renameat2"):
        rc = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(_libc, "renamex_np"):
        rc = _libc.renamex_np(os.fsencode(a), os.fsencode(b), _RENAME_SWAP)
    else:
        raise _NoExchange
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise _NoExchange
        raise StorageError(f"exchanging {a} with {b} failed: {os.strerror(err)}")


def make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the parents of what was created (to fsync)."""
    missing = []
    probe = Path(directory)
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [p.parent for p in missing]


def fsync_path(path: Path) -> None:
    """fsync a file (its bytes) or a directory (the renames in it), so they are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path, **options: object) -> int:
    """Write one standalone Parquet file (zstd) by temp file + fsync + rename + directory fsync.

    For files outside the lake's partitions (``tapeflow book --out``); lake partitions are written
    through :mod:`tapeflow.storage.writer`.

    Args:
        table: any Arrow table.
        path: the final file; missing parent directories are created.
        options: ``pyarrow.parquet.write_table`` options overriding the zstd defaults.

    Returns:
        The size of the file written, in bytes.

    Raises:
        StorageError: the write failed (the previous file, if any, is left as it was).
    """
    path = Path(path)
    options = {"compression": "zstd", "compression_level": 3} | options
    created = make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    write_file(table, tmp, **options)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"writing {path} failed: {exc}") from exc
    for directory in [path.parent, *created]:
        fsync_path(directory)
    return path.stat().st_size
