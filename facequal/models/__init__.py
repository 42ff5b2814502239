"""Models behind one small interface: ONNX sessions, the detector's weights, and the registry
of quality models (bundled ones by name, or any ONNX file by path)."""

# Faces per model call on a CPU: LightQNet's stride-1 stem keeps 16 x 96 x 96 activations per
# face, so at 16 faces a call they stay in cache; at 64 the same model runs 10-20% slower
# (bench/score_only.py --sweep). Larger batches suit a GPU (--batch-size).
DEFAULT_BATCH = 16
