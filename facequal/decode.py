"""Decode an image file into an RGB Pillow image, with every failure turned into a value.

EXIF orientation is applied, every mode becomes RGB (transparent pixels over white), a pixel
limit guards against decompression bombs, and very large JPEGs are decoded at a reduced scale
(JPEG "draft" mode), which is cheap and still leaves far more pixels than any face crop needs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facequal import schema

DEFAULT_MAX_PIXELS = 100_000_000     # 100 MP: above this an image is refused (status too_large)
DEFAULT_MAX_SIDE = 4096              # JPEGs larger than this are decoded at a reduced scale


class DecodeError(Exception):
    """An input that cannot become an image; ``status`` is one of facequal.schema.STATUSES."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Decoded:
    """A decoded image: RGB pixels plus the size of the file's full-resolution image."""

    image: Image.Image          # RGB; may be smaller than (width, height) after draft decoding
    width: int                  # full-resolution width, after EXIF rotation
    height: int
    scale: float                # image pixels per full-resolution pixel (1.0 unless draft-decoded)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency is composited over white; 16/32-bit greys rescaled."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            arr = arr / 257.0
        elif im.mode == "I":
            hi = arr.max() if arr.size else 0
            arr = arr / 257.0 if hi > 255 else arr
        else:
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, im).convert("RGB")
    return im.convert("RGB")


def open_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_side: int | None = DEFAULT_MAX_SIDE) -> Decoded:
    """Decode ``path`` to RGB, or raise :class:`DecodeError` with a status and a message.

    ``max_pixels`` bounds the declared size (checked before any pixel is decoded). JPEGs whose
    longer side exceeds ``max_side`` are decoded at the largest power-of-two reduction that keeps
    that side at least ``max_side``; ``Decoded.scale`` says by how much.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; Pillow reads lazily
    except FileNotFoundError:
        raise DecodeError(schema.MISSING, "file not found") from None
    except PermissionError:
        raise DecodeError(schema.MISSING, "permission denied") from None
    except IsADirectoryError:
        raise DecodeError(schema.UNREADABLE, "is a directory") from None
    except OSError as e:
        raise DecodeError(schema.MISSING, f"cannot open: {e.strerror or e}") from None
    with fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                # Our own pixel limit replaces Pillow's global one (which would raise on open).
                old = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    im = Image.open(fh)
                finally:
                    Image.MAX_IMAGE_PIXELS = old
                w0, h0 = im.size
                if w0 <= 0 or h0 <= 0:
                    raise DecodeError(schema.UNREADABLE, f"empty image ({w0}x{h0})")
                if w0 * h0 > max_pixels:
                    raise DecodeError(schema.TOO_LARGE,
                                      f"{w0}x{h0} = {w0 * h0} pixels exceeds the limit of {max_pixels}")
                scale = 1.0
                if im.format == "JPEG" and max_side and max(w0, h0) > max_side:
                    req = (max(1, w0 * max_side // max(w0, h0)), max(1, h0 * max_side // max(w0, h0)))
                    im.draft("RGB", req)
                    scale = im.size[0] / w0
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _to_rgb(im)
        except DecodeError:
            raise
        except UnidentifiedImageError:
            raise DecodeError(schema.UNREADABLE, "not an image Pillow can identify") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise DecodeError(schema.UNREADABLE, f"{type(e).__name__}: {e}") from None
        except MemoryError:
            raise DecodeError(schema.TOO_LARGE, "out of memory while decoding") from None
    # EXIF rotation may swap the sides: report the full-resolution size as displayed.
    if rgb.size[0] != round(w0 * scale) and rgb.size[0] == round(h0 * scale):
        w0, h0 = h0, w0
    return Decoded(image=rgb, width=w0, height=h0, scale=scale)


def load_rgb(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Convenience: the full-resolution RGB image at ``path`` (raises DecodeError)."""
    return open_image(path, max_pixels=max_pixels, max_side=None).image
