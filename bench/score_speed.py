"""End-to-end `facequal score` throughput on a folder of JPEGs, with 1 and 2 workers.

Also measures, in the same run, the floor that a pipeline cannot beat on one core: decoding
each JPEG and one detector pass on it, and prints the pipeline's speed as a ratio of it.

    python bench/score_speed.py ../shared/data/lfw --limit 3000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def list_images(folder: str, limit: int) -> list[str]:
    from facequal.sources import walk_folder

    out = []
    for p in walk_folder(folder):
        out.append(os.path.abspath(p))
        if len(out) >= limit:
            break
    return out


def floor_rate(paths: list[str]) -> float:
    """Images/s of decode + one detector forward pass, one process, one thread."""
    from facequal.decode import open_image
    from facequal.detect import preprocess
    from facequal.models.retinaface import retinaface_session

    sess = retinaface_session(threads=1)
    t = time.perf_counter()
    for p in paths:
        rgb = np.asarray(open_image(p).image)
        x, _, _ = preprocess(rgb)
        sess.run(None, {"input": x})
    return len(paths) / (time.perf_counter() - t)


def pipeline_rate(paths: list[str], jobs: int, model: str | None) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facequal import api

    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "m.parquet")
        pq.write_table(pa.table({"path": paths}), m)
        out = os.path.join(d, "out.parquet")
        t = time.perf_counter()
        api.score([m], out, model=model, jobs=jobs)
        return len(paths) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--model", default=None, help="quality model (default: the bundled one)")
    a = ap.parse_args()
    paths = list_images(a.folder, a.limit)
    print(f"{len(paths)} images from {a.folder}; {os.cpu_count()} cores")
    pipeline_rate(paths[:50], 1, a.model)  # warm caches (detector file, page cache)
    fl = floor_rate(paths)
    print(f"floor (decode + 1 detector pass, 1 process): {fl:7.1f} images/s")
    for jobs in (1, 2):
        r = pipeline_rate(paths, jobs, a.model)
        print(f"facequal score --jobs {jobs}:                  {r:7.1f} images/s "
              f"({r / (fl * jobs):.2f} of the floor x {jobs})")


if __name__ == "__main__":
    main()
