"""Exceptions that stop a run with one clear message (the CLI prints it and exits non-zero)."""

from __future__ import annotations


class UserError(Exception):
    """Bad arguments, unreadable or unwritable files, missing models: the run cannot go on."""


class OutputExistsError(UserError):
    """The output exists and neither --overwrite nor --resume was given."""


class ModelError(UserError):
    """A model is missing, tampered with, or has no usable contract."""
