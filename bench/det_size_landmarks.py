"""What detecting at a reduced size costs in landmark precision (and what it saves in time).

Detects the faces of every ``--every``-th photo of a folder at full size (the image as it is,
padded to a multiple of 32) and at smaller ``--sizes`` (longer side), takes the face each run
picks with ``--faces``, and prints, per size, the largest landmark displacement from the
full-size landmarks in units of the inter-eye distance (median and 95th percentile), faces
lost, and the detector's time per image. Alignment, and so the quality score and the embedding,
follow these landmarks.

    python bench/det_size_landmarks.py ../shared/data/lfw --sizes 192,160,128
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--sizes", default="192,160,128", help="reduced detection sizes (longer side)")
    ap.add_argument("--every", type=int, default=40, help="use every n-th photo of the walk")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--faces", default="center", choices=("center", "largest"))
    a = ap.parse_args()

    from facequal.models.retinaface import retinaface_session
    from facequal.pipeline.decode import open_image
    from facequal.pipeline.detect import RetinaFace, pick_centred, pick_largest
    from facequal.pipeline.sources import walk_folder

    pick = pick_centred if a.faces == "center" else pick_largest
    paths = list(walk_folder(a.folder))[:: a.every][: a.limit]
    sizes = [int(s) for s in a.sizes.split(",")]
    session = retinaface_session(threads=1)
    detectors = {0: RetinaFace(session, det_size=0), **{s: RetinaFace(session, det_size=s) for s in sizes}}
    shift: dict[int, list[float]] = {s: [] for s in sizes}
    lost = dict.fromkeys(sizes, 0)
    seconds = dict.fromkeys(detectors, 0.0)
    used = 0
    for p in paths:
        image = open_image(p).image
        found = {}
        for s, det in detectors.items():
            t = time.perf_counter()
            faces = det.detect(image)
            seconds[s] += time.perf_counter() - t
            chosen = pick(faces, *image.size)
            found[s] = chosen[0] if chosen else None
        ref = found[0]
        if ref is None:
            continue
        used += 1
        iod = float(np.linalg.norm(ref.landmarks[0] - ref.landmarks[1]))
        for s in sizes:
            if found[s] is None:
                lost[s] += 1
            else:
                shift[s].append(float(np.abs(found[s].landmarks - ref.landmarks).max()) / iod)
    print(f"{used} photos with a face at full size (every {a.every}th of {a.folder}); "
          f"largest landmark shift from the full-size landmarks, in inter-eye distances")
    print(f"  full size: {1e3 * seconds[0] / len(paths):.2f} ms/image")
    for s in sizes:
        v = np.asarray(shift[s])
        print(f"  {s:4d} px: median {np.median(v):.3f}, p95 {np.percentile(v, 95):.3f}, max {v.max():.3f}, "
              f"lost {lost[s]}; {1e3 * seconds[s] / len(paths):.2f} ms/image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
