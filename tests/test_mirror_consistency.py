"""bench/mirror_consistency.py: a face and its mirror image, scored by the same model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "bench" / "mirror_consistency.py"
_spec = importlib.util.spec_from_file_location("mirror_consistency", _PATH)
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)


def test_a_symmetric_crop_scores_alike_and_an_asymmetric_one_need_not(astronaut) -> None:
    from PIL import Image

    face = np.asarray(Image.fromarray(astronaut).resize((96, 96)))
    half = face[:, :48]
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)[None]
    q, q_mirror = mc.mirror_gaps("lightqnet-dm025x4", symmetric)
    np.testing.assert_array_equal(q, q_mirror)
    lopsided = face.copy()
    lopsided[:, :48] //= 4   # one half in shadow
    batch = np.stack([face, lopsided])
    q, q_mirror = mc.mirror_gaps("lightqnet-dm025x4", batch)
    assert q.shape == (2,) and np.all((q > 0) & (q < 1))
    assert np.abs(q - q_mirror).max() > 1e-4   # the mirror really is a different input
