"""Is this the format it was declared as? A wrong ``--format`` is one error naming the likely one.

A capture decoded with the wrong venue's decoder is not damaged input: every frame would become
an ``unknown_message`` (or ``missing_field``) dead letter and the run would "succeed". So before
``ingest`` or ``verify`` decodes, :func:`check_format` decodes a sample (the first lines of the
first files) with the declared format; when most of the sample is rejected, it decodes the same
sample with every other registered format, and a format that reads it cleanly is named in the
error. A sample no other format reads is left to the decode: its rejects are the answer.
"""

from __future__ import annotations

import gzip
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tapeflow.errors import FormatError
from tapeflow.wire.capture import GZIP_MAGIC, READ_ERRORS, ZSTD_MAGIC, open_maybe_gzip
from tapeflow.wire.registry import VenueFormat, formats
from tapeflow.wire.rejects import IGNORED_BY_RULE

SAMPLE_LINES = 64  # first lines of each sampled file: enough to tell formats apart (15-65 ms CPU)
SAMPLE_FILES = 3  # first files of a command
_MAX_SAMPLE_LINE = 1 << 20  # a longer line is cut (a REST book snapshot fits; a 50 MB line does not)
_BINARY_MAGICS = (ZSTD_MAGIC, b"PK\x03\x04", b"DBN")  # DBN, zip: framed binaries, not sampled by lines


@dataclass(frozen=True)
class Score:
    """What a format made of a sample: rows normalized, units rejected, the commonest reason."""

    normalized: int
    rejected: int
    top_reason: str

    @property
    def mostly_rejected(self) -> bool:
        return self.rejected > 0 and self.rejected * 2 >= self.rejected + self.normalized

    @property
    def clean(self) -> bool:
        return self.normalized > 0 and self.rejected * 10 <= self.normalized


def check_format(fmt: VenueFormat, paths: Sequence[Path]) -> None:
    """Refuse ``paths`` when their first lines are mostly rejected by ``fmt`` and another format
    reads them cleanly.

    Raises:
        FormatError: naming the file, how much of the sample ``fmt`` rejected and the format that
            reads it.
    """
    with tempfile.TemporaryDirectory(prefix="tapeflow-sniff-") as tmp:
        samples = [_sample(Path(p), Path(tmp) / str(i)) for i, p in enumerate(paths[:SAMPLE_FILES])]
        if not samples or any(s is None for s in samples):
            return
        sample = [s for s in samples if s is not None]
        own = score(fmt, sample)
        if own is not None and not own.mostly_rejected:
            return
        others = {name: score(other, sample) for name, other in sorted(formats().items()) if name != fmt.name}
        fits = {name: s for name, s in others.items() if s is not None and s.clean}
    if not fits:
        return
    best = max(fits, key=lambda name: (fits[name].normalized, name))
    if own is None:
        what = f"the {fmt.name} decoder refuses its first lines"
    else:
        units = own.rejected + own.normalized
        what = f"{own.rejected:,} of the first {units:,} units sampled were rejected ({own.top_reason} most)"
    raise FormatError(f"{paths[0]} does not look like {fmt.name}: {what}, but they decode cleanly as {best}: "
                      f"did you mean --format {best}?")


def score(fmt: VenueFormat, paths: Sequence[Path]) -> Score | None:
    """What ``fmt`` makes of ``paths``; None when it refuses them outright (an error of any kind)."""
    normalized = 0
    reasons: Counter[str] = Counter()
    try:
        for chunk in fmt.decode(paths):
            for name, table in chunk.tables.items():
                if name == "rejected":
                    reasons.update(table.column("reason").to_pylist())
                    for reason in IGNORED_BY_RULE & reasons.keys():  # the format's own units
                        normalized += reasons.pop(reason)
                else:
                    normalized += table.num_rows
    except Exception:  # any refusal: this format is not the file's, whatever its decoder raised
        return None
    top = reasons.most_common(1)[0][0] if reasons else ""
    return Score(normalized, sum(reasons.values()), top)


def _sample(path: Path, folder: Path) -> Path | None:
    """The first lines of ``path`` under ``folder``, keeping its name, parent folder name and gzip
    (decoders read them); None for files not sampled by lines (framed binaries, unreadable ones)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic.startswith(_BINARY_MAGICS):
            return None
        lines = []
        with open_maybe_gzip(path) as fh:
            for _ in range(SAMPLE_LINES):
                line = fh.readline(_MAX_SAMPLE_LINE)
                if not line:
                    break
                lines.append(line)
    except (*READ_ERRORS, FormatError):
        return None  # the decode itself reports an unreadable file, naming it
    if any(b"\x00" in line for line in lines):
        return None
    out = folder / path.parent.name / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(lines)
    out.write_bytes(gzip.compress(data, mtime=0) if magic[:2] == GZIP_MAGIC else data)
    return out
