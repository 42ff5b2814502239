"""The typer application object and the error handling shared by every verb."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    name="facequal",
    help="Face image quality for curating face datasets (LightQNet).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# No rich markup in anything printed: messages hold user text (paths, column names, install hints
# such as "pip install 'facequal[embed]'") whose square brackets markup would eat. Styles are
# given as Text objects instead (see fatal).
err_console = Console(stderr=True, markup=False)
F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143   # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (``kill``, a batch scheduler stopping the job): the run stops as it does
    on Ctrl-C, since the same clean-up must run (workers stopped, finished work kept)."""


def say(message: str, style: str | None = None, prefix: str = "") -> None:
    """Print one message on stderr as it is (never read as markup), without wrapping it;
    ``prefix`` (e.g. "facequal: warning:") gets ``style``."""
    text = Text.assemble((prefix, style or ""), " " if prefix else "", message)
    err_console.print(text, highlight=False, soft_wrap=True)


def fatal(message: str, code: int = 2) -> None:
    """Print one clear line on stderr and exit non-zero."""
    say(message, "bold red", "facequal: error:")
    raise typer.Exit(code)


def warn(message: str) -> None:
    """One warning line on stderr."""
    say(message, "yellow", "facequal: warning:")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises :class:`Terminated` instead of
    killing the process on the spot, which left joblib's worker processes running for minutes.
    A second SIGTERM during the clean-up is ignored, so that it finishes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handles_errors(func: F) -> F:
    """Turn the library's user-facing exceptions into one line on stderr and a non-zero exit.

    UserError: exit 2. Ctrl-C: exit 130. SIGTERM: exit 143, after the same clean-up as Ctrl-C
    (worker processes stopped; a `score` / `embed` run keeps its finished chunks for --resume).
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from facequal.errors import UserError

        try:
            with sigterm_as_interrupt():
                return func(*args, **kwargs)
        except UserError as e:
            fatal(e.cli_message())  # flag names (--det-size), not parameter names
        except Terminated:
            say("facequal: terminated (SIGTERM)")
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            say("facequal: interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # e.g. `facequal filter ... - | head`
        sys.stderr.close()
        sys.exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Face image quality for curating face datasets (LightQNet)."""
    if ctx.invoked_subcommand is None and not version:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if version:
        from facequal import __version__

        typer.echo(f"facequal {__version__}")
        raise typer.Exit(0)
