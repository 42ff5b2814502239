"""One image (or fewer inputs than a chunk) runs in this process: no pool of workers is started."""

from __future__ import annotations

from facequal import api
from facequal.pipeline import executors


def test_tiny_input_runs_serially(monkeypatch, face_folder, tiny_model):
    started = []

    class NoPool(executors.JoblibExecutor):
        def map_ordered(self, *a, **k):
            started.append(self.jobs)
            return super().map_ordered(*a, **k)

    monkeypatch.setattr(executors, "JoblibExecutor", NoPool)
    one = next(p for p in sorted(face_folder.rglob("*.jpg")))
    t = api.score([str(one)], model=str(tiny_model), jobs=4)
    assert t.num_rows >= 1 and started == []
    # More inputs than a chunk: the workers run them, with the same rows as one process.
    many = api.score([str(face_folder)], model=str(tiny_model), jobs=2, chunk_size=2)
    assert started == [2]
    assert many.equals(api.score([str(face_folder)], model=str(tiny_model), jobs=1, chunk_size=2))
