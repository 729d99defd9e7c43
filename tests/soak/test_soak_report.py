"""The soak's judgment (bench/soak.py) on made-up samples: the run itself is `make soak` only."""

from __future__ import annotations

import math

import pytest

from bench.soak import Sample, quantile, report


def test_the_p99_is_interpolated_within_its_bucket() -> None:
    before = {0.001: 10.0, 0.0025: 10.0, math.inf: 10.0}
    after = {0.001: 108.0, 0.0025: 110.0, math.inf: 110.0}  # 98 at <= 1 ms, 2 in (1, 2.5] ms
    assert quantile(0.99, before, after) == pytest.approx(0.00175)
    assert quantile(0.5, before, after) == pytest.approx(0.001 * 50 / 98)
    assert math.isnan(quantile(0.99, after, after))


def _samples(mib_per_min: float) -> list[Sample]:
    buckets = {0.001: 0.0, math.inf: 0.0}
    out = []
    for i in range(30):
        t_s = 10.0 * i
        wobble = 3.0 * (-1) ** i  # the allocator's noise
        out.append(Sample(t_s, 500 + wobble + mib_per_min * t_s / 60, 1000.0 * t_s, dict(buckets)))
    return out


def test_flat_memory_passes_and_growth_beyond_the_bound_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # at 1,000 frames/s the bound is 18 B x 1,000 x 60 per minute: 1.03 MiB/min
    assert report(_samples(0.0), 60, 1000) == 0
    assert report(_samples(5.0), 60, 1000) == 1
    assert "FAILED: memory grows" in capsys.readouterr().out


def test_too_few_samples_after_the_warm_up_fail() -> None:
    assert report(_samples(0.0)[:5], 60, 1000) == 1
