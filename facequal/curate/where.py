"""``filter --where``: a small, safe expression language over a score table's columns.

Grammar (no Python is evaluated; the text is tokenised and parsed here)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | test
    test       := sum (("<" | "<=" | ">" | ">=" | "==" | "=" | "!=") sum)*   # chained: 0 < x <= 5
                | sum "is" ["not"] "null"
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | 'text' | "text" | true | false | COLUMN | `odd column name`
                | "abs" "(" sum ")" | "(" expr ")"

Columns are numbers (any integer or float type), flags (booleans, usable bare: ``not mislabel``)
or text (compared with ``==`` / ``!=`` against a quoted literal, or tested with ``is null``).
A missing value (null, or NaN in a float column) makes every comparison on it unknown, and an
unknown row is not kept -- ``not (yaw > 30)`` keeps no row without a yaw either (SQL's
three-valued logic; ``yaw is null`` asks for those rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from facequal.errors import UserError

__all__ = ["Expression", "parse_where"]

Kind = Literal["number", "flag", "text"]
_KEYWORDS = {"and", "or", "not", "is", "null", "true", "false", "abs"}
_COMPARE = {"<", "<=", ">", ">=", "==", "=", "!="}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<text>'[^']*'|\"[^\"]*\")"
    r"|(?P<quoted>`[^`]+`)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|<|>|=|\+|-|\*|/|\(|\)))"
)


def _fail(message: str) -> UserError:
    return UserError(f"--where: {message}", param="where")


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, text, name, column, op, end
    value: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            at = len(text[pos:]) - len(text[pos:].lstrip()) + pos
            raise _fail(f"cannot read {text[at:at + 12]!r} at character {at + 1}")
        kind = m.lastgroup or "op"
        value = m.group(kind)
        start = m.start(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "op", value.lower()
        elif kind == "name":
            kind = "column"
        elif kind == "quoted":
            kind, value = "column", value[1:-1]
        elif kind == "text":
            value = value[1:-1]
        out.append(_Tok(kind, value, start))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


# -- the tree ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Node:
    pos: int


@dataclass(frozen=True)
class _Literal(_Node):
    value: float | str | bool


@dataclass(frozen=True)
class _Column(_Node):
    name: str


@dataclass(frozen=True)
class _Unary(_Node):
    op: str  # "-", "not", "abs"
    arg: _Node


@dataclass(frozen=True)
class _Binary(_Node):
    op: str  # arithmetic, comparison, "and", "or"
    left: _Node
    right: _Node


@dataclass(frozen=True)
class _IsNull(_Node):
    arg: _Node
    negated: bool


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, *values: str) -> _Tok | None:
        t = self.peek()
        if t.kind == "op" and t.value in values:
            self.i += 1
            return t
        return None

    def expect(self, value: str, what: str) -> _Tok:
        t = self.take(value)
        if t is None:
            raise self.unexpected(what)
        return t

    def unexpected(self, wanted: str) -> UserError:
        t = self.peek()
        found = "the end of the expression" if t.kind == "end" else repr(t.value)
        return _fail(f"expected {wanted} at character {t.pos + 1}, found {found}")

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise _fail("empty expression")
        node = self.expr()
        if self.peek().kind != "end":
            raise self.unexpected("'and', 'or' or the end of the expression")
        return node

    def binary(self, operand: Callable[[], _Node], *ops: str) -> _Node:
        """A left-associative chain ``operand (op operand)*`` of one precedence level."""
        node = operand()
        while (t := self.take(*ops)) is not None:
            node = _Binary(t.pos, t.value, node, operand())
        return node

    def expr(self) -> _Node:
        return self.binary(self.and_expr, "or")

    def and_expr(self) -> _Node:
        return self.binary(self.not_expr, "and")

    def prefix(self, op: str, operand: Callable[[], _Node]) -> _Node:
        """``op* operand``: a prefix operator, repeatable (``not not x``, ``--x``)."""
        t = self.take(op)
        if t is not None:
            return _Unary(t.pos, op, self.prefix(op, operand))
        return operand()

    def not_expr(self) -> _Node:
        return self.prefix("not", self.test)

    def test(self) -> _Node:
        left = self.sum()
        t = self.take("is")
        if t is not None:
            negated = self.take("not") is not None
            self.expect("null", "'null' after 'is'")
            return _IsNull(t.pos, left, negated)
        node: _Node | None = None
        while (t := self.take(*_COMPARE)) is not None:
            right = self.sum()
            cmp = _Binary(t.pos, "==" if t.value == "=" else t.value, left, right)
            node = cmp if node is None else _Binary(t.pos, "and", node, cmp)
            left = right
        return left if node is None else node

    def sum(self) -> _Node:
        return self.binary(self.product, "+", "-")

    def product(self) -> _Node:
        return self.binary(self.unary, "*", "/")

    def unary(self) -> _Node:
        return self.prefix("-", self.atom)

    def atom(self) -> _Node:
        t = self.peek()
        if t.kind == "number":
            self.i += 1
            return _Literal(t.pos, float(t.value))
        if t.kind == "text":
            self.i += 1
            return _Literal(t.pos, t.value)
        if t.kind == "column":
            self.i += 1
            return _Column(t.pos, t.value)
        if self.take("true", "false") is not None:
            return _Literal(t.pos, t.value == "true")
        if self.take("abs") is not None:
            self.expect("(", "'(' after abs")
            arg = self.sum()
            self.expect(")", "')' closing abs(")
            return _Unary(t.pos, "abs", arg)
        if self.take("(") is not None:
            node = self.expr()
            self.expect(")", "')'")
            return node
        raise self.unexpected("a column, a number or '('")


# -- evaluation ------------------------------------------------------------------------------------
@dataclass
class _Value:
    kind: Kind
    data: np.ndarray   # float64 (number), bool (flag) or object (text)
    known: np.ndarray  # bool: False where the value is missing


def _column_kind(typ: pa.DataType) -> Kind | None:
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_boolean(typ):
        return "flag"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "number"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    return None


def _describe(kind: Kind) -> str:
    return {"number": "a number", "flag": "a flag (true/false)", "text": "text"}[kind]


class Expression:
    """A parsed ``--where`` expression: :meth:`mask` evaluates it on a table."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tree = _Parser(text).parse()

    def columns(self) -> list[str]:
        """The column names the expression reads, in order of first use."""
        seen: list[str] = []

        def walk(n: _Node) -> None:
            if isinstance(n, _Column) and n.name not in seen:
                seen.append(n.name)
            for child in (getattr(n, "arg", None), getattr(n, "left", None), getattr(n, "right", None)):
                if isinstance(child, _Node):
                    walk(child)

        walk(self.tree)
        return seen

    def check(self, table_schema: pa.Schema) -> None:
        """Raise UserError for unknown columns or types that do not fit, before any work."""
        self._eval(self.tree, _Columns(table_schema, None), want="flag")

    def mask(self, table: pa.Table) -> np.ndarray:
        """The rows the expression keeps (unknown counts as not kept)."""
        v = self._eval(self.tree, _Columns(table.schema, table), want="flag")
        return np.asarray(v.data, bool) & v.known

    # Evaluation doubles as type checking: with no table (check), arrays are empty.
    def _eval(self, n: _Node, cols: _Columns, want: Kind | None = None) -> _Value:
        v = self._value(n, cols)
        if want is not None and v.kind != want:
            raise _fail(f"{self._where(n)} is {_describe(v.kind)}, not a condition; compare it "
                        "(e.g. yaw > 30) or test it with 'is null'")
        return v

    def _where(self, n: _Node) -> str:
        if isinstance(n, _Column):
            return f"column {n.name!r}"
        return f"the part at character {n.pos + 1}"

    def _value(self, n: _Node, cols: _Columns) -> _Value:
        size = cols.rows
        if isinstance(n, _Literal):
            if isinstance(n.value, bool):
                return _Value("flag", np.full(size, n.value), np.ones(size, bool))
            if isinstance(n.value, str):
                return _Value("text", np.full(size, n.value, dtype=object), np.ones(size, bool))
            return _Value("number", np.full(size, n.value), np.ones(size, bool))
        if isinstance(n, _Column):
            return cols.get(n.name)
        if isinstance(n, _IsNull):
            v = self._value(n.arg, cols)
            hit = v.known if n.negated else ~v.known
            return _Value("flag", hit, np.ones(size, bool))
        if isinstance(n, _Unary):
            if n.op == "not":
                v = self._eval(n.arg, cols, want="flag")
                return _Value("flag", ~v.data.astype(bool), v.known)
            v = self._number(n.arg, cols, "abs()" if n.op == "abs" else "'-'")
            data = np.abs(v.data) if n.op == "abs" else -v.data
            return _Value("number", data, v.known)
        assert isinstance(n, _Binary)
        if n.op in ("and", "or"):
            a, b = self._eval(n.left, cols, want="flag"), self._eval(n.right, cols, want="flag")
            ad, bd = a.data.astype(bool), b.data.astype(bool)
            if n.op == "and":  # false wins over unknown
                false = (a.known & ~ad) | (b.known & ~bd)
                known = false | (a.known & b.known)
                return _Value("flag", ad & bd & known, known)
            true = (a.known & ad) | (b.known & bd)  # true wins over unknown
            known = true | (a.known & b.known)
            return _Value("flag", true, known)
        if n.op in ("+", "-", "*", "/"):
            a = self._number(n.left, cols, f"'{n.op}'")
            b = self._number(n.right, cols, f"'{n.op}'")
            with np.errstate(all="ignore"):
                data = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[n.op](a.data, b.data)
            return _Value("number", data, a.known & b.known & np.isfinite(data))
        a, b = self._value(n.left, cols), self._value(n.right, cols)
        if a.kind != b.kind:
            raise _fail(f"cannot compare {_describe(a.kind)} with {_describe(b.kind)} at character {n.pos + 1}")
        if a.kind != "number" and n.op not in ("==", "!="):
            raise _fail(f"{n.op!r} at character {n.pos + 1} compares numbers; {_describe(a.kind)} takes == or !=")
        known = a.known & b.known
        if a.kind == "number":
            ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
                   "==": np.equal, "!=": np.not_equal}
            with np.errstate(invalid="ignore"):
                data = ops[n.op](a.data, b.data)
        else:
            eq = np.array([x == y for x, y in zip(a.data, b.data, strict=True)], bool)
            data = eq if n.op == "==" else ~eq
        return _Value("flag", np.asarray(data, bool) & known, known)

    def _number(self, n: _Node, cols: _Columns, op: str) -> _Value:
        v = self._value(n, cols)
        if v.kind != "number":
            raise _fail(f"{op} at character {n.pos + 1} needs a number, and {self._where(n)} is {_describe(v.kind)}")
        return v


