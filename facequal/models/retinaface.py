"""The RetinaFace-MobileNet0.25 face detector, shipped with facequal as ``files/retinaface-mnet025.onnx``.

Where the file comes from and its licence (MIT): ``files/retinaface-mnet025.LICENSE.txt``. The file
is read and checked against its sha256 once per process; sessions are built from those verified
bytes, never from the path, so a file changed after the check is not used either.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

from facequal.errors import ModelError

FILE = "retinaface-mnet025.onnx"
NOTICE = "retinaface-mnet025.LICENSE.md"
SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
SIZE = 1_736_694


def model_path() -> Path:
    """Where the shipped detector model lies (inside the installed package)."""
    return Path(str(resources.files("facequal.models").joinpath("files", FILE)))


def verify(data: bytes, origin: str) -> bytes:
    """Return ``data`` if its sha256 is the known one, else raise ModelError."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ModelError(f"detector model {origin} has sha256 {digest[:16]}..., expected "
                         f"{SHA256[:16]}...: refusing a modified or corrupt model; reinstall facequal")
    return data


@functools.cache
def retinaface_bytes() -> bytes:
    """The verified ONNX bytes of the shipped detector (read and checked once per process).

    A failure is not cached: the next call checks again.
    """
    path = model_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"the detector model {path} is missing; reinstall facequal") from None
    except OSError as e:
        raise ModelError(f"cannot read the detector model {path}: {e.strerror}") from None
    return verify(data, str(path))


def retinaface_session(threads: int = 0, device: str = "cpu", shape: tuple[int, int] | None = None):
    """An onnxruntime session of the detector; ``shape`` (height, width) fixes its input size."""
    from facequal.models.session import make_session

    dims = None if shape is None else {"batch_size": 1, "height": int(shape[0]), "width": int(shape[1])}
    return make_session(retinaface_bytes(), threads=threads, device=device, dims=dims)
