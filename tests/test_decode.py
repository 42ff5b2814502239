"""Decoding: every mode becomes RGB, EXIF is applied, bad files become statuses, not crashes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facequal import schema
from facequal.pipeline.decode import DecodeError, open_image


def _save(path, im, **kw):
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", "1", "I", "F"])
def test_modes_become_rgb(tmp_path, mode):
    im = Image.new("RGB", (40, 30), (200, 50, 10)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    p = _save(tmp_path / f"x.{fmt.lower()}", im, format=fmt)
    d = open_image(p)
    assert d.image.mode == "RGB" and d.image.size == (40, 30)
    assert (d.width, d.height) == (40, 30)


def test_palette_transparency_composited_over_white(tmp_path):
    im = Image.new("P", (10, 10), 0)
    im.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    im.info["transparency"] = 0
    p = _save(tmp_path / "t.png", im, transparency=0)
    assert np.asarray(open_image(p).image)[0, 0].tolist() == [255, 255, 255]


def test_16bit_grey_is_rescaled(tmp_path):
    arr = np.full((8, 8), 65535, np.uint16)
    p = _save(tmp_path / "g16.png", Image.fromarray(arr))
    assert np.asarray(open_image(p).image).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))          # white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90 CW on display
    p = _save(tmp_path / "o.jpg", im, exif=exif.tobytes(), quality=95)
    d = open_image(p)
    assert d.image.size == (20, 60) and (d.width, d.height) == (20, 60)
    top = np.asarray(d.image)[:5].mean()
    assert top > 200                                   # the white strip is now at the top


def test_first_frame_of_animated_gif(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    arr = np.asarray(open_image(p).image)
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50


@pytest.mark.parametrize("content,status", [
    (b"", schema.UNREADABLE),
    (b"this is not an image at all", schema.UNREADABLE),
])
def test_garbage_is_unreadable(tmp_path, content, status):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(DecodeError) as e:
        open_image(p)
    assert e.value.status == status and e.value.message


def test_truncated_jpeg_is_unreadable(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(buf, "JPEG")
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(DecodeError) as e:
        open_image(p)
    assert e.value.status == schema.UNREADABLE


def test_missing_file(tmp_path):
    with pytest.raises(DecodeError) as e:
        open_image(tmp_path / "nope.jpg")
    assert e.value.status == schema.MISSING


def test_pixel_limit_refuses_before_decoding(tmp_path):
    p = _save(tmp_path / "big.png", Image.new("L", (3000, 3000)))
    with pytest.raises(DecodeError) as e:
        open_image(p, max_pixels=1_000_000)
    assert e.value.status == schema.TOO_LARGE and "9000000" in e.value.message


def test_large_jpeg_uses_draft_scale(tmp_path):
    p = _save(tmp_path / "large.jpg", Image.new("RGB", (4000, 2000), (10, 20, 30)), quality=80)
    d = open_image(p, max_side=1000)
    assert (d.width, d.height) == (4000, 2000)
    assert 1000 <= d.image.size[0] < 4000 and d.scale == d.image.size[0] / 4000
