"""Models behind one small interface: ONNX sessions, the detector's weights, and the registry
of quality models (bundled ones by name, or any ONNX file by path)."""
