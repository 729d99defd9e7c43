"""The input files of a command, checked before a decode and diagnosed after one fails.

:func:`check_inputs` refuses, before anything is decoded or written, what can never be decoded: a
missing path, a directory, an empty file, an unreadable one. :func:`diagnose` runs only when a
decode raised something that is not a :class:`~tapeflow.errors.TapeflowError` (a decoder that let a
``zstd`` or ``gzip`` error through): it reads each file whole to find the one whose bytes are
damaged, so the error names that file and what is wrong with it instead of showing a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tapeflow.errors import FormatError, InputError
from tapeflow.wire.capture import check_readable


def check_inputs(paths: Sequence[Path]) -> list[Path]:
    """``paths`` as a list, once each is an existing, non-empty, readable file.

    Raises:
        InputError: naming every path that is missing, a directory, empty or unreadable.
    """
    problems = []
    for path in map(Path, paths):
        if not path.exists():
            problems.append(f"{path}: no such file")
        elif path.is_dir():
            problems.append(f"{path} is a directory, not a file: pass the files inside it")
        elif not os.access(path, os.R_OK):
            problems.append(f"{path} cannot be read: permission denied")
        elif path.stat().st_size == 0:
            problems.append(f"{path} is empty (0 bytes): an interrupted download or copy?")
    if problems:
        raise InputError("; ".join(problems))
    return [Path(p) for p in paths]


def diagnose(paths: Sequence[Path]) -> InputError | None:
    """The file-level damage that explains a failed decode, or None when every file reads whole.

    Reads every file to its end (decompressing gzip/zst), so it is for the error path only.
    """
    for path in map(Path, paths):
        try:
            check_readable(path)
        except FormatError as exc:
            return InputError(str(exc))
    return None
