"""Flip test-time augmentation of embeddings: the definition, mirror symmetry, the CLI flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facequal.cli import app
from facequal.models import dlib_resnet
from facequal.models.zoo import OnnxModel, resolve_model
from facequal.pipeline.align import align_face

# The astronaut's five points in skimage.data.astronaut() (as in test_dlib_resnet.py).
ASTRONAUT_FIVE = np.array([[203.17, 101.50], [246.50, 104.17], [225.00, 127.00],
                           [201.00, 139.00], [246.00, 141.00]])
runner = CliRunner()


@pytest.fixture(scope="module")
def dlib_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dlib's recogniser converted to ONNX, into a temporary cache."""
    pytest.importorskip("onnx", reason="the converter needs the onnx package")
    try:
        dlib_resnet.find_dat_file()
    except FileNotFoundError as e:
        pytest.skip(f"dlib's model is not installed: {e}")
    return dlib_resnet.dlib_model_path(tmp_path_factory.mktemp("dlib-cache"))


@pytest.fixture(scope="module")
def crops(astronaut: np.ndarray) -> np.ndarray:
    """Three 150x150 chips: the astronaut, darker, and noisy."""
    from PIL import Image

    chip = align_face(Image.fromarray(astronaut), ASTRONAUT_FIVE, dlib_resnet.DLIB_CONTRACT)
    rng = np.random.default_rng(0)
    noisy = np.clip(chip.astype(np.int16) + rng.integers(-40, 41, chip.shape), 0, 255).astype(np.uint8)
    return np.stack([chip, (chip * 0.5).astype(np.uint8), noisy])


def test_flip_tta_is_the_normalised_mean_of_raw_embeddings(dlib_model: Path, crops: np.ndarray) -> None:
    spec = resolve_model(dlib_model, task="embedding")
    plain = OnnxModel(spec, threads=1, batch_size=2)
    tta = OnnxModel(spec, threads=1, batch_size=2, flip_tta=True)
    mean = (plain.run(crops) + plain.run(np.ascontiguousarray(crops[:, :, ::-1]))) / 2
    emb, norms = tta.embed(crops)
    assert emb.shape == (3, dlib_resnet.EMBEDDING_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(norms, np.linalg.norm(mean, axis=1), rtol=1e-5)
    np.testing.assert_allclose(emb, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)
    # It is not the plain embedding, and the default stays off for OnnxModel itself.
    assert not plain.flip_tta
    assert np.abs(emb - plain.embed(crops)[0]).max() > 1e-3


def test_flip_tta_is_mirror_symmetric(dlib_model: Path, crops: np.ndarray) -> None:
    model = OnnxModel(resolve_model(dlib_model, task="embedding"), threads=1, flip_tta=True)
    emb, norms = model.embed(crops)
    emb_m, norms_m = model.embed(np.ascontiguousarray(crops[:, :, ::-1]))
    assert (np.sum(emb * emb_m, axis=1) > 0.999).all()
    np.testing.assert_allclose(norms_m, norms, rtol=1e-4)


def _embed(args: list) -> None:
    r = runner.invoke(app, ["embed", *map(str, args), "-q", "--jobs", "1"])
    assert r.exit_code == 0, r.output


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    t = pq.read_table(path)
    emb = {Path(p).name: np.array(e) for p, e, s in zip(t["path"].to_pylist(), t["embedding"].to_pylist(),
                                                        t["status"].to_pylist(), strict=True) if s == "ok"}
    return emb, json.loads(t.schema.metadata[b"facequal.options"])


def test_cli_flip_tta(dlib_model: Path, face_folder: Path, tmp_path: Path) -> None:
    folder = face_folder / "a"                     # astronaut.jpg and its mirror image
    _embed([folder, "--model", dlib_model, "-o", tmp_path / "on.parquet"])
    _embed([folder, "--model", dlib_model, "--no-flip-tta", "-o", tmp_path / "off.parquet"])
    on, on_opts = _read(tmp_path / "on.parquet")
    off, off_opts = _read(tmp_path / "off.parquet")
    # On by default for the dlib recogniser, and recorded in the file's options.
    assert on_opts["flip_tta"] is True and off_opts["flip_tta"] is False
    assert set(on) == set(off) == {"astronaut.jpg", "mirrored.png"}
    assert float(on["astronaut.jpg"] @ off["astronaut.jpg"]) < 0.9999
    # A mirrored photo gets (nearly) the embedding of the original: more so with the flip.
    assert float(on["astronaut.jpg"] @ on["mirrored.png"]) > 0.995      # 0.9979 (0.9916 without)
    assert on["astronaut.jpg"] @ on["mirrored.png"] >= off["astronaut.jpg"] @ off["mirrored.png"]
    # --resume refuses to mix settings in one file.
    r = runner.invoke(app, ["embed", str(folder), "--model", str(dlib_model), "--flip-tta", "-q",
                            "--jobs", "1", "-o", str(tmp_path / "off.parquet"), "--resume"])
    assert r.exit_code == 2 and "made with other options" in r.output
