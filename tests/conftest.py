"""Shared fixtures: a tiny quality model, synthetic face images, the ../shared data location."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from modelkit import build_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEQUAL_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache dir (the detector is cached there on first use)."""
    monkeypatch.setenv("FACEQUAL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small ONNX quality model with a facequal contract in its metadata."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's `astronaut` (NASA portrait of Eileen Collins, public domain), RGB uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory, astronaut) -> Path:
    """A folder of a few face photos (astronaut, mirrored, shifted, scaled) and one non-face."""
    from PIL import Image

    d = tmp_path_factory.mktemp("faces")
    img = Image.fromarray(astronaut)
    (d / "a").mkdir()
    (d / "b").mkdir()
    img.save(d / "a" / "astronaut.jpg", quality=92)
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(d / "a" / "mirrored.png")
    img.resize((256, 256)).save(d / "b" / "small.jpg")
    img.rotate(20, fillcolor=(0, 0, 0)).save(d / "b" / "rotated.webp")
    Image.new("RGB", (200, 150), (90, 140, 200)).save(d / "b" / "sky.png")
    return d


def shared_or_skip(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a message when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (the ../shared data is only on development and CI machines)")
    return p


@pytest.fixture(scope="module")
def chrome():
    """One headless Chromium for a test module (skips where it is not installed)."""
    from test_report import Chrome, chromium_binary

    binary = chromium_binary()
    if binary is None:
        pytest.skip("headless Chromium not found: apt-get install chromium (or set FACEQUAL_CHROMIUM)")
    c = Chrome(binary)
    yield c
    c.close()
