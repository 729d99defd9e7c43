"""Thresholds file: validated with messages naming file, key and line; reloaded live, bad edits refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.errors import ConfigError
from tapeflow.settings import Settings
from tapeflow.signals.config import DEFAULT_PATH, PARAMS, config_path, load, params_hash
from tapeflow.signals.reload import ThresholdsReloader


def _copy(tmp_path: Path) -> Path:
    path = tmp_path / "thresholds.toml"
    path.write_text(DEFAULT_PATH.read_text())
    return path


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == text)


def test_shipped_defaults_are_complete_and_instruments_pick_presets():
    th = load(DEFAULT_PATH)
    assert th.default_preset == "crypto"
    for preset in th.presets.values():
        assert {d: set(v) for d, v in preset.items()} == {d: set(s) for d, s in PARAMS.items()}
    assert th.preset_of("SIMA") == "equity" and th.preset_of("SIM-BTCUSDT") == "crypto"
    assert th.for_instrument("whale", "SIMA")["block_x_median"] == 20.0
    assert th.for_instrument("whale", "SIM-BTCUSDT")["block_x_median"] == 50.0
    assert th.for_instrument("whale", "SIMA", preset="crypto")["block_x_median"] == 50.0


def test_settings_name_the_file():
    assert config_path(Settings.from_env({})) == DEFAULT_PATH
    settings = Settings.from_env({"TAPEFLOW_SIGNALS_CONFIG": "/x/t.toml"})
    assert config_path(settings) == Path("/x/t.toml")


def test_instrument_override_changes_one_key_and_the_hash(tmp_path):
    path = _copy(tmp_path)
    path.write_text(path.read_text() + '\n[instrument."SIMA".whale]\nblock_x_median = 33.0\n')
    th = load(path)
    sima = th.for_instrument("whale", "SIMA")
    assert sima["block_x_median"] == 33.0
    assert sima["sweep_levels"] == th.presets["equity"]["whale"]["sweep_levels"]
    assert params_hash(sima) != params_hash(th.for_instrument("whale", "SIMB"))


@pytest.mark.parametrize(("old", "new", "message"), [
    ("block_x_median = 50.0", "block_x_mediam = 50.0", "unknown threshold"),
    ("block_x_median = 50.0", 'block_x_median = "big"', "must be a number"),
    ("sweep_levels = 3", "sweep_levels = 3.5", "must be an integer"),
    ("drop_share = 0.5", "drop_share = 1.5", "out of range"),
    ("block_x_median = 50.0", "block_x_median = nan", "must be finite"),
])
def test_a_bad_value_names_file_key_and_line(tmp_path, old, new, message):
    path = _copy(tmp_path)
    text = path.read_text()
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load(path)
    line = _line_of(path, new)
    assert f"{path}:{line}:" in str(err.value)
    assert new.split(" ")[0] in str(err.value) and message in str(err.value)


def test_structural_errors_are_config_errors(tmp_path):
    path = tmp_path / "t.toml"
    for text, message in [
        ("x = [", "not valid TOML"),
        ("colour = 1\n[preset.a.whale]\n", "unknown key"),
        ("[preset.a.whale]\nblock_x_median = 2.0\n", "missing keys"),
        (DEFAULT_PATH.read_text() + '\n[instrument."Q"]\npreset = "forex"\n', "not a preset"),
        (DEFAULT_PATH.read_text() + "\n[preset.crypto.astrology]\nx = 1\n", "unknown detector"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_reloader_takes_a_good_edit_and_keeps_the_old_on_a_bad_one(tmp_path):
    path = _copy(tmp_path)
    now = [0.0]
    rejected: list[str] = []
    rl = ThresholdsReloader(path, min_interval_s=1.0, on_reject=rejected.append, clock=lambda: now[0])
    assert rl.current.for_instrument("whale", "X")["block_x_median"] == 50.0
    assert rl.poll() is False  # nothing changed

    path.write_text(path.read_text().replace("block_x_median = 50.0", "block_x_median = 70.0", 1))
    assert rl.poll() is False, "polled before min_interval_s: the file is not read yet"
    now[0] = 1.5
    assert rl.poll() is True
    assert rl.current.for_instrument("whale", "X")["block_x_median"] == 70.0

    good = path.read_text()
    path.write_text(good.replace("block_x_median = 70.0", "block_x_median = -1.0", 1))
    now[0] = 3.0
    assert rl.poll() is False
    assert rl.current.for_instrument("whale", "X")["block_x_median"] == 70.0
    assert len(rejected) == 1 and "keeping the previous" in rejected[0] and "out of range" in rejected[0]
    assert rl.last_error == rejected[0]

    # the same bad file is not re-reported; the next good edit is taken (same size, same mtime tick)
    now[0] = 4.5
    assert rl.poll() is False and len(rejected) == 1
    path.write_text(good.replace("block_x_median = 70.0", "block_x_median = 80.0", 1))
    assert rl.poll(force=True) is True
    assert rl.current.for_instrument("whale", "X")["block_x_median"] == 80.0
    assert rl.last_error is None and rl.reloads == 2


def test_reloader_refuses_a_bad_file_at_start(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[preset.a.whale]\n")
    with pytest.raises(ConfigError, match="missing keys"):
        ThresholdsReloader(path)
