"""A corpus of hostile inputs for robustness tests (and for a manual run).

Every kind of broken or odd file a scraped dataset holds: empty, truncated and corrupt files,
text named ``.jpg``, decompression bombs, unusual modes (CMYK, 16-bit, palette + transparency),
animations, all eight EXIF orientations, awkward file names, a FIFO, a link to ``/dev/zero``,
dangling links and a directory link loop. :func:`make_corpus` writes it and returns what each
file should become; ``python tests/hostile_corpus.py DIR`` writes it for a manual run::

    python tests/hostile_corpus.py /tmp/hostile && facequal score /tmp/hostile -o /tmp/h.parquet

The faces come from scikit-image's ``astronaut`` (NASA, public domain); without scikit-image a
flat grey picture stands in (then no face is found, which the statuses allow for when
``faces=False``).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OK = "ok"
NO_FACE = "no_face"
UNREADABLE = "unreadable"
TOO_LARGE = "too_large"
MISSING = "missing"
DECODED = (OK, NO_FACE)               # a valid image: a face or not, but no error

# Pillow's transposition for each EXIF orientation (what exif_transpose applies on reading).
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
EXIF_INVERSE = {k: {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
                    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}.get(t, t)
                for k, t in EXIF_TRANSPOSE.items()}


@dataclass
class Case:
    """One hostile input: its name under the corpus folder and what it must become."""

    name: str                    # relative path (str; may hold surrogate escapes for non-UTF-8 bytes)
    statuses: tuple[str, ...]    # acceptable row statuses
    what: str                    # what the file is
    face: bool = False           # a face must be found (status ok)
    walked: bool = True          # a folder walk lists it (False for e.g. a loop's second path)

    @property
    def needs_error(self) -> bool:
        """Whether the row must carry an error message (every status but ok / no_face)."""
        return not set(self.statuses) <= set(DECODED)


def portrait(faces: bool = True) -> Image.Image:
    """A 300 x 240 (w x h) portrait, not square so that rotations show; the astronaut's face."""
    if faces:
        try:
            from skimage import data

            return Image.fromarray(data.astronaut()).crop((60, 0, 360, 240))
        except ImportError:
            pass
    return Image.new("RGB", (300, 240), (128, 128, 128))


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=kw.pop("quality", 92), **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", c & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` grey pixels (a decompression bomb:
    its first rows are present, the declared size alone would need width * height bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * ((width + 1) * 16), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = bytearray(_jpeg_bytes(Image.new("RGB", (16, 16), (90, 90, 90))))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bad_crc_png(where: bytes = b"IHDR") -> bytes:
    """A valid PNG with the CRC of its first ``where`` chunk flipped."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    i = data.index(where)
    length = struct.unpack(">I", data[i - 4:i])[0]
    crc_at = i + 4 + length
    data[crc_at] ^= 0xFF
    return bytes(data)


def _exif_jpeg(im: Image.Image, orientation: int) -> bytes:
    """``im`` stored so that applying EXIF ``orientation`` on reading gives ``im`` back."""
    stored = im.transpose(EXIF_INVERSE[orientation]) if orientation in EXIF_INVERSE else im
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg_bytes(stored, quality=95, exif=exif.tobytes())


def _garbage_exif_jpeg(im: Image.Image) -> bytes:
    """A JPEG whose APP1 Exif segment holds random bytes after a valid-looking header."""
    body = b"Exif\0\0MM\0*" + np.random.default_rng(7).integers(0, 256, 200, np.uint8).tobytes()
    seg = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    data = _jpeg_bytes(im)
    return data[:2] + seg + data[2:]


def _animated(im: Image.Image, fmt: str) -> bytes:
    frames = [im, Image.new("RGB", im.size, (0, 0, 255)), Image.new("RGB", im.size, (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def make_corpus(root: str | os.PathLike[str], *, faces: bool = True, special: bool = True) -> list[Case]:
    """Write the hostile corpus under ``root`` (created) and return its cases, sorted by name.

    ``special`` adds the entries that are not plain files (FIFO, link to /dev/zero, dangling
    link, directory link loop) and the file name that is not valid UTF-8.
    The file without read permission is written readable: a test removes the permission (or,
    as root, simulates the failure) itself, see :data:`NO_READ`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    face = portrait(faces)
    f_ok = (OK,) if faces else DECODED
    cases: list[Case] = []

    def add(name: str, data: bytes, statuses: tuple[str, ...], what: str, *, has_face: bool = False) -> None:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        cases.append(Case(name, statuses, what, face=has_face and faces))

    jpg = _jpeg_bytes(face)
    add("zero-bytes.jpg", b"", (UNREADABLE,), "empty file")
    add("truncated.jpg", jpg[: len(jpg) // 3], (UNREADABLE,), "JPEG cut at a third")
    add("truncated-header.png", _save(face, "PNG")[:40], (UNREADABLE,), "PNG cut inside its header")
    add("bad-crc-ihdr.png", bad_crc_png(b"IHDR"), (UNREADABLE,), "PNG with a bad header CRC")
    add("bad-crc-idat.png", bad_crc_png(b"IDAT"), (UNREADABLE,), "PNG with a bad data CRC")
    add("text.jpg", b"this is a text file, not a JPEG\n" * 4, (UNREADABLE,), "text named .jpg")
    add("html.png", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", (UNREADABLE,),
        "an HTML error page named .png (what scrapers save)")
    add("postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", (UNREADABLE,),
        "EPS named .jpg (never handed to Ghostscript)")
    add("one-pixel.png", _save(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG"), (NO_FACE,), "1x1 image")
    add("thin-line.png", _save(Image.new("L", (5000, 1), 80), "PNG"), (NO_FACE,), "5000x1 image")
    add("tall-line.png", _save(Image.new("L", (1, 3000), 80), "PNG"), (NO_FACE,), "1x3000 image")
    add("bomb-20000.png", png_bomb(), (TOO_LARGE,), "PNG declaring 20000x20000 pixels")
    add("bomb-20000.jpg", jpeg_bomb(), (TOO_LARGE,), "JPEG declaring 20000x20000 pixels")
    add("bomb-65500.gif", _gif_bomb(), (TOO_LARGE,), "GIF declaring 65500x65500 pixels")
    add("cmyk.jpg", _jpeg_bytes(face.convert("CMYK")), f_ok, "CMYK JPEG", has_face=True)
    g16 = (np.asarray(face.convert("L"), np.uint16) * 257).astype(np.uint16)
    add("grey16.png", _save(Image.fromarray(g16), "PNG"), f_ok, "16-bit greyscale PNG", has_face=True)
    pal = face.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    add("palette-transparent.png", _save(pal, "PNG", transparency=0), f_ok,
        "palette PNG with a transparent index", has_face=True)
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 255).point(lambda v: v))
    add("rgba.png", _save(rgba, "PNG"), f_ok, "RGBA PNG", has_face=True)
    add("la.png", _save(face.convert("LA"), "PNG"), f_ok, "grey + alpha PNG", has_face=True)
    add("float-nan.tiff", _save(_nan_image(), "TIFF"), (NO_FACE,), "32-bit float TIFF with NaNs")
    add("lab.tiff", _save(face.convert("LAB"), "TIFF"), f_ok, "CIELAB TIFF", has_face=True)
    add("animated.gif", _animated(face, "GIF"), f_ok, "animated GIF (face in frame 1)", has_face=True)
    add("animated.webp", _animated(face, "WEBP"), f_ok, "animated WebP (face in frame 1)", has_face=True)
    for k in range(1, 9):
        add(f"exif/orientation-{k}.jpg", _exif_jpeg(face, k), f_ok, f"EXIF orientation {k}", has_face=True)
    add("exif/orientation-garbage.jpg", _garbage_exif_jpeg(face), f_ok,
        "JPEG with a random-bytes EXIF segment", has_face=True)
    add("names/with space.jpg", jpg, f_ok, "file name with spaces", has_face=True)
    add("names/ünïcödé 顔 😀.jpg", jpg, f_ok, "unicode file name", has_face=True)
    add("names/new\nline.jpg", jpg, f_ok, "file name with a newline", has_face=True)
    add("names/tab\tand 'quotes\" & <b>.jpg", jpg, f_ok, "tab, quotes, & and <b> in the name", has_face=True)
    add("names/UPPER.JPEG", jpg, f_ok, "upper-case extension", has_face=True)
    add("names/misnamed.png", jpg, f_ok, "a JPEG named .png", has_face=True)
    add(NO_READ, jpg, (MISSING,), "file without read permission")
    add(VANISHING, jpg, (MISSING,), "file deleted after the walk, before decoding")
    if special:
        if sys.platform != "win32":
            raw = os.fsdecode(b"names/latin1-\xe9t\xe9.jpg")       # not valid UTF-8
            try:
                add(raw, jpg, f_ok, "file name that is not valid UTF-8", has_face=True)
            except (OSError, UnicodeEncodeError):  # a file system that refuses such names
                pass
        _special(root, cases)
    cases.sort(key=lambda c: c.name)
    return cases


NO_READ = "perm/no-read.jpg"
VANISHING = "vanishing.jpg"


def _gif_bomb() -> bytes:
    data = bytearray(_save(Image.new("P", (8, 8), 0), "GIF"))
    data[6:10] = struct.pack("<HH", 65500, 65500)           # logical screen size
    i = data.index(b"\x2c")                                 # image descriptor
    data[i + 5:i + 9] = struct.pack("<HH", 65500, 65500)
    return bytes(data)


def _nan_image() -> Image.Image:
    arr = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    arr[::7, ::5] = np.nan
    arr[3, 3] = np.inf
    return Image.fromarray(arr, "F")


def _special(root: Path, cases: list[Case]) -> None:
    """Entries that are not plain files."""
    sp = root / "special"
    sp.mkdir(exist_ok=True)
    if hasattr(os, "mkfifo"):
        os.mkfifo(sp / "fifo.jpg")
        cases.append(Case("special/fifo.jpg", (UNREADABLE,), "a FIFO named .jpg (reading it would block)"))
    if os.path.exists("/dev/zero"):
        os.symlink("/dev/zero", sp / "dev-zero.jpg")
        cases.append(Case("special/dev-zero.jpg", (UNREADABLE,), "a link to /dev/zero (endless bytes)"))
    os.symlink(sp / "self-loop.jpg", sp / "self-loop.jpg")
    cases.append(Case("special/self-loop.jpg", (MISSING,), "a symbolic link to itself"))
    os.symlink(sp / "nowhere.jpg", sp / "dangling.jpg")
    cases.append(Case("special/dangling.jpg", (MISSING,), "a dangling symbolic link"))
    (sp / "folder.jpg").mkdir()
    (sp / "folder.jpg" / "inside.png").write_bytes(_save(Image.new("RGB", (8, 8)), "PNG"))
    cases.append(Case("special/folder.jpg/inside.png", (NO_FACE,), "an image in a folder named .jpg"))
    loop = sp / "loop"
    loop.mkdir()
    (loop / "x.png").write_bytes(_save(Image.new("RGB", (8, 8)), "PNG"))
    os.symlink(loop, loop / "again")               # loop/again -> loop: a directory link loop
    os.symlink(root, loop / "to-root")             # and one back to the corpus root
    cases.append(Case("special/loop/x.png", (NO_FACE,), "an image inside a directory link loop"))


def main(argv: list[str] | None = None) -> int:
    """``python tests/hostile_corpus.py DIR``: write the corpus into DIR and list it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python tests/hostile_corpus.py DIR", file=sys.stderr)
        return 2
    cases = make_corpus(args[0])
    os.chmod(Path(args[0]) / NO_READ, 0)
    for c in cases:
        print(f"{'/'.join(c.statuses):<22} {c.name!r}: {c.what}")
    print(f"{len(cases)} inputs in {args[0]} ({NO_READ} made unreadable; {VANISHING} is a plain file here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
