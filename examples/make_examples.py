"""Regenerate the example images in this folder from public-domain sources.

Source: scikit-image's bundled `astronaut` image (``skimage.data.astronaut()``), the NASA
portrait of astronaut Eileen Collins (public domain, NASA; shipped in the scikit-image wheel
on PyPI as skimage/data/astronaut.png). Everything else here is derived from it by this
script: degraded variants (blur, downscale, noise, darkness, occlusion, rotation) that a
quality model should score lower than the clean photo, plus a photo with no face at all
(scikit-image's `coffee`, CC0 by Rachel Michetti, also bundled in the wheel).

Run: ``pip install scikit-image && python examples/make_examples.py``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent


def main() -> None:
    from skimage import data

    rng = np.random.default_rng(2026)
    clean = Image.fromarray(data.astronaut())              # 512x512 RGB
    # A portrait framing around the face, like a typical dataset photo.
    face = clean.crop((120, 20, 370, 270))                 # 250x250, face roughly centred
    out = HERE / "faces"
    out.mkdir(exist_ok=True)

    def save(name: str, im: Image.Image) -> None:
        im.convert("RGB").save(out / f"{name}.jpg", quality=90)

    save("astronaut", face)
    save("astronaut_full", clean)
    save("blur", face.filter(ImageFilter.GaussianBlur(4)))
    save("downscaled", face.resize((28, 28), Image.Resampling.BILINEAR).resize((250, 250), Image.Resampling.BILINEAR))
    noisy = np.asarray(face).astype(np.float32) + rng.normal(0, 45, (250, 250, 3))
    save("noise", Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    dark = np.asarray(face).astype(np.float32) * 0.12
    save("dark", Image.fromarray(dark.astype(np.uint8)))
    occ = face.copy()
    ImageDraw.Draw(occ).rectangle((70, 95, 185, 135), fill=(20, 20, 20))   # a band over the eyes
    save("occluded", occ)
    save("rotated", clean.rotate(35, resample=Image.Resampling.BILINEAR, center=(245, 150)).crop((120, 20, 370, 270)))
    save("mirrored", face.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    save("no_face_coffee", Image.fromarray(data.coffee()).resize((300, 200)))


if __name__ == "__main__":
    main()
