"""Where chunks run: one interface, three executors, each yielding results in input order.

* :class:`SerialExecutor` -- in this process, one chunk after the other (``--jobs 1``);
* :class:`JoblibExecutor` -- local worker processes (joblib / loky), at most ``2 * jobs`` chunks
  in flight;
* :class:`DaskExecutor` -- a Dask cluster (``--backend dask --scheduler tcp://HOST:PORT``), at
  most twice the cluster's threads in flight.

:func:`make_executor` picks one from the run's options. The run itself stays where it was
started: this process walks the inputs, commits finished chunks to the output's work directory
and writes the final output; only the chunks go to the workers, as (ordinal, path) lists, and
only their rows come back. On Dask the workers open the images and the model from the same paths,
so inputs, the model file and the output folder's parent must be visible to every worker at the
same path (a shared filesystem), and facequal must be installed on the workers. Chunks are the
same for every executor and every worker runs onnxruntime with the same thread count, so the rows
are exactly those of a local run.

Dask and ``distributed`` come with the optional extra: ``pip install 'facequal[dask]'``.
"""

from __future__ import annotations

import re
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from facequal.errors import UserError

INSTALL_HINT = "pip install 'facequal[dask]'"
CONNECT_TIMEOUT_S = 30

T = TypeVar("T")


class Executor(Protocol):
    """Runs ``func(*args_of(item))`` for every item; yields ``(item, result)`` in item order."""

    def map_ordered(self, func: Callable[..., Any], items: Iterable[T],
                    args_of: Callable[[T], tuple[Any, ...]]) -> Iterator[tuple[T, Any]]: ...


class SerialExecutor:
    """In this process, one item after the other."""

    def map_ordered(self, func: Callable[..., Any], items: Iterable[T],
                    args_of: Callable[[T], tuple[Any, ...]]) -> Iterator[tuple[T, Any]]:
        for item in items:
            yield item, func(*args_of(item))


class JoblibExecutor:
    """Local worker processes (joblib's loky backend); at most ``2 * jobs`` items in flight, so
    memory does not grow with the input count."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def map_ordered(self, func: Callable[..., Any], items: Iterable[T],
                    args_of: Callable[[T], tuple[Any, ...]]) -> Iterator[tuple[T, Any]]:
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        pending: list[T] = []

        def tasks():
            for item in items:
                pending.append(item)
                yield delayed(func)(*args_of(item))

        # batch_size=1: a chunk is already a batch; joblib's auto-batching would glue the short chunks
        # at the end of a run back together (see facequal.pipeline.run.chunked).
        par = Parallel(n_jobs=self.jobs, return_as="generator", prefer="processes", pre_dispatch="2*n_jobs",
                       batch_size=1)
        results = par(tasks())
        try:
            for result in results:
                yield pending.pop(0), result
        except TerminatedWorkerError as e:  # killed from outside (the OOM killer, a signal)
            raise UserError(f"a worker process died ({_exit_reason(e)}); the chunks finished before "
                            "it are kept (rerun with --resume to go on)") from None
        finally:
            # Stopped early (Ctrl-C, SIGTERM, an error in the caller): close joblib's generator
            # here, in this thread, which kills the worker processes now instead of leaving them
            # running until garbage collection (they held ~180 MB each for minutes after a
            # SIGTERM). joblib warns that the tasks in flight were cancelled: that is the point,
            # and the message would break "one line on stderr".
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                results.close()


def _exit_reason(e: BaseException) -> str:
    """What joblib says about a dead worker, shortened to its exit code (one line)."""
    m = re.search(r"exit codes? of the workers? (?:are|is) \{?([^}\n]*)\}?", str(e))
    if not m:
        return "it was killed"
    codes = m.group(1).strip()
    if "SIGKILL" in codes:
        return f"exit code {codes}: out of memory?"
    return f"exit code {codes}"


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


class DaskExecutor:
    """A Dask cluster. At most ``window`` tasks (default: twice the cluster's worker threads) are
    submitted ahead of the one being waited for, so a long input list never sits in the
    scheduler's memory. A worker lost mid-task is retried once elsewhere; an exception in a task
    stops the run."""

    def __init__(self, scheduler: str, window: int | None = None) -> None:
        self.scheduler = scheduler
        self.window = window

    def map_ordered(self, func: Callable[..., Any], items: Iterable[T],
                    args_of: Callable[[T], tuple[Any, ...]]) -> Iterator[tuple[T, Any]]:
        client = connect(self.scheduler)
        pending: deque[tuple[T, Any]] = deque()
        try:
            window = self.window
            if window is None:
                threads = sum(client.nthreads().values())
                window = max(2, 2 * threads)
            for item in items:
                pending.append((item, client.submit(func, *args_of(item), pure=False, retries=1)))
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


def make_executor(backend: str, jobs: int, scheduler: str | None = None) -> Executor:
    """The executor of a run: Dask for ``backend="dask"``, else worker processes when ``jobs`` > 1,
    else this process."""
    if backend == "dask":
        if scheduler is None:
            raise ValueError("the dask backend needs a scheduler address")
        return DaskExecutor(scheduler)
    if jobs <= 1:
        return SerialExecutor()
    return JoblibExecutor(jobs)
