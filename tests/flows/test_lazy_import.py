"""``tapeflow.live`` loads its connector stack on first use, so ``tapeflow`` commands start fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tapeflow.live.connector", "aiohttp", "pandas")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_cli_import_leaves_the_connector_stack_alone() -> None:
    assert _loaded_after("import tapeflow.cli") == set()
    assert _loaded_after("import tapeflow.live") == set()


def test_names_still_resolve_on_first_use() -> None:
    assert "tapeflow.live.connector" in _loaded_after("from tapeflow.live import Connector")
    import tapeflow.live as live
    from tapeflow.live.frames import RawFrame

    assert live.RawFrame is RawFrame
    assert set(live.__all__) <= set(dir(live))
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = live.missing
