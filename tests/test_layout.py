"""The package layout follows the data flow, and imports only go down it (ARCHITECTURE.md).

cli -> api -> pipeline / curate / eval (and train) -> models -> contract, schema, options, _io,
errors. Every ``import`` in facequal/ is read with :mod:`ast`, those inside functions (the lazy
ones) included, so a shortcut taken in a function body is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facequal"

# The modules at the top of the package: the entry points and what every layer may use.
TOP = {"__init__", "__main__", "_io", "api", "contract", "errors", "options", "schema"}
BASE = TOP - {"__init__", "__main__", "api"}
# Layers, lowest first; a module may import its own layer and those below it.
LAYERS = {**dict.fromkeys(BASE, 0), "models": 1, "pipeline": 2, "curate": 2, "eval": 2, "train": 2,
          "api": 3, "cli": 4}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every facequal import in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "facequal":
            if node.module == "facequal":  # `from facequal import schema, __version__`
                out += [(f"facequal.{a.name}", []) for a in node.names]
            else:
                out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "facequal"]
    return out


def part(module: str) -> str | None:
    """The subpackage or top-level module that ``module`` belongs to (None: the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
EDGES = [(m, target, names) for m, p in MODULES.items() for target, names in imports(p)]
# The file helpers: every public function of facequal._io, and the names curate's copies had.
FILE_HELPERS = {n for n in functions(PACKAGE / "_io.py") if not n.startswith("_")} | {
    "write_atomic", "write_parquet_atomic", "check_output_writable"}


def test_at_most_eight_modules_at_the_top():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert len(top) <= 8, sorted(top)
    assert top <= TOP, sorted(top - TOP)


def test_every_subpackage_is_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders <= set(LAYERS), sorted(folders - set(LAYERS))


@pytest.mark.parametrize("sub", ["models", "pipeline", "curate", "eval", "train"])
def test_libraries_never_import_the_cli_or_the_api(sub):
    bad = [(m, t) for m, t, _ in EDGES if part(m) == sub and part(t) in ("cli", "api")]
    assert not bad


def test_pipeline_imports_neither_curate_nor_eval():
    bad = [(m, t) for m, t, _ in EDGES if part(m) == "pipeline" and part(t) in ("curate", "eval")]
    assert not bad


def test_nothing_imports_upward():
    bad = []
    for m, t, _ in EDGES:
        src, dst = part(m), part(t)
        if src in (None, "__main__") or dst is None:
            continue  # the package's lazy attributes and `python -m`; `from facequal import __version__`
        if dst == "__version__" or src == dst:
            continue
        if LAYERS.get(dst, 0) > LAYERS[src]:
            bad.append((m, t))
    assert not bad


def test_torch_stays_behind_train():
    # facequal.train needs torch: only the `train` verb may import it.
    bad = [(m, t) for m, t, _ in EDGES if part(t) == "train" and part(m) not in ("train", "cli")]
    assert not bad


def test_nothing_takes_its_file_helpers_from_curate():
    assert {"check_output", "write_output", "atomic_write"} <= FILE_HELPERS
    bad = [(m, t, n) for m, t, names in EDGES for n in names if part(t) == "curate" and n in FILE_HELPERS]
    assert not bad
    # nor does curate keep copies of them
    copies = [(m, n) for m, p in MODULES.items() if part(m) == "curate" for n in functions(p) & FILE_HELPERS]
    assert not copies, "output helpers belong in facequal/_io.py"


def test_the_checks_see_every_module():
    # a guard for the guards: the walk finds the modules of every layer
    assert {part(m) for m in MODULES} >= {"cli", "api", "pipeline", "curate", "eval", "models", "train", "_io"}
    assert any(t == "facequal.pipeline.detect" for _, t, _ in EDGES)
