"""``python -m facequal``: the same command line as the ``facequal`` console script."""

from __future__ import annotations

from facequal.cli import main

if __name__ == "__main__":
    main()
