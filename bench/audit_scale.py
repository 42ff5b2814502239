"""Scale check of `facequal audit`'s computation: outliers, duplicates and identity pairs for
100,000 synthetic faces.

Usage::

    python bench/audit_scale.py [--faces 100000] [--dim 512] [--seed 0]

Faces: random 512-d unit embeddings around one random direction per identity (identity sizes
from a Zipf-like law, 1 to 400 faces), qualities uniform in [0, 1], and per image a synthetic
fingerprint (random 64-bit hash and 16 x 16 thumbnail; 2 % of the images are copies with a few
hash bits and pixels changed). Image decoding is not part of this (it is per image, linear, and
measured separately: ``fingerprint`` of one 250 x 250 LFW JPEG). Prints wall time per stage and
the peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facequal.curate.audit import (  # noqa: E402
    DUP_EMBEDDING_COS,
    DUP_NEIGHBOURS,
    _embedding_neighbours,
    _unit,
    identity_pairs,
    outlier_scores,
)
from facequal.curate.dedup import find_duplicates  # noqa: E402
from facequal.curate.phash import THUMB  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    sizes = []
    while sum(sizes) < a.faces:
        sizes.append(int(min(400, max(1, rng.zipf(1.6)))))
    sizes[-1] -= sum(sizes) - a.faces
    codes = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((len(sizes), a.dim)).astype(np.float32)
    emb = _unit(centres[codes] + rng.standard_normal((a.faces, a.dim)).astype(np.float32) * 0.04)
    q = rng.random(a.faces)
    phash = rng.integers(0, 2**63, a.faces, dtype=np.int64).astype(np.uint64)
    thumbs = _unit(rng.standard_normal((a.faces, THUMB * THUMB)).astype(np.float32))
    n_copy = a.faces // 50
    src, dst = rng.choice(a.faces, n_copy, replace=False), rng.choice(a.faces, n_copy, replace=False)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    phash[dst] = phash[src] ^ np.uint64(0b1011)  # 3 bits changed
    thumbs[dst] = _unit(thumbs[src] + 0.005 * rng.standard_normal((len(src), THUMB * THUMB)).astype(np.float32))
    exact = [f"{i:x}" for i in range(a.faces)]
    print(f"{a.faces:,} faces in {len(sizes):,} identities (largest {max(sizes)}), {a.dim}-d; "
          f"{len(src):,} near-copy images")
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    sc = outlier_scores(emb, q, codes)
    t1 = time.perf_counter()
    nb = _embedding_neighbours(emb, codes, DUP_NEIGHBOURS, DUP_EMBEDDING_COS)
    t2 = time.perf_counter()
    d = find_duplicates(exact, phash, thumbs, extra_pairs=nb)
    t3 = time.perf_counter()
    ip = identity_pairs(sc.centres, sc.spread, np.bincount(codes))
    t4 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = int(np.sum(d.group[dst] >= 0))
    print(f"outliers {t1 - t0:.1f} s, embedding neighbours {t2 - t1:.1f} s ({len(nb):,} pairs), duplicates "
          f"{t3 - t2:.1f} s ({found:,}/{len(dst):,} copies linked), identity pairs {t4 - t3:.1f} s ({len(ip.a)} pairs)")
    print(f"total {time.perf_counter() - t_all:.1f} s, peak RSS {rss:,.0f} MiB")
    total = time.perf_counter() - t_all
    lfw = Path(__file__).resolve().parents[2] / "shared/data/lfw"
    photos = sorted(lfw.glob("A*/*.jpg"))[:300]
    if photos:
        from facequal.curate.phash import fingerprint

        fingerprint(str(photos[0]))
        t0 = time.perf_counter()
        for p in photos:
            fingerprint(str(p))
        per = (time.perf_counter() - t0) / len(photos)
        jobs = os.cpu_count() or 1
        print(f"fingerprint of a 250 x 250 LFW JPEG: {per * 1000:.2f} ms (mean over {len(photos)} photos; reduced "
              f"JPEG decode); {a.faces:,} images over {jobs} workers: ~{a.faces * per / jobs:.0f} s")
        print(f"projected end to end for {a.faces:,} faces of 250 x 250 photos: ~{total + a.faces * per / jobs:.0f} s "
              f"(the computation above, measured, plus the fingerprints, projected from the per-photo time)")


if __name__ == "__main__":
    main()
