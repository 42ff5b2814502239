"""Models behind one small interface: ONNX sessions, the detector's weights, the registry of
quality models (bundled ones by name, or any ONNX file by path), and the cache of files built on
first use."""
