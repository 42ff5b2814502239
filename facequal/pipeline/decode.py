"""Decode an image file into an RGB Pillow image, with every failure turned into a value.

EXIF orientation is applied, every mode becomes RGB (transparent pixels over white), a pixel
limit guards against decompression bombs, and very large JPEGs are decoded at a reduced scale
(JPEG "draft" mode), which is cheap and still leaves far more pixels than any face crop needs.

Hostile files are expected: only regular files are opened (a FIFO or ``/dev/zero`` named
``.jpg`` would block or never end), only the formats of :data:`DECODE_FORMATS` are decoded (no
Ghostscript for an EPS file in disguise), PNG checksums are verified, and whatever a decoder
raises for a malformed file becomes a :class:`DecodeError` with a status and a one-line message.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facequal import schema
from facequal.options import MAX_PIXELS, MAX_SIDE


class DecodeError(Exception):
    """An input that cannot become an image; ``status`` is one of facequal.schema.STATUSES."""

    def __init__(self, status: str, message: str) -> None:
        message = clean_message(message)
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


def to_rgb(im: Image.Image) -> Image.Image:
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
        else:  # float: stretched to 0..255; NaN and infinities (which carry no level) become 0
            arr = np.where(np.isfinite(arr), arr, np.nan)
            finite = arr[np.isfinite(arr)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            arr = np.nan_to_num(arr, nan=0.0)
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, im).convert("RGB")
    return im.convert("RGB")


# Formats facequal decodes. Pillow identifies many more (EPS, for one, runs Ghostscript on the
# file); an input of any other format is "unreadable" rather than handed to such a decoder.
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "PPM", "TGA", "JPEG2000", "AVIF")
# Pillow's plugin modules for those formats (BMP and DIB share one).
_PLUGINS = ("JpegImagePlugin", "PngImagePlugin", "WebPImagePlugin", "GifImagePlugin", "BmpImagePlugin",
            "TiffImagePlugin", "PpmImagePlugin", "TgaImagePlugin", "Jpeg2KImagePlugin", "AvifImagePlugin")
_IN_MEMORY_MAX = 16 << 20           # files up to this size are read in one go
MAX_MESSAGE = 300                    # error messages are cut to this many characters
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


@functools.cache
def _formats() -> tuple[str, ...]:
    # Only the plugins of the formats decoded are imported (Image.init() would import all ~45 of
    # Pillow's, a cost a one-image run pays at start-up); once per process, not once per image.
    import importlib

    for module in _PLUGINS:
        try:
            importlib.import_module(f"PIL.{module}")
        except ImportError:  # a format this Pillow build lacks (AVIF before Pillow 11.3)
            pass
    return tuple(f for f in DECODE_FORMATS if f in Image.OPEN)


def clean_message(message: str) -> str:
    """An error message that Parquet can store (valid UTF-8: undecodable bytes of file names are
    shown as backslash escapes) and that stays one short line."""
    text = str(message).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _open_regular(path: str | Path) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file; a FIFO, a device or a socket would
    block or never end, so they are refused without reading a byte. A file of at most
    ``_IN_MEMORY_MAX`` bytes comes back read in one go, as an in-memory stream: the PNG checksum
    pass and the decoder then work in memory."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_BINARY)
    except FileNotFoundError:
        raise DecodeError(schema.MISSING, "file not found") from None
    except PermissionError:
        raise DecodeError(schema.MISSING, "permission denied") from None
    except IsADirectoryError:
        raise DecodeError(schema.UNREADABLE, "is a directory") from None
    except OSError as e:
        raise DecodeError(schema.MISSING, f"cannot open: {e.strerror or e}") from None
    except ValueError as e:  # e.g. an embedded NUL byte: no such file can exist
        raise DecodeError(schema.MISSING, f"invalid path: {e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError(schema.UNREADABLE, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError(schema.UNREADABLE, "not a regular file (a FIFO, device or socket)")
        if st.st_size == 0:
            raise DecodeError(schema.UNREADABLE, "empty file (0 bytes)")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if st.st_size > _IN_MEMORY_MAX:
        return fh
    with fh:
        try:
            return io.BytesIO(fh.read())
        except OSError as e:
            raise DecodeError(schema.UNREADABLE, clean_message(f"read error: {e}")) from None


def _check_png_crcs(fh: IO[bytes]) -> None:
    """Verify the CRC of every critical PNG chunk (IHDR, PLTE, IDAT, IEND), as libpng does;
    Pillow skips the check for image data, so a corrupt file would otherwise decode silently.
    Ancillary chunks with a bad CRC are ignored, again as libpng does."""
    fh.seek(8)
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return  # truncation is Pillow's to report
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:
            raise DecodeError(schema.UNREADABLE, f"broken PNG file: chunk length {length}")
        critical = kind[:1].isupper()
        if not critical:
            fh.seek(length + 4, os.SEEK_CUR)
            continue
        crc = zlib.crc32(kind)
        left = length
        while left:
            block = fh.read(min(left, 1 << 20))
            if not block:
                return
            crc = zlib.crc32(block, crc)
            left -= len(block)
        tail = fh.read(4)
        if len(tail) < 4:
            return
        if struct.unpack(">I", tail)[0] != crc & 0xFFFFFFFF:
            name = kind.decode("latin-1")
            raise DecodeError(schema.UNREADABLE, f"broken PNG file: bad CRC in its {name} chunk")
        if kind == b"IEND":
            return


def open_image(path: str | Path, *, max_pixels: int = MAX_PIXELS,
               max_side: int | None = MAX_SIDE, draft_side: int | None = None,
               min_side: int | None = None) -> Decoded:
    """Decode ``path`` to RGB, or raise :class:`DecodeError` with a status and a message.

    ``max_pixels`` bounds the declared size (checked before any pixel is decoded). JPEGs whose
    longer side exceeds ``max_side`` are decoded at the largest power-of-two reduction that keeps
    that side at least ``max_side``; ``Decoded.scale`` says by how much. ``draft_side`` asks for
    more: a JPEG at least twice that long is decoded at the largest reduction keeping its longer
    side at least ``draft_side`` (a 12-megapixel photo at 1/4 for a 640-pixel detector: a
    quarter of the decoding time). The caller decodes again at full size when it needs to.
    ``min_side`` asks for the smallest decode a fingerprint needs: a JPEG is decoded at the largest
    reduction that keeps both sides at least ``min_side``.

    Only regular files are read (a FIFO or a device is ``unreadable``), only the formats of
    :data:`DECODE_FORMATS` are decoded, PNG chunk checksums are verified, and whatever a decoder
    raises for a malformed file becomes a ``DecodeError``: this function raises nothing else.
    """
    fh = _open_regular(path)
    with fh:
        try:
            with warnings.catch_warnings():
                # Pillow warns about corrupt EXIF, truncated metadata, large images...: the row's
                # status says what matters, and a million-image run must not flood the terminal.
                warnings.simplefilter("ignore")
                # Our own pixel limit replaces Pillow's global one (which would raise on open).
                old = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    im = Image.open(fh, formats=_formats())
                finally:
                    Image.MAX_IMAGE_PIXELS = old
                w0, h0 = im.size
                if w0 <= 0 or h0 <= 0:
                    raise DecodeError(schema.UNREADABLE, f"empty image ({w0}x{h0})")
                if w0 * h0 > max_pixels:
                    raise DecodeError(schema.TOO_LARGE,
                                      f"{w0}x{h0} = {w0 * h0} pixels exceeds the limit of {max_pixels}")
                if im.format == "PNG":
                    pos = fh.tell()
                    _check_png_crcs(fh)
                    fh.seek(pos)
                scale = 1.0
                side = None
                if im.format in ("JPEG", "MPO") and min_side and min(w0, h0) >= 2 * min_side:
                    im.draft("RGB", (min_side, min_side))  # both sides stay >= min_side
                    scale = im.size[0] / w0
                elif im.format in ("JPEG", "MPO"):
                    if draft_side and max(w0, h0) >= 2 * draft_side:
                        side = min(draft_side, max_side) if max_side else draft_side
                    elif max_side and max(w0, h0) > max_side:
                        side = max_side
                if side:
                    # Pillow picks the largest DCT reduction (1/2, 1/4, 1/8) giving at least req.
                    req = (max(1, w0 * side // max(w0, h0)), max(1, h0 * side // max(w0, h0)))
                    im.draft("RGB", req)
                    scale = im.size[0] / w0
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                im.load()
                # In place: without a rotation the copying form would copy every image.
                ImageOps.exif_transpose(im, in_place=True)
                rgb = to_rgb(im)
        except DecodeError:
            raise
        except UnidentifiedImageError:
            raise DecodeError(schema.UNREADABLE, "not an image, or not in a supported format") from None
        except Image.DecompressionBombError as e:
            raise DecodeError(schema.TOO_LARGE, clean_message(str(e))) from None
        except MemoryError:
            raise DecodeError(schema.TOO_LARGE, "out of memory while decoding") from None
        except Exception as e:  # decoders raise many types for malformed files (IndexError, ...)
            raise DecodeError(schema.UNREADABLE, clean_message(f"{type(e).__name__}: {e}")) from None
    # EXIF rotation may swap the sides: report the full-resolution size as displayed.
    if rgb.size[0] != round(w0 * scale) and rgb.size[0] == round(h0 * scale):
        w0, h0 = h0, w0
    return Decoded(image=rgb, width=w0, height=h0, scale=scale)


def load_rgb(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Convenience: the full-resolution RGB image at ``path`` (raises DecodeError)."""
    return open_image(path, max_pixels=max_pixels, max_side=None).image
