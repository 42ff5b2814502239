"""Interruption: a scoring process killed with SIGKILL halfway keeps what it finished, leaves
nothing under the final name, and ``--resume`` ends with exactly the rows of an uninterrupted run.
A crash while writing a file never leaves a truncated file under its final name either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from facequal import api
from facequal.pipeline.store import RunStore, atomic_write_table

N_IMAGES = 2000
REPO = Path(__file__).resolve().parents[1]


def _make_images(root: Path, astronaut: np.ndarray) -> list[str]:
    """2,000 small images: 32x32 gradients (no face) and every 50th a 96x96 face."""
    from PIL import Image

    rng = np.random.default_rng(0)
    face = Image.fromarray(astronaut).crop((120, 20, 320, 220)).resize((96, 96))
    ramp = np.linspace(0, 1, 32)[None, :, None]
    paths = []
    for i in range(N_IMAGES):
        d = root / f"{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        if i % 50 == 0:
            im = face
        else:
            arr = (ramp * rng.integers(-80, 80, 3) + rng.integers(0, 256, 3)).clip(0, 255).astype(np.uint8)
            im = Image.fromarray(np.ascontiguousarray(np.broadcast_to(arr, (32, 32, 3))))
        p = d / f"img_{i:04d}.jpg"
        im.save(p, quality=85)
        paths.append(str(p))
    return paths


def _score_cmd(folder: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "facequal", "score", str(folder), "-o", str(out), "--model", str(model),
            "--jobs", "2", "-q", *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
def test_sigkill_halfway_then_resume_equals_an_uninterrupted_run(tmp_path, astronaut, tiny_model):
    folder = tmp_path / "imgs"
    paths = _make_images(folder, astronaut)
    out = tmp_path / "scores.parquet"
    work = tmp_path / ".scores.parquet.facequal-work"

    # 1. Start a run and kill it with SIGKILL once a few chunks (of 64 images) are committed.
    proc = subprocess.Popen(_score_cmd(folder, out, tiny_model), env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(list(work.glob("part-*.parquet"))) < 8:
            assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no part files appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:  # the worker processes of the killed run, in the session it started
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed run must leave nothing under the final name"
    parts = sorted(work.glob("part-*.parquet"))
    committed = pa.concat_tables([pq.read_table(p) for p in parts])   # every committed part is whole
    assert 8 * 64 <= committed.num_rows < N_IMAGES, "killed halfway, not at the start or the end"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("scores.parquet")]

    # 2. Without --resume the unfinished run is not silently overwritten.
    r = subprocess.run(_score_cmd(folder, out, tiny_model), env=_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr

    # 3. Resume: only what is missing is processed, and the final file appears.
    r = subprocess.run(_score_cmd(folder, out, tiny_model, "--resume"), env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not work.exists()
    resumed = pq.read_table(out)

    # 4. The same rows as an uninterrupted run: none missing, none twice, same values, same order.
    full = api.score([folder], model=str(tiny_model), jobs=2)
    assert resumed.select(full.column_names).equals(full)
    assert resumed.num_rows == N_IMAGES == len(set(resumed.column("path").to_pylist()))
    assert sorted(resumed.column("path").to_pylist()) == sorted(paths)
    keys = pa.table({"p": resumed.column("path"), "f": resumed.column("face_index")})
    assert keys.group_by(["p", "f"]).aggregate([]).num_rows == resumed.num_rows
    assert pc.sum(pc.equal(resumed.column("status"), "ok")).as_py() == N_IMAGES // 50


def test_crash_while_writing_leaves_no_truncated_file(tmp_path, monkeypatch):
    """The final file is written to a temporary name and renamed: a crash in the middle of the
    write leaves the old file (or none) under the final name, and no temporary file behind."""
    from facequal.pipeline import store

    final = tmp_path / "out.parquet"
    good = pa.table({"x": pa.array(np.arange(1000))})
    atomic_write_table(good, final)
    real = store.pq.write_table

    def dies_halfway(table, where, **kwargs):
        real(table, where, **kwargs)
        with open(where, "r+b") as f:                   # half a file, as a killed writer leaves it
            f.truncate(os.path.getsize(where) // 2)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(store.pq, "write_table", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_table(pa.table({"x": pa.array(np.arange(5))}), final)
    assert pq.read_table(final).equals(good)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_table(good, tmp_path / "new.parquet")
    assert not (tmp_path / "new.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_crash_while_finishing_keeps_the_parts(tmp_path, face_folder, tiny_model, monkeypatch):
    """Killed while the parts are merged into the final file (just before its rename): nothing
    under the final name, no temporary file left behind, the parts kept, and --resume finishes
    the job without processing anything again."""
    from facequal.pipeline import run as pipeline

    out = tmp_path / "s.parquet"
    full = api.score([face_folder], model=str(tiny_model), jobs=1, chunk_size=2)
    job = api.Job([face_folder], model=str(tiny_model), jobs=1, chunk_size=2)
    real_replace = os.replace

    def dies_before_the_rename(src, dst, *args, **kwargs):
        if os.fspath(dst) == str(out):
            raise KeyboardInterrupt("killed while finishing")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", dies_before_the_rename)
    with pytest.raises(KeyboardInterrupt):
        job.run(str(out))
    monkeypatch.setattr(os, "replace", real_replace)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".s.parquet.facequal-work"]   # no temporary file
    st = RunStore(output=str(out), schema=job.schema, fingerprint=job.options, metadata=job.metadata())
    assert len(st.part_files()) == 3                           # 5 images in chunks of 2

    def no_more_work(*args, **kwargs):
        raise AssertionError("resume must not process committed inputs again")

    monkeypatch.setattr(pipeline, "process_chunk", no_more_work)
    t = api.Job([face_folder], model=str(tiny_model), jobs=1, chunk_size=2).run(str(out), resume=True)
    assert t.equals(full) and pq.read_table(out).select(full.column_names).equals(full)
    assert not st.work.exists()
