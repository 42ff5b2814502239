"""Distributed execution on a Dask cluster (``--backend dask --scheduler tcp://HOST:PORT``).

The run itself stays where it was started: this process walks the inputs, commits finished
chunks to the output's work directory and writes the final output. Only the chunks go to the
cluster, as (ordinal, path) lists, and only their rows come back; the workers open the images
and the model from the same paths, so inputs, the model file and the output folder's parent
must be visible to every worker at the same path (a shared filesystem), and facequal must be
installed on the workers. Chunks are the same as in a local run and every worker runs
onnxruntime with the same thread count, so the rows are exactly those of a local run.

Dask and ``distributed`` come with the optional extra: ``pip install 'facequal[dask]'``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from facequal.errors import UserError

INSTALL_HINT = "pip install 'facequal[dask]'"
CONNECT_TIMEOUT_S = 30

T = TypeVar("T")


def check_dask(scheduler: str | None) -> None:
    """Raise UserError unless ``distributed`` is importable and a scheduler address is given."""
    if not scheduler:
        raise UserError("--backend dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UserError(f"--backend dask needs dask.distributed; install it with: {INSTALL_HINT}") from None


def connect(scheduler: str):
    """A ``distributed.Client`` for ``scheduler``; UserError (one line) when it cannot connect."""
    check_dask(scheduler)
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise UserError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler: {e}") from None


def dask_map_ordered(items: Iterable[T], task: Callable[[T], tuple[Any, ...]],
                     scheduler: str, window: int | None = None) -> Iterator[tuple[T, Any]]:
    """Run ``func(*args)`` for each item on the cluster, where ``task(item)`` gives
    ``(func, *args)``; yields (item, result) in the order of ``items``.

    At most ``window`` tasks (default: twice the cluster's worker threads) are submitted ahead
    of the one being waited for, so a long input list never sits in the scheduler's memory.
    A worker lost mid-task is retried once elsewhere; an exception in a task stops the run.
    """
    client = connect(scheduler)
    pending: deque[tuple[T, Any]] = deque()
    try:
        if window is None:
            threads = sum(client.nthreads().values())
            window = max(2, 2 * threads)
        for item in items:
            func, *args = task(item)
            pending.append((item, client.submit(func, *args, pure=False, retries=1)))
            if len(pending) >= window:
                done_item, fut = pending.popleft()
                yield done_item, fut.result()
        while pending:
            done_item, fut = pending.popleft()
            yield done_item, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
        client.close()
