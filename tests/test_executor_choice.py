"""One image (or fewer inputs than a chunk) runs in this process: no pool of workers is started."""

from __future__ import annotations

from facequal import api
from facequal.pipeline import executors
from facequal.pipeline.run import TAIL_MIN, chunked


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


def _sizes(n: int, size: int, workers: int) -> list[int]:
    return [len(c) for c in chunked(((i, f"img{i}") for i in range(n)), size, workers)]


def test_chunks_shrink_at_the_end_so_the_workers_finish_together():
    n, size = 3000, 64
    chunks = list(chunked(((i, f"img{i}") for i in range(n)), size, 2))
    assert [o for c in chunks for o, _ in c] == list(range(n))      # every input once, in order
    sizes = [len(c) for c in chunks]
    assert max(sizes) == size and sizes[:40] == [size] * 40
    tail = sizes[sizes.index(min(s for s in sizes if s < size)) - 1:]
    assert tail[-1] <= TAIL_MIN and all(a >= b for a, b in zip(tail, tail[1:-1], strict=False))
    assert len(sizes) < n // size + 16                                 # a few more chunks, not many
    # One worker, or inputs that fit in one chunk: whole chunks, as before.
    assert _sizes(n, size, 1) == [size] * (n // size) + [n % size]
    assert _sizes(size, size, 2) == [size] and _sizes(5, size, 4) == [5] and _sizes(0, size, 2) == []


def test_chunking_reads_only_a_few_chunks_ahead():
    seen = []

    def refs():
        for i in range(10_000):
            seen.append(i)
            yield i, f"img{i}"

    it = chunked(refs(), 64, 2)
    next(it)
    assert len(seen) <= 2 * 2 * 64 + 64
