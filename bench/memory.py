"""Peak memory of `facequal score` for growing input counts: it should stay flat.

Generates N small images (hard links of a few 96x96 PNG crops, spread over folders of 1,000,
so that 100,000 inputs cost almost no disk), then runs a scoring job over them in a child
process (``--aligned``, streaming: ``Job.run(output, collect=False)``, which is what the CLI's
run needs) and samples the peak resident memory (VmHWM) of that process and of each of its
worker processes. Every count runs in the same command, so the figures compare directly.

    python bench/memory.py --counts 10000,100000 --jobs 2 --model tests-tiny
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time


def make_inputs(root: str, n: int, distinct: int = 16) -> None:
    """``n`` PNG files under ``root`` (hard links of ``distinct`` generated crops)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    src = os.path.join(root, ".src")
    os.makedirs(src, exist_ok=True)
    originals = []
    for i in range(distinct):
        p = os.path.join(src, f"{i}.png")
        Image.fromarray(rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)).save(p)
        originals.append(p)
    for i in range(n):
        d = os.path.join(root, f"d{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        os.link(originals[i % distinct], os.path.join(d, f"img{i:07d}.png"))


def _vmhwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    from proctab import proc_stats

    return [p for p, fields in proc_stats().items() if int(fields[1]) == pid]


def measure(cmd: list[str]) -> tuple[float, dict[str, int], str]:
    """Run ``cmd``; returns (seconds, {"main": peak kB, "worker": largest worker peak kB}, stdout)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in [proc.pid, *_children(proc.pid)]:
                peaks[pid] = max(peaks.get(pid, 0), _vmhwm_kb(pid))
            time.sleep(0.2)

    t = time.perf_counter()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode:
        raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}")
    workers = [v for k, v in peaks.items() if k != proc.pid]
    return time.perf_counter() - t, {"main": peaks.get(proc.pid, 0), "worker": max(workers, default=0)}, out


CHILD = """
import json, resource, sys, time
from facequal import api
folder, out, model, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
job = api.Job([folder], model=model or None, aligned=True, jobs=jobs)
job.run(out, overwrite=True, collect=sys.argv[5] == "1")
s = job.summary
print(json.dumps({"rows": s.rows, "images": s.images, "s": time.perf_counter() - t,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="10000,100000")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--model", default=None,
                    help="quality model (default: the bundled one; 'tests-tiny' builds the test suite's tiny model)")
    ap.add_argument("--collect", action="store_true", help="also return the whole table (Job.run(collect=True))")
    ap.add_argument("--workdir", default=None, help="where to put the inputs (default: a temporary folder)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        model = a.model or ""
        if model == "tests-tiny":
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
            from pathlib import Path

            from modelkit import build_tiny_model

            model = str(build_tiny_model(Path(d) / "tiny.onnx"))
        results = []
        for n in [int(c) for c in a.counts.split(",")]:
            root = os.path.join(d, f"in{n}")
            t = time.perf_counter()
            make_inputs(root, n)
            made = time.perf_counter() - t
            out = os.path.join(d, f"out{n}.parquet")
            secs, peaks, stdout = measure([sys.executable, "-c", CHILD, root, out, model, str(a.jobs),
                                           "1" if a.collect else "0"])
            info = json.loads(stdout.strip().splitlines()[-1])
            assert info["images"] == n, info
            results.append((n, peaks, info))
            print(f"{n:>9,} inputs: peak RSS main {peaks['main'] / 1024:7.1f} MiB, largest worker "
                  f"{peaks['worker'] / 1024:7.1f} MiB; {info['rows']:,} rows in {info['s']:.1f} s "
                  f"({n / info['s']:.0f} images/s; inputs made in {made:.1f} s)", flush=True)
        if len(results) > 1:
            (n0, p0, _), (n1, p1, _) = results[0], results[-1]
            print(f"{n1:,} vs {n0:,} inputs: main x{p1['main'] / p0['main']:.2f} "
                  f"(+{(p1['main'] - p0['main']) / 1024:.1f} MiB, "
                  f"{(p1['main'] - p0['main']) * 1024 / (n1 - n0):.0f} bytes per extra input), "
                  f"worker x{(p1['worker'] / p0['worker']) if p0['worker'] else float('nan'):.2f}")


if __name__ == "__main__":
    main()
