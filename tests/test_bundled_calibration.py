"""The bundled models' calibration maps: strictly increasing, no floor, no ceiling plateau (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from facequal.models.zoo import bundled_names, resolve_model


@pytest.mark.parametrize("name", bundled_names("quality"))
def test_bundled_map_orders_like_the_raw_output_and_reaches_the_ends(name: str) -> None:
    c = resolve_model(name).contract
    assert c.calibration is not None and c.calibration.get("space") == "logit"
    raw = np.linspace(1e-4, 1 - 1e-4, 50_001)
    q = c.calibrate(raw).astype(np.float64)
    assert np.all(np.diff(q) >= 0)
    # >= 98% of these distinct raw outputs stay apart: no plateau of tied faces.
    assert np.unique(q).size >= 0.98 * raw.size
    # Faces the network finds hopeless are not held up at a floor.
    assert q[0] < 0.02 and q[-1] > 0.999
