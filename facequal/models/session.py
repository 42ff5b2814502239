"""Creating onnxruntime sessions with facequal's thread and device settings.

``--device cuda`` runs the detector and the quality / embedding model on onnxruntime's CUDA
execution provider. It needs the ``onnxruntime-gpu`` build (instead of ``onnxruntime``) with the
CUDA and cuDNN libraries it was built for, and a visible GPU. When any of that is missing the
run stops before any work with one line that says which part is missing, rather than silently
falling back to the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from facequal.errors import UserError

DEVICES = ("cpu", "cuda")


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for ``device``; raises UserError when it is unavailable."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        have = ort.get_available_providers()
        if "CUDAExecutionProvider" not in have:
            raise UserError(
                "--device cuda: this onnxruntime has no CUDA provider "
                f"(available: {', '.join(have)}); install onnxruntime-gpu with a matching CUDA"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UserError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")


def make_session(model: bytes | str | Path, *, threads: int = 0, device: str = "cpu",
                 dims: Mapping[str, int] | None = None):
    """An onnxruntime InferenceSession. ``threads`` = 0 lets onnxruntime choose.

    One intra-op thread per worker process is what a parallel run wants (no oversubscription).
    ``dims`` fixes named free input dimensions, so that onnxruntime plans the graph for one size.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for name, value in (dims or {}).items():
        opts.add_free_dimension_override_by_name(name, int(value))
    src = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(src, sess_options=opts, providers=providers_for(device))
    if device == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        # onnxruntime-gpu falls back to the CPU when the CUDA libraries or the GPU are missing.
        raise UserError("--device cuda: onnxruntime has a CUDA provider but could not start it "
                        "(no GPU visible, or the CUDA / cuDNN libraries it needs are missing; "
                        "onnxruntime's log above says which)")
    return sess
