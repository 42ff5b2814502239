"""The `facequal` command line: a thin typer layer over :mod:`facequal.api`.

Each verb lives in its own module, which registers itself on :data:`app` when imported.
"""

from __future__ import annotations

from facequal.cli.app import app, main  # noqa: F401

# Importing a verb's module registers its command(s) on the app.
from facequal.cli import score as _score  # noqa: F401,E402  isort: skip
from facequal.cli import embed as _embed  # noqa: F401,E402  isort: skip
from facequal.cli import train as _train  # noqa: F401,E402  isort: skip
from facequal.cli import curate as _curate  # noqa: F401,E402  isort: skip
from facequal.cli import evaluate as _evaluate  # noqa: F401,E402  isort: skip
from facequal.cli import audit as _audit  # noqa: F401,E402  isort: skip
