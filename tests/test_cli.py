"""The command line: clear errors (never a traceback) and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.cli import main
from tapeflow.timeutil import parse_duration_ns


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", "lobster", str(tmp_path / "nope.csv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no such file" in err and "nope.csv" in err
    assert "Traceback" not in err


def test_unknown_format_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify", "nasdaq-itch", "x"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_duration_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "--duration", "ten minutes", "--out", str(tmp_path)])
    assert rc == 2
    assert "duration 'ten minutes'" in capsys.readouterr().err


# the formats README.md documents, one venue folder each
README_FORMATS = ["bitmex", "binance", "bybit", "coinbase", "dbn", "kraken", "kucoin", "lobster", "okx",
                  "sim", "tardis"]


def test_every_cli_format_comes_from_a_venue_folder(capsys: pytest.CaptureFixture[str]) -> None:
    from tapeflow.venues import formats

    assert sorted(formats()) == sorted(README_FORMATS)
    assert main(["formats"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(listed) == sorted(README_FORMATS)
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    usage = capsys.readouterr().out
    assert "{" + ",".join(sorted(README_FORMATS)) + "}" in usage  # the choices, from the registry


@pytest.mark.parametrize(("text", "ns"), [("1s", 10**9), ("250ms", 250 * 10**6), ("15m", 900 * 10**9),
                                          ("4h", 4 * 3600 * 10**9), ("1d", 86400 * 10**9), ("7us", 7000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


def test_every_venue_folder_imports() -> None:
    from tapeflow.venues import formats

    for fmt in formats().values():  # each declared part loads (the registry imports them lazily)
        assert callable(fmt.decode) and (fmt.verify is None or callable(fmt.verify))
        assert not fmt.has_client or isinstance(fmt.client, type)
        assert not fmt.has_replay or isinstance(fmt.replay, type)