class _Columns:
    """The table's columns as values, read once each (no table: typed empty arrays)."""

    def __init__(self, schema: pa.Schema, table: pa.Table | None) -> None:
        self.schema = schema
        self.table = table
        self.rows = table.num_rows if table is not None else 0
        self.cache: dict[str, _Value] = {}

    def get(self, name: str) -> _Value:
        if name in self.cache:
            return self.cache[name]
        if name not in self.schema.names:
            usable = [f.name for f in self.schema if _column_kind(f.type) is not None]
            raise _fail(f"unknown column {name!r} (columns: {', '.join(usable)})")
        kind = _column_kind(self.schema.field(name).type)
        if kind is None:
            raise _fail(f"column {name!r} holds {self.schema.field(name).type}, not a number, a flag or text")
        if self.table is None:
            dtype = {"number": np.float64, "flag": bool, "text": object}[kind]
            v = _Value(kind, np.zeros(0, dtype), np.zeros(0, bool))
        else:
            col = self.table[name]
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            known = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool) if col.null_count \
                else np.ones(len(col), bool)
            if kind == "number":
                data = np.asarray(col.to_numpy(zero_copy_only=False), np.float64)
                known &= ~np.isnan(data)
            elif kind == "flag":
                data = np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), bool)
            else:
                data = np.asarray(col.to_pylist(), dtype=object)
            v = _Value(kind, data, known)
        self.cache[name] = v
        return v


def parse_where(text: str) -> Expression:
    """Parse a ``--where`` expression (raises UserError with the position of a syntax error)."""
    if not isinstance(text, str):
        raise _fail(f"must be a string, not {type(text).__name__}")
    return Expression(text)
