"""Creating onnxruntime sessions with facequal's thread and device settings."""

from __future__ import annotations

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


def make_session(model: bytes | str | Path, *, threads: int = 0, device: str = "cpu"):
    """An onnxruntime InferenceSession. ``threads`` = 0 lets onnxruntime choose.

    One intra-op thread per worker process is what a parallel run wants (no oversubscription).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=providers_for(device))
