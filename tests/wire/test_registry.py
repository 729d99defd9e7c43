"""The venue registry: the one switch from a format name to its decoder, verifier, client, replay."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tapeflow.venues
from tapeflow.errors import ConfigError, RegistryError
from tapeflow.wire import registry


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    registry.formats.cache_clear()
    yield
    registry.formats.cache_clear()


def _extra_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, init: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text(init)
    monkeypatch.setattr(tapeflow.venues, "__path__", [*tapeflow.venues.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, f"tapeflow.venues.{name}", raising=False)


def test_a_folder_that_fails_to_import_is_an_error_naming_it(fresh_registry: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _extra_folder(monkeypatch, tmp_path, "zzbroken", "import no_such_module\n")
    with pytest.raises(RegistryError, match=r"tapeflow/venues/zzbroken/ failed to import: "
                                            r"ModuleNotFoundError: No module named 'no_such_module'"):
        registry.formats()


def test_a_folder_without_format_is_an_error(fresh_registry: None, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _extra_folder(monkeypatch, tmp_path, "zzempty", '"""A venue folder that declares nothing."""\n')
    with pytest.raises(RegistryError, match="tapeflow/venues/zzempty/ declares no FORMAT"):
        registry.get_format("binance")


def test_the_cli_says_which_folder_is_broken(fresh_registry: None, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tapeflow.cli import main

    _extra_folder(monkeypatch, tmp_path, "zzbroken", "raise RuntimeError('half-written venue')\n")
    assert main(["formats"]) == 2
    err = capsys.readouterr().err
    assert "tapeflow/venues/zzbroken/ failed to import: RuntimeError: half-written venue" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_adding_a_folder_adds_a_format_with_its_parts(fresh_registry: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _extra_folder(monkeypatch, tmp_path, "zzvenue", (
        "from tapeflow.wire.registry import VenueFormat\n"
        "FORMAT = VenueFormat('zz', decode='tapeflow.venues.binance.parse:decode',\n"
        "                     replay='tapeflow.venues.sim.replay:SimReplay', description='test venue')\n"))
    fmt = registry.get_format("zz")
    assert fmt.folder == "zzvenue" and "zz" in registry.format_names() and "zz" in registry.replayable()
    assert not fmt.has_verify and fmt.verify is None and "zz" not in registry.live_venues()
    from tapeflow.venues.binance.parse import decode

    assert fmt.decode is decode


def test_the_parts_come_from_each_folder() -> None:
    from tapeflow.replay.protocol import adapter_for
    from tapeflow.venues.binance.client import BinanceClient
    from tapeflow.venues.kraken.replay import KrakenReplay

    assert registry.client_class("binance") is BinanceClient
    assert isinstance(adapter_for("kraken"), KrakenReplay)
    assert registry.replayable() == ["binance", "bybit", "coinbase", "deribit", "iqfeed", "kraken", "okx",
                                     "sim"]
    assert registry.live_venues() == ["binance", "bybit", "coinbase", "dbn", "deribit", "iqfeed", "kraken",
                                      "okx", "sim"]
    with pytest.raises(ConfigError, match="no live connector for venue 'lobster'"):
        registry.client_class("lobster")
    with pytest.raises(ConfigError, match="format 'tardis' cannot be replayed; replayable: binance, bybit"):
        adapter_for("tardis")
    with pytest.raises(ConfigError, match="unknown format 'nasdaq'"):
        registry.get_format("nasdaq")


def test_listing_the_formats_imports_no_decoder() -> None:
    code = ("import sys; from tapeflow.wire.registry import formats; formats(); "
            "print(sorted(m for m in sys.modules if m.startswith(('tapeflow.venues.', 'pyarrow', 'numpy', "
            "'numba', 'msgspec'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)  # the module names the child printed
    assert loaded and all(m.count(".") == 2 and m.startswith("tapeflow.venues.") for m in loaded), loaded
