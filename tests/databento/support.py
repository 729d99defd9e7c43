"""Shared pieces of the Databento tests: the real files, the API test vectors, a canary key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import need

# A key shaped like Databento's (``db-`` + 29 characters); a canary: it must never appear in output.
KEY = "db-CanaryKeyTapeflow7Q2ZXW9VKAB"
MBO_1224 = "glbx/esh4-glbx-mdp3-20231224.mbo.dbn.zst"
MBO_1225 = "glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"


def databento_file(real_data: Path, name: str) -> Path:
    """A file of ``<real data>/databento`` (the calling test skips, saying why, when it is absent)."""
    return need(real_data / "databento" / name)


def vectors(real_data: Path) -> dict[str, Any]:
    """The API test vectors (``databento/api/databento_api_test_vectors.json``)."""
    return json.loads(databento_file(real_data, "api/databento_api_test_vectors.json").read_text())


def files_holding(root: Path, secret: str) -> list[Path]:
    """Every file under ``root`` whose bytes hold ``secret`` (the canary search of an output tree)."""
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
