"""Small face thumbnails for reports: from a saved crop, or aligned from the original image.

The display framing is the ArcFace five-point template shrunk into the thumbnail with a margin,
so a thumbnail shows a little more than the model's crop (hair line, chin).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
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
EXTENSIONS = {"webp": ".webp", "jpeg": ".jpg"}
# One face to draw: (its index, image path, crop path, landmarks, file to write or None to embed).
Item = tuple[int, str, "str | None", "list | None", "str | None"]


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


def _thumbnail_of(path: str, crop: str | None, lms: list | None, size: int, cache: list) -> Image.Image:
    """The thumbnail of one face: from its crop file when readable, else aligned from the image
    (``cache`` holds the last decoded image: items come sorted by path). Raises on failure."""
    from facequal.pipeline.decode import Decoded, DecodeError, open_image

    if crop is not None and os.path.isfile(crop):
        try:
            return load_crop_thumbnail(crop, size)
        except (OSError, ValueError):
            if lms is None:
                raise
    if lms is None:
        raise ValueError("no crop and no landmarks")
    if not cache or cache[0] != path:
        try:
            cache[:] = [path, open_image(path)]  # large JPEGs are decoded at a reduced scale
        except DecodeError as e:
            cache[:] = [path, e]
    img = cache[1]
    if isinstance(img, DecodeError):
        raise ValueError(f"{img.status}: {img.message}")
    assert isinstance(img, Decoded)
    pts = (np.asarray(lms, dtype=np.float64) + 0.5) * img.scale - 0.5
    return face_thumbnail(img.image, pts, size)


def thumb_job(items: Sequence[Item], size: int, fmt: str, quality: int) -> list[tuple[int, str | None, str | None]]:
    """Thumbnails for ``items``: (index, base64 text or '' when written to its file, error or None).
    Errors are values: one bad face never stops a report."""
    out: list[tuple[int, str | None, str | None]] = []
    cache: list = []
    for i, path, crop, lms, dest in items:
        try:
            data = encode(_thumbnail_of(path, crop, lms, size, cache), fmt, quality)
            if dest is None:
                out.append((i, base64.b64encode(data).decode("ascii"), None))
            else:
                with open(dest, "xb") as fh:  # inside the report's private build folder
                    fh.write(data)
                out.append((i, "", None))
        except Exception as e:  # noqa: BLE001 -- any failure is this face's, never the report's
            out.append((i, None, str(e) or type(e).__name__))
    return out


def make_thumbnails(items: list[Item], *, size: int, fmt: str, quality: int,
                    jobs: int = 1) -> dict[int, tuple[str | None, str | None]]:
    """Thumbnails for many faces, decoding each image once, in ``jobs`` processes (0: all cores):
    index -> (base64 text, '' when written to its file, or None; the error or None)."""
    items = sorted(items, key=lambda it: (it[1], it[0]))
    if jobs == 1 or len(items) < 256:
        res = thumb_job(items, size, fmt, quality)
    else:
        from joblib import Parallel, delayed

        n_jobs = jobs if jobs > 0 else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        n_chunks = max(1, min(len(items) // 32, n_jobs * 8))
        bounds = np.linspace(0, len(items), n_chunks + 1).astype(int)
        parts = Parallel(n_jobs=n_jobs)(
            delayed(thumb_job)(items[a:b], size, fmt, quality)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )
        res = [r for part in parts for r in part]
    return {i: (t, e) for i, t, e in res}
