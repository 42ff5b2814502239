"""The typer application object and the error handling shared by every verb."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

app = typer.Typer(
    name="facequal",
    help="Face image quality for curating face datasets (LightQNet).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def fatal(message: str, code: int = 2) -> None:
    """Print one clear line on stderr and exit non-zero."""
    err_console.print(f"[bold red]facequal: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handles_errors(func: F) -> F:
    """Turn the library's user-facing exceptions into one line on stderr and a non-zero exit."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from facequal.errors import UserError

        try:
            return func(*args, **kwargs)
        except UserError as e:
            fatal(str(e))
        except KeyboardInterrupt:
            err_console.print("facequal: interrupted")
            raise typer.Exit(130) from None

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
