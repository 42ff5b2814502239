"""Where a quality model's forward pass spends its time: onnxruntime's profile, by operator.

Runs the model on random input of its own size at one batch size, one thread (what a worker
uses), and prints the faces a second without profiling, then each operator type's share of the
kernel time and the slowest nodes, as onnxruntime optimised the graph (its layout conversions,
``ReorderInput`` / ``ReorderOutput``, included).

    python bench/onnx_profile.py facequal/models/files/lightqnet-dm025x4.onnx --batch 2
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np


def _profiling_session(model: str, prefix: str):
    """The pipeline's session settings (one thread), with onnxruntime's profiler on."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = prefix
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def profile(model: str, batch: int = 2, runs: int = 500
            ) -> tuple[float, dict[str, float], dict[tuple[str, str], float]]:
    """(seconds a face without profiling, kernel-time share by operator type, share by node), one
    thread, random input of the model's own size (free dimensions set to ``batch``)."""
    from facequal.models.session import make_session

    plain = make_session(model, threads=1)  # what a worker runs
    inp = plain.get_inputs()[0]
    shape = [batch if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(min(50, runs)):
        plain.run(None, {inp.name: x})
    t = time.perf_counter()
    for _ in range(runs):
        plain.run(None, {inp.name: x})
    per_face = (time.perf_counter() - t) / runs / batch
    with tempfile.TemporaryDirectory() as d:
        prof = _profiling_session(model, os.path.join(d, "prof"))
        for _ in range(runs // 5 + 10):
            prof.run(None, {inp.name: x})
        with open(prof.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    by_op: dict[str, float] = collections.defaultdict(float)
    by_node: dict[tuple[str, str], float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            by_op[op] += e["dur"]
            by_node[(e["name"][: -len("_kernel_time")], op)] += e["dur"]
    total = sum(by_op.values()) or 1.0
    return (per_face, {k: v / total for k, v in by_op.items()}, {k: v / total for k, v in by_node.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    per_face, by_op, by_node = profile(a.model, a.batch, a.runs)
    print(f"{os.path.basename(a.model)}: {per_face * 1e3:.3f} ms a face ({1 / per_face:,.0f} faces/s), "
          f"batch {a.batch}, one thread, {a.runs} runs")
    print("kernel time by operator (as optimised by onnxruntime):")
    for op, v in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:24s} {100 * v:5.1f} %")
    reorder = sum(v for op, v in by_op.items() if op.startswith("Reorder"))
    print(f"layout conversions (Reorder*): {100 * reorder:.1f} %")
    print(f"slowest {a.top} nodes:")
    for (name, op), v in sorted(by_node.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"  {100 * v:5.1f} %  {op:16s} {name}")


if __name__ == "__main__":
    main()
