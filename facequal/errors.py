"""Exceptions that stop a run with one clear message (the CLI prints it and exits non-zero).

They are ``ValueError`` subclasses (and ``FileExistsError`` / ``FileNotFoundError`` where a file
is in the way or missing), so a Python caller can catch them as usual. An error about one
option carries its Python parameter name (``param``): ``str(error)`` names the parameter
(``det_size``), as a Python caller wrote it; :meth:`UserError.cli_message` names the command-line
flag (``--det-size``), which the CLI prints.
"""

from __future__ import annotations


def flag_of(param: str) -> str:
    """The command-line flag of a Python parameter: ``det_size`` -> ``--det-size``."""
    return "--" + param.replace("_", "-")


class UserError(ValueError):
    """Bad arguments, unreadable or unwritable files, missing models: the run cannot go on.

    ``message`` is written with the flag's name (``--det-size``); ``param`` is the Python
    parameter it is about, when there is one.
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def cli_message(self) -> str:
        """The message with command-line flag names, as the CLI prints it."""
        return self.message

    def __str__(self) -> str:
        if self.param:
            return self.message.replace(flag_of(self.param), self.param)
        return self.message


class OutputExistsError(UserError, FileExistsError):
    """The output exists and neither --overwrite nor --resume was given."""


class InputNotFoundError(UserError, FileNotFoundError):
    """An input file or folder (an image folder, a manifest, a scores file, a pair list) is missing."""


class ModelError(UserError):
    """A model is missing, tampered with, or has no usable contract."""
