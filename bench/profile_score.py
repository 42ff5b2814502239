"""Where the time of an end-to-end `facequal score` run goes: a pyinstrument profile.

Runs the pipeline in this process (``--jobs 1``, so that one profile sees every stage) over the
first ``--limit`` images of a folder, then prints the time of each stage (inclusive) and the
functions with the most time of their own, as shares of the run. ``--html FILE`` also saves
pyinstrument's interactive report.

    pip install pyinstrument
    python bench/profile_score.py ../shared/data/lfw --limit 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict

# Inclusive time of these functions (outermost call only) = the stages of the pipeline.
STAGES = [
    ("decode (open_image)", "open_image"),
    ("detect: preprocess", "preprocess"),
    ("detect: network (session.run)", "RetinaFace._forward/InferenceSession.run"),
    ("detect: postprocess + NMS", "postprocess"),
    ("detect: downscale / pad / map back", "RetinaFace._detect_once-self"),
    ("align (similarity fit + warp)", "align_face"),
    ("quality model (to_tensor + run)", "OnnxModel.run"),
    ("rows -> Arrow (main process)", "rows_to_table"),
    ("commit part files (Parquet)", "RunStore.commit"),
    ("final merge + write", "RunStore.finish"),
    ("inputs + model lookup (Job init)", "Job.__init__"),
]


def _walk(frame, stack: tuple[str, ...], incl: dict[str, float], self_t: dict[str, float]) -> None:
    name = frame.function if not frame.class_name else f"{frame.class_name}.{frame.function}"
    if name.startswith("["):  # pyinstrument's synthetic frames ([self], [await], ...)
        return
    key = f"{name}  ({os.path.basename(frame.file_path or '?')}:{frame.line_no})"
    self_t[key] += frame.time - sum(c.time for c in frame.children if not c.function.startswith("[self]"))
    if name not in stack:  # inclusive time of the outermost call only
        incl[name] += frame.time
    if stack and stack[-1] == "RetinaFace._forward" and name == "InferenceSession.run":
        incl["RetinaFace._forward/InferenceSession.run"] += frame.time
    if name == "downscale_for_detection":
        incl["RetinaFace._detect_once-self"] += frame.time
    if name == "RetinaFace._detect_once":
        inner = sum(c.time for c in frame.children if c.function == "_forward")
        incl["RetinaFace._detect_once-self"] += frame.time - inner
    for child in frame.children:
        _walk(child, (*stack, name), incl, self_t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--model", default=None, help="quality model (default: the bundled one)")
    ap.add_argument("--contract", default=None)
    ap.add_argument("--stand-in", action="store_true",
                    help="the reference dm100 under the bundled model's contract (see score_speed.py)")
    ap.add_argument("--det-size", type=int, default=640)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--html", default=None, help="also write pyinstrument's HTML report here")
    a = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyinstrument import Profiler

    from facequal import api
    from facequal.pipeline.sources import walk_folder

    paths = []
    for p in walk_folder(a.folder):
        paths.append(os.path.abspath(p))
        if len(paths) >= a.limit:
            break
    with tempfile.TemporaryDirectory() as d:
        if a.stand_in:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from score_speed import stand_in

            a.model, a.contract = stand_in(d)
        m = os.path.join(d, "m.parquet")
        pq.write_table(pa.table({"path": paths}), m)
        opts = {"model": a.model, "contract": a.contract, "det_size": a.det_size, "jobs": 1}
        api.Job([m], **opts).run(os.path.join(d, "warm.parquet"))  # load models, fill caches
        prof = Profiler(interval=0.001)
        prof.start()
        job = api.Job([m], **opts)
        try:
            job.run(os.path.join(d, "o.parquet"), collect=False)
        except TypeError:  # an older facequal (to profile a version before this one)
            job.run(os.path.join(d, "o.parquet"))
        prof.stop()
    session = prof.last_session
    root = session.root_frame()
    total = root.time
    incl: dict[str, float] = defaultdict(float)
    self_t: dict[str, float] = defaultdict(float)
    _walk(root, (), incl, self_t)
    n = len(paths)
    print(f"{n} images, {total:.2f} s in the profiled run: {n / total:.1f} images/s on one process")
    print("stages (inclusive):")
    covered = 0.0
    for label, key in STAGES:
        t = incl.get(key, 0.0)
        if key in ("open_image", "preprocess", "postprocess", "align_face", "OnnxModel.run", "rows_to_table",
                    "RunStore.commit", "RunStore.finish", "Job.__init__", "RetinaFace._forward/InferenceSession.run",
                    "RetinaFace._detect_once-self"):
            covered += t
        print(f"  {label:38s} {t:7.3f} s {100 * t / total:5.1f} %  {t / n * 1e3:6.3f} ms/image")
    print(f"  {'everything else':38s} {total - covered:7.3f} s {100 * (total - covered) / total:5.1f} %")
    print(f"top {a.top} functions by own time:")
    for key, t in sorted(self_t.items(), key=lambda kv: -kv[1])[:a.top]:
        print(f"  {100 * t / total:5.1f} %  {t / n * 1e3:6.3f} ms/image  {key}")
    if a.html:
        with open(a.html, "w", encoding="utf-8") as f:
            f.write(prof.output_html())
        print(f"HTML report: {a.html}")


if __name__ == "__main__":
    main()
