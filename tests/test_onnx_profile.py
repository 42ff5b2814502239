"""bench/onnx_profile.py: a model's forward pass by operator, from onnxruntime's profile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "bench" / "onnx_profile.py"
_spec = importlib.util.spec_from_file_location("onnx_profile", _PATH)
op = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(op)


def test_profile_of_the_fast_model_adds_up() -> None:
    from facequal.models.zoo import resolve_model

    path = str(resolve_model("lightqnet-dm025s2x4").path)
    per_face, by_op, by_node = op.profile(path, batch=2, runs=20)
    assert 0 < per_face < 1.0
    assert abs(sum(by_op.values()) - 1) < 1e-6 and abs(sum(by_node.values()) - 1) < 1e-6
    convs = sum(v for k, v in by_op.items() if "Conv" in k)
    assert convs > 0.5  # a convolutional network spends most of its time in convolutions
    assert {o for _, o in by_node} == set(by_op)
