"""The dlib ResNet converter: parity with dlib itself, the outputs, the cache."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import pytest

from facequal.contract import contract_from_onnx_metadata, to_tensor
from facequal.models import cache, dlib_resnet
from facequal.pipeline.align import align_face

# Five points of the astronaut's face in skimage.data.astronaut() (512x512): eye centres,
# nose tip and mouth corners from dlib's 68-point shape predictor, rounded.
ASTRONAUT_FIVE = np.array([[203.17, 101.50], [246.50, 104.17], [225.00, 127.00],
                           [201.00, 139.00], [246.00, 141.00]])


def _dat_or_skip() -> Path:
    try:
        return dlib_resnet.find_dat_file()
    except FileNotFoundError as e:
        pytest.skip(f"dlib's model is not installed: {e}")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted model, built once into a temporary cache given by $FACEQUAL_CACHE."""
    pytest.importorskip("onnx", reason="the converter needs the onnx package")
    _dat_or_skip()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEQUAL_CACHE", str(tmp_path_factory.mktemp("cache")))
        return dlib_resnet.dlib_model_path()


@pytest.fixture(scope="module")
def session(model: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def _chips() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data", reason="the parity test needs scikit-image")
    from PIL import Image

    chip = align_face(Image.fromarray(skdata.astronaut()), ASTRONAUT_FIVE, dlib_resnet.DLIB_CONTRACT)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    rng = np.random.default_rng(0)
    variants = [
        chip,
        chip[:, ::-1],  # mirrored
        (chip * 0.4).astype(np.uint8),  # darker
        np.clip(chip.astype(np.int16) + rng.integers(-40, 41, chip.shape), 0, 255).astype(np.uint8),
        rng.integers(0, 256, chip.shape, dtype=np.uint8),  # no face at all
    ]
    return np.ascontiguousarray(np.stack(variants))


def test_parity_with_dlib(session) -> None:
    try:
        import dlib
    except ImportError as e:
        pytest.skip(f"dlib is not importable ({e}); install dlib-bin to check parity")
    chips = _chips()
    recogniser = dlib.face_recognition_model_v1(str(dlib_resnet.find_dat_file()))
    # dlib's overload for an image that already is a 150x150 chip: no landmarks, no re-alignment
    want = np.array([np.asarray(recogniser.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips])
    got, _ = session.run(["embedding", "features"], {"input": to_tensor(chips, dlib_resnet.DLIB_CONTRACT)})
    assert got.shape == (len(chips), dlib_resnet.EMBEDDING_DIM)
    diff = np.abs(got - want).max()
    assert diff <= 1e-4, f"max abs difference to dlib: {diff:.3g}"
    # the embedding is dlib's raw descriptor: not unit length
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_and_metadata(session, batch: int) -> None:
    x = np.random.default_rng(batch).normal(0, 0.3, (batch, 3, 150, 150)).astype(np.float32)
    emb, feat = session.run(["embedding", "features"], {"input": x})
    assert emb.shape == (batch, dlib_resnet.EMBEDDING_DIM)
    assert feat.shape == (batch, *dlib_resnet.FEATURES_SHAPE) == (batch, 256, 4, 4)
    assert np.all(feat >= 0)  # the output of a relu
    assert [o.name for o in session.get_outputs()] == ["embedding", "features"]
    meta = session.get_modelmeta().custom_metadata_map
    assert contract_from_onnx_metadata(meta) == dlib_resnet.DLIB_CONTRACT
    assert meta[dlib_resnet.SHA_METADATA_KEY] == dlib_resnet.sha256_file(dlib_resnet.find_dat_file())


def test_cache_reused_and_keyed_by_sha(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEQUAL_CACHE", str(model.parent))
    sha = dlib_resnet.sha256_file(dlib_resnet.find_dat_file())
    assert model.name == f"dlib-resnet-v1-{sha[:16]}.onnx"
    before = model.stat().st_mtime_ns

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the cached model was rebuilt")

    monkeypatch.setattr(dlib_resnet, "convert", no_rebuild)
    assert dlib_resnet.dlib_model_path() == model
    assert model.stat().st_mtime_ns == before

    # another source (another sha) builds another file and leaves the first alone
    def fake_convert(dat: object, out: str | os.PathLike[str]) -> None:
        Path(out).write_bytes(b"stub")

    monkeypatch.setattr(dlib_resnet, "sha256_file", lambda path: "ab" * 32)
    monkeypatch.setattr(dlib_resnet, "convert", fake_convert)
    other = dlib_resnet.dlib_model_path()
    assert other.name == f"dlib-resnet-v1-{'ab' * 8}.onnx"
    assert other.read_bytes() == b"stub" and model.stat().st_mtime_ns == before
    assert not list(model.parent.glob("*.tmp"))


def test_failed_build_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dat_or_skip()

    def broken(dat: object, out: str | os.PathLike[str]) -> None:
        Path(out).write_bytes(b"half")
        raise RuntimeError("boom")

    monkeypatch.setattr(dlib_resnet, "convert", broken)
    with pytest.raises(RuntimeError, match="boom"):
        dlib_resnet.dlib_model_path(cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEQUAL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FACEQUAL_CACHE")
    assert cache.cache_dir() == tmp_path / "xdg" / "facequal"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "facequal"


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(dlib_resnet.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install 'facequal\[embed\]'"):
        dlib_resnet.find_dat_file()


def test_truncated_file_is_rejected() -> None:
    data = _dat_or_skip().read_bytes()
    with pytest.raises(dlib_resnet.DlibFormatError):
        dlib_resnet.read_dat(data[: len(data) // 2])
    with pytest.raises(dlib_resnet.DlibFormatError, match="left over"):
        dlib_resnet.read_dat(data + b"\x00")
