"""Live and batch ``prediction`` rows compared: the same rows, probabilities up to rounding."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.ml import PREDICTION


def assert_same_predictions(live: pa.Table, batch: pa.Table) -> None:
    batch = batch.filter(pc.is_in(batch.column("ts_event_ns"), live.column("ts_event_ns")))
    assert live.num_rows == batch.num_rows > 0
    for name in PREDICTION.column_names:
        got = live.column(name).to_numpy(zero_copy_only=False)
        want = batch.column(name).to_numpy(zero_copy_only=False)
        if name.startswith("p_"):
            # the live buffer's prefix sums start later than the day's: the same features up to rounding
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)
