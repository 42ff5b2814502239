"""Synthetic head turns (facequal.train.pose) and adding them to a cache (facequal.train.pose_cache)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facequal.train import pose

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"
# a five-point face on a 120x100 canvas: eyes 30 px apart around x = 50
TEMPLATE = np.array([[35.0, 45.0], [65.0, 45.0], [50.0, 62.0], [38.0, 78.0], [62.0, 78.0]])


def _columns(h: int = 120, w: int = 100) -> np.ndarray:
    """A crop whose red channel is its column index: what a warp samples is readable."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :]
    img[..., 1] = np.arange(h, dtype=np.uint8)[:, None]
    return img


def test_no_turn_is_the_identity() -> None:
    img = np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    assert np.array_equal(pose.synthetic_yaw(img, TEMPLATE, 0.0), img)


def test_inverse_map_undoes_the_turn_on_the_visible_face() -> None:
    r, a = 36.0, math.radians(40)
    u = np.linspace(-r, r * math.cos(a) - 1e-6, 200)  # points that stay in view
    assert np.allclose(pose.source_offset(pose.turned_offset(u, r, a), r, a), u, atol=1e-9)


@pytest.mark.parametrize("angle", [-60.0, -25.0, 25.0, 60.0])
def test_inverse_map_folds_nothing(angle: float) -> None:
    r, a = 36.0, math.radians(angle)
    v = np.linspace(-3 * r, 3 * r, 4001)
    u = pose.source_offset(v, r, a)
    assert np.all(np.diff(u) >= -1e-9)  # no pixel shows up twice in mirror order
    side = math.copysign(1.0, angle)
    eps = 1e-9
    # At the limb of the side the face turns towards: the hidden part of the face is skipped ...
    toward = pose.source_offset(np.array([side * (r - eps), side * (r + eps)]), r, a)
    assert abs(abs(toward[1] - toward[0]) - r * (1 - math.cos(a))) < 1e-3
    # ... and at the other limb the side of the head continues the face: no gap.
    other = pose.source_offset(np.array([-side * (r - eps), -side * (r + eps)]), r, a)
    assert abs(other[1] - other[0]) < 1e-3


def test_turning_compresses_one_side_and_moves_the_points() -> None:
    img = _columns()
    turned = pose.synthetic_yaw(img, TEMPLATE, 45.0)
    assert turned.shape == img.shape and turned.dtype == np.uint8
    lm = pose.turned_landmarks(TEMPLATE, 45.0)
    assert lm[1, 0] - lm[0, 0] < 30 * 0.8       # the eyes come closer together
    assert np.all(lm[:, 0] > TEMPLATE[:, 0])    # and every point moves towards the image's right
    # Re-aligned, the eyes sit on the template again; the face side that turns away (right of the
    # nose) is compressed: more original columns between the nose and the right eye than before.
    row = turned[45, :, 0].astype(int)
    nose, right_eye = int(TEMPLATE[2, 0]), int(TEMPLATE[1, 0])
    assert row[right_eye] - row[nose] > right_eye - nose
    assert np.array_equal(pose.synthetic_yaw(img, TEMPLATE, 45.0), turned)  # deterministic
    mirrored = pose.synthetic_yaw(img[:, ::-1], TEMPLATE[[1, 0, 2, 4, 3]] * [-1, 1] + [99, 0], -45.0)
    assert np.abs(mirrored[:, ::-1, 1].astype(int) - turned[..., 1]).max() <= 1  # symmetric


def test_refusals() -> None:
    with pytest.raises(ValueError, match="outside"):
        pose.synthetic_yaw(_columns(), TEMPLATE, 80.0)
    with pytest.raises(ValueError, match="uint8"):
        pose.synthetic_yaw(_columns().astype(np.float32), TEMPLATE, 10.0)
    with pytest.raises(ValueError, match="apart"):
        pose.synthetic_yaw(_columns(), np.zeros((5, 2)), 10.0)


def _teacher_available() -> None:
    pytest.importorskip("onnxruntime")
    try:
        from facequal.models.dlib_resnet import dlib_model_path

        dlib_model_path()
    except Exception as e:  # noqa: BLE001 - a missing teacher makes this a skip
        pytest.skip(f"teacher not available: {e}")


@pytest.mark.slow
def test_add_yaw_variants_to_a_cache(tmp_path: Path) -> None:
    _teacher_available()
    from facequal.train.cache import TrainingCache, write_cache
    from facequal.train.pose_cache import PoseConfig, add_yaw_variants

    # A small base cache whose photos are the project's own example images (two rows each; the
    # arrays are stand-ins: the extension copies them, it does not read them).
    paths = ["astronaut.jpg", "no_face_coffee.jpg", "blur.jpg"]
    rng = np.random.default_rng(1)
    n = 2 * len(paths)
    emb = rng.normal(size=(n, 128)).astype(np.float32)
    arrays = {"crops_student": rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8),
              "identity": np.array([0, 0, 1, 1, 0, 0]), "source": np.zeros(n, np.int16),
              "image": np.repeat(np.arange(len(paths)), 2), "variant": np.tile([0, 1], len(paths)),
              "emb": emb / np.linalg.norm(emb, axis=1, keepdims=True),
              "feat": rng.normal(size=(n, 256)).astype(np.float16)}
    meta = {"sources": ["lfw", "cfp", "celeba"], "identities": ["a", "b"], "variants": ["clean", "flip"],
            "paths": paths, "teacher": "dlib-resnet-v1", "build": {"flip": True, "bands_p": 0.0}}
    base = write_cache(tmp_path / "base", arrays, meta)
    before = (base / "crops_student.npy").read_bytes()
    out = tmp_path / "out"
    add_yaw_variants(PoseConfig(data_root=str(EXAMPLES), base=str(base), out=str(out)))
    c = TrainingCache.open(out)
    assert c.meta["variants"] == ["clean", "flip", "yaw1"]
    assert c.meta["pose_variants"]["photos_turned"] == 2  # the coffee cup has no face
    assert c.n == n + 2
    for name, a in arrays.items():  # the base rows, unchanged, first
        assert np.array_equal(np.asarray(getattr(c, name))[:n], a)
    new = slice(n, None)
    assert list(np.asarray(c.image)[new]) == [0, 2] and list(np.asarray(c.identity)[new]) == [0, 0]
    assert list(np.asarray(c.variant)[new]) == [2, 2]
    assert np.allclose(np.linalg.norm(np.asarray(c.emb)[new], axis=1), 1, atol=1e-4)
    assert (base / "crops_student.npy").read_bytes() == before  # the base is only read
    with pytest.raises(FileExistsError):  # never written over
        add_yaw_variants(PoseConfig(data_root=str(EXAMPLES), base=str(base), out=str(out)))
    (tmp_path / "half.staging").mkdir()  # an interrupted run's folder is left for the user to remove
    with pytest.raises(FileExistsError, match="interrupted"):
        add_yaw_variants(PoseConfig(data_root=str(EXAMPLES), base=str(base), out=str(tmp_path / "half")))
    assert (tmp_path / "half.staging").is_dir() and not (tmp_path / "half").exists()
    with pytest.raises(ValueError, match="already has"):
        add_yaw_variants(PoseConfig(data_root=str(EXAMPLES), base=str(out), out=str(tmp_path / "again")))
