"""End-to-end `facequal score` throughput on a folder of JPEGs, with 1 and 2 workers.

Also measures, in the same run and with the same number of worker processes, the floor that
the pipeline cannot beat: decoding each JPEG and one detector pass on it (nothing else), and
prints the pipeline's speed as a ratio of it. Floors and pipeline runs are interleaved over
``--rounds`` rounds, and the best round of each is reported. Wall-clock rates depend on what
else the machine runs; the CPU time of the whole process tree per image (read from /proc) does
much less, so both are printed: on a busy machine trust the CPU ratio.

    python bench/score_speed.py ../shared/data/lfw --limit 2000
    python bench/score_speed.py ../shared/data/lfw --limit 1000 --stand-in   # before a bundled model exists
    python bench/score_speed.py ../shared/data/lfw --cold-start 10           # one image, fresh processes
    python bench/score_speed.py ../shared/data/lfw --large 40 --rounds 3     # 12-megapixel JPEGs

``--stand-in`` runs the reference dm100 ONNX (the same network, hence the same cost, as the
bundled dm100) under the bundled model's alignment contract (five points straight to 96x96).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

_DETECTOR = None
REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference",
                         "lightqnet-dm100.onnx")


def stand_in(workdir: str) -> tuple[str, str]:
    """(model, contract file): the reference dm100 under the bundled model's alignment contract."""
    from facequal.contract import ARCFACE_112, Contract, scaled_template

    c = Contract(name="reference-dm100-stand-in", task="quality", input_name="input:0",
                 output_name="confidence_st:0", layout="NHWC", color="RGB", mean=(128.0, 128.0, 128.0),
                 std=(128.0, 128.0, 128.0), landmarks="five", template=scaled_template(ARCFACE_112, 96 / 112),
                 warp_size=(96, 96), crop_size=(96, 96), resize="none", output="sigmoid")
    path = os.path.join(workdir, "stand-in-contract.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(c.to_json())
    return os.path.abspath(REFERENCE), path


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and all its descendants (Linux /proc)."""
    from proctab import proc_stats

    tick = os.sysconf("SC_CLK_TCK")
    stats = {pid: (int(f[1]), (int(f[11]) + int(f[12])) / tick) for pid, f in proc_stats().items()}
    me = os.getpid()
    total = 0.0
    for pid, (_, cpu) in stats.items():
        p, hops = pid, 0
        while p and p != me and hops < 64:
            p, hops = stats.get(p, (0, 0.0))[0], hops + 1
        if p == me:
            total += cpu
    return total


class Measure:
    """Wall time and process-tree CPU time of a block."""

    def __enter__(self) -> Measure:
        self.t, self.c = time.perf_counter(), tree_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t
        self.cpu = tree_cpu_seconds() - self.c


def list_images(folder: str, limit: int) -> list[str]:
    """The first ``limit`` images of ``folder`` in facequal's walk order, as absolute paths."""
    from facequal.pipeline.sources import walk_folder

    out = []
    for p in walk_folder(folder):
        out.append(os.path.abspath(p))
        if len(out) >= limit:
            break
    return out


def _floor_chunk(paths: list[str], det_size: int) -> int:
    """Decode + one detector forward pass per image (what any pipeline must at least do)."""
    from facequal.pipeline.decode import open_image
    from facequal.pipeline.detect import downscale_for_detection, preprocess

    global _DETECTOR
    if _DETECTOR is None:
        import functools

        from facequal.models.retinaface import retinaface_session
        from facequal.pipeline.detect import RetinaFace

        # The pipeline's detector sessions (fixed-size ones for recurring sizes): a fair floor.
        _DETECTOR = RetinaFace(retinaface_session(threads=1),
                               fixed_session=functools.partial(retinaface_session, 1))
    for p in paths:
        im = downscale_for_detection(open_image(p).image, det_size)
        x, hp, wp = preprocess(np.asarray(im))
        _DETECTOR.session_for(hp, wp).run(None, {"input": x})
    return len(paths)


def floor_rate(paths: list[str], jobs: int, det_size: int, chunk: int = 64) -> Measure:
    """Decode + one detector pass per image, in ``jobs`` processes of one onnxruntime thread."""
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with Measure() as m:
        if jobs <= 1:
            for c in chunks:
                _floor_chunk(c, det_size)
        else:
            from joblib import Parallel, delayed

            Parallel(n_jobs=jobs, prefer="processes")(delayed(_floor_chunk)(c, det_size) for c in chunks)
    return m


def pipeline_rate(manifest: str, jobs: int, options: dict, workdir: str) -> Measure:
    """A complete `facequal score` run (manifest -> Parquet file)."""
    from facequal import api

    out = os.path.join(workdir, f"out-{jobs}.parquet")
    with Measure() as m:
        job = api.Job([manifest], jobs=jobs, **options)
        try:
            job.run(out, overwrite=True, collect=False)
        except TypeError:  # an older facequal (to measure a version before this one)
            job.run(out, overwrite=True)
    return m


def cold_start(image: str, n: int) -> None:
    """Wall time of ``n`` fresh processes scoring one image into a new file, interleaved with
    ``facequal --version`` (Python start-up plus the CLI's imports: the floor of any command)."""
    import shutil
    import statistics
    import subprocess

    # the console script of the Python running this bench (its venv), else the one on PATH
    exe = os.path.join(os.path.dirname(sys.executable), "facequal")
    exe = exe if os.path.exists(exe) else (shutil.which("facequal") or "facequal")
    times: dict[str, list[float]] = {"score": [], "version": []}
    with tempfile.TemporaryDirectory() as d:
        for i in range(n + 1):  # the first of each fills the page cache and is not counted
            for what, cmd in (("version", [exe, "--version"]),
                              ("score", [exe, "score", image, "-o", os.path.join(d, f"{i}.parquet"), "-q"])):
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                if i:
                    times[what].append(time.perf_counter() - t0)
    sc, ve = times["score"], times["version"]
    print(f"cold start, one image ({image}), {n} runs: `facequal score` best {min(sc):.2f} s, median "
          f"{statistics.median(sc):.2f} s; `facequal --version` best {min(ve):.2f} s, median "
          f"{statistics.median(ve):.2f} s; scoring itself adds {min(sc) - min(ve):.2f} s (best)")


def make_large(paths: list[str], folder: str, size: tuple[int, int] = (4000, 3000)) -> list[str]:
    """12-megapixel JPEGs made from small photos: the photo enlarged 9x (bicubic) in the middle
    of a canvas filled with the same photo stretched and blurred (so the JPEG has texture
    everywhere, like a real photo), saved at quality 90."""
    from PIL import Image, ImageFilter

    out = []
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im = im.convert("RGB")
        canvas = im.resize((size[0] // 8, size[1] // 8)).filter(ImageFilter.GaussianBlur(3)).resize(size)
        face = im.resize((im.width * 9, im.height * 9), Image.Resampling.BICUBIC)
        canvas.paste(face, ((size[0] - face.width) // 2, (size[1] - face.height) // 2))
        path = os.path.join(folder, f"large-{i:04d}.jpg")
        canvas.save(path, quality=90)
        out.append(path)
    return out


def large_photos(small: list[str], rounds: int) -> None:
    """Time per image of `facequal score` (1 worker) on 12-megapixel JPEGs against their full-size
    decode, and the same on the small photos they were made from: the growth from small to large
    should be the decode's growth (detection runs on a reduced decode; crops come from it)."""
    import facequal
    import facequal.pipeline.faces as faces_mod
    from facequal.pipeline.decode import open_image

    real = faces_mod.open_image

    def no_draft(path, **kw):  # the pipeline before the reduced decode: always full size
        kw.pop("draft_side", None)
        return real(path, **kw)

    with tempfile.TemporaryDirectory() as d:
        large = make_large(small, d)
        print(f"large photos: {len(large)} 4000x3000 JPEGs (q90) made from {len(small)} photos of the folder, "
              "each enlarged 9x on a blurred canvas of itself; 1 worker, best of "
              f"{rounds} interleaved rounds, ms per image")
        best: dict[str, float] = {}

        def timed(name: str, fn) -> None:
            t = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t) / len(large) * 1e3)

        facequal.score(large[:2], jobs=1)  # sessions loaded
        for _ in range(rounds):
            timed("decode small", lambda: [open_image(p) for p in small])
            timed("decode large", lambda: [open_image(p) for p in large])
            timed("decode large 1/4", lambda: [open_image(p, draft_side=640) for p in large])
            timed("score small", lambda: facequal.score(small, jobs=1))
            timed("score large", lambda: facequal.score(large, jobs=1))
            faces_mod.open_image = no_draft
            try:
                timed("score large, full-size decode only", lambda: facequal.score(large, jobs=1))
            finally:
                faces_mod.open_image = real
    for k, v in best.items():
        print(f"  {k:36s} {v:7.1f} ms")
    grow_score = best["score large"] - best["score small"]
    grow_decode = best["decode large"] - best["decode small"]
    print(f"  small -> large: score grows by {grow_score:.1f} ms per image, a full-size decode by {grow_decode:.1f} ms "
          f"(ratio {grow_score / grow_decode:.2f}; <= 1: the growth is no more than decoding's)")
    print(f"  large: score / full-size decode {best['score large'] / best['decode large']:.2f}; before the reduced "
          f"decode {best['score large, full-size decode only'] / best['decode large']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", default="1,2", help="worker counts to measure, comma-separated")
    ap.add_argument("--model", default=None, help="quality model (default: the bundled one)")
    ap.add_argument("--contract", default=None, help="contract JSON for a model that carries none")
    ap.add_argument("--stand-in", action="store_true",
                    help="the reference dm100 ONNX under the bundled model's contract (see above)")
    ap.add_argument("--det-size", type=int, default=640)
    ap.add_argument("--cold-start", type=int, default=0, metavar="N",
                    help="only the cold start: N fresh `facequal score ONE.jpg` processes (and `facequal "
                         "--version` as the floor of any command), best and median wall time")
    ap.add_argument("--large", type=int, default=0, metavar="N",
                    help="only the large-photo figures: N 12-megapixel JPEGs made from the folder's photos")
    a = ap.parse_args()
    if a.large:
        large_photos(list_images(a.folder, a.large), a.rounds)
        return
    if a.cold_start:
        cold_start(list_images(a.folder, 1)[0], a.cold_start)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = list_images(a.folder, a.limit)
    jobs_list = [int(j) for j in a.jobs.split(",")]
    with tempfile.TemporaryDirectory() as d:
        if a.stand_in:
            a.model, a.contract = stand_in(d)
        options = {"model": a.model, "contract": a.contract, "det_size": a.det_size}
        print(f"{len(paths)} images from {a.folder}; {os.cpu_count()} cores; model {a.model or 'bundled'}"
              f"{' (stand-in)' if a.stand_in else ''}; det-size {a.det_size}; best of {a.rounds} interleaved rounds")
        manifest = os.path.join(d, "m.parquet")
        pq.write_table(pa.table({"path": paths}), manifest)
        warm = os.path.join(d, "warm.parquet")
        pq.write_table(pa.table({"path": paths[:256]}), warm)
        for j in jobs_list:  # start the workers, load the models, fill the page cache
            pipeline_rate(warm, j, options, d)
            floor_rate(paths[:256], j, a.det_size)
        n = len(paths)
        best: dict[tuple[str, int], float] = {}
        cpu: dict[tuple[str, int], float] = {}
        ratios: dict[int, list[float]] = {j: [] for j in jobs_list}   # each round's wall ratio
        for r in range(a.rounds):
            for j in jobs_list:
                fl = floor_rate(paths, j, a.det_size)
                pr = pipeline_rate(manifest, j, options, d)
                for key, m in ((("floor", j), fl), (("pipe", j), pr)):
                    best[key] = max(best.get(key, 0.0), n / m.wall)
                    cpu[key] = min(cpu.get(key, float("inf")), m.cpu / n)
                ratios[j].append(fl.wall / pr.wall)
                print(f"  round {r + 1}, {j} worker(s): floor {n / fl.wall:7.1f} images/s "
                      f"({fl.cpu / n * 1e3:.2f} CPU ms/image), facequal score {n / pr.wall:7.1f} images/s "
                      f"({pr.cpu / n * 1e3:.2f} CPU ms/image); wall ratio {fl.wall / pr.wall:.2f}, "
                      f"CPU ratio {fl.cpu / pr.cpu:.2f}")
    print("best rounds (wall clock; CPU time per image of the whole process tree):")
    for j in jobs_list:
        fl, pr = best[("floor", j)], best[("pipe", j)]
        cf, cp = cpu[("floor", j)], cpu[("pipe", j)]
        print(f"  --jobs {j}: floor (decode + 1 detector pass, {j} process(es)) {fl:7.1f} images/s, "
              f"{cf * 1e3:.2f} CPU ms/image; facequal score {pr:7.1f} images/s, {cp * 1e3:.2f} CPU ms/image; "
              f"ratio {pr / fl:.2f} (wall), {cf / cp:.2f} (CPU); "
              f"{j} idle core(s) would give ~{j / cp:.0f} images/s")
        # The best rounds of each side may come from different moments of a noisy host; the
        # median of the rounds' own ratios (floor and pipeline back to back) moves less.
        print(f"  --jobs {j}: median of the {len(ratios[j])} rounds' wall ratios {float(np.median(ratios[j])):.2f}")
        # What the pipeline does beyond decode + detect (alignment, quality model, rows, Parquet,
        # the worker protocol), against what a ratio of 0.8 would leave for it.
        print(f"  --jobs {j}: beyond the floor {(cp - cf) * 1e3:.2f} CPU ms/image; "
              f"a CPU ratio of 0.8 leaves {cf * 0.25 * 1e3:.2f}")
    if len(jobs_list) > 1:
        j0, j1 = jobs_list[0], jobs_list[-1]
        print(f"  scaling {j0} -> {j1} workers (wall): pipeline x{best[('pipe', j1)] / best[('pipe', j0)]:.2f}, "
              f"floor x{best[('floor', j1)] / best[('floor', j0)]:.2f}")

if __name__ == "__main__":
    # Run as the importable module `score_speed`, so that worker processes get its functions by
    # reference (and keep their detector session between chunks).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import score_speed

    score_speed.main()
