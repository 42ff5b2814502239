"""Small face thumbnails for reports: from a saved crop, or aligned from the original image.

The display framing is the ArcFace five-point template shrunk into the thumbnail with a margin,
so a thumbnail shows a little more than the model's crop (hair line, chin).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from facequal.contract import ARCFACE_112, Contract
from facequal.pipeline.align import align_face

# Fraction of the thumbnail the 112-px ArcFace frame occupies (the rest is margin).
THUMB_FILL = 0.8
FORMATS = ("webp", "jpeg")
MIME = {"webp": "image/webp", "jpeg": "image/jpeg"}


@lru_cache(maxsize=8)
def thumbnail_contract(size: int = 96) -> Contract:
    """A display-only contract: ArcFace 112 template scaled to ``size`` px with a margin."""
    f = THUMB_FILL * size / 112.0
    off = (size - 112.0 * f) / 2.0
    template = tuple((x * f + off, y * f + off) for x, y in ARCFACE_112)
    return Contract(
        name="thumbnail", template=template, warp_size=(size, size), crop_size=(size, size), resize="none"
    )


def face_thumbnail(image: Image.Image, landmarks: np.ndarray, size: int = 96) -> Image.Image:
    """The face at ``landmarks`` (5 x 2 image pixels) of an RGB image, aligned, ``size`` px square."""
    arr = align_face(image, np.asarray(landmarks, dtype=np.float64).reshape(5, 2), thumbnail_contract(size))
    return Image.fromarray(arr, "RGB")


def crop_thumbnail(crop: Image.Image, size: int = 96) -> Image.Image:
    """A saved (already aligned) crop resized to ``size`` px square."""
    crop = crop.convert("RGB")
    if crop.size != (size, size):
        crop = crop.resize((size, size), Image.Resampling.LANCZOS)
    return crop


def load_crop_thumbnail(path: str | Path, size: int = 96) -> Image.Image:
    """Open a crop file and make its thumbnail (raises OSError / ValueError on bad files)."""
    with Image.open(path) as im:
        im.load()
        return crop_thumbnail(im, size)


def encode(image: Image.Image, fmt: str = "webp", quality: int = 70) -> bytes:
    """Encode a thumbnail as WebP or JPEG bytes."""
    buf = io.BytesIO()
    if fmt == "webp":
        image.save(buf, format="WEBP", quality=quality, method=2)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        raise ValueError(f"unknown thumbnail format {fmt!r} (one of: {', '.join(FORMATS)})")
    return buf.getvalue()
