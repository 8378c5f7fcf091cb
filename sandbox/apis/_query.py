"""The SOQL and SuiteQL subsets the simulators answer, parsed into one small query model.

SOQL:     SELECT f1, f2 FROM Object [WHERE cond [AND cond ...]] [ORDER BY f [ASC|DESC], ...] [LIMIT n]
          literals: unquoted datetimes (2024-05-01T00:00:00Z, ...+00:00, ...+0000), dates
          (2024-05-01), 'strings', numbers, true/false/null; IN ('a', 'b').
SuiteQL:  SELECT c1, TO_CHAR(c2, 'YYYY-MM-DD HH24:MI:SS') AS c2s, * FROM table
          [WHERE cond [AND cond ...]] [ORDER BY c [ASC|DESC], ...]
          literals: 'strings', numbers, TO_TIMESTAMP('...', 'fmt'), TO_DATE('...', 'fmt'), IN (...).
Operators: = != <> < <= > >= IN, NOT IN. Conditions are joined by AND only (OR is refused with
the vendor's malformed-query error rather than answered wrongly).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl


class QueryError(ValueError):
    """A query outside the supported subset or naming unknown objects or fields."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SelectItem:
    """A selected column: `column` from the table, rendered as `alias`, optionally via TO_CHAR."""

    column: str
    alias: str
    to_char: str | None = None


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: Any


@dataclass(frozen=True)
class Query:
    items: tuple[SelectItem, ...]
    table: str
    where: tuple[Condition, ...]
    order_by: tuple[tuple[str, bool], ...]  # (column, descending)
    limit: int | None = None
    star: bool = False


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"unexpected token at position {pos}: {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group()))
    return out


class _Parser:
    def __init__(self, text: str, dialect: str):
        self.toks = _tokenize(text)
        self.i = 0
        self.dialect = dialect

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError("unexpected end of query")
        self.i += 1
        return tok

    def keyword(self, *words: str) -> bool:
        """Consume the keyword sequence if it comes next."""
        for k, word in enumerate(words):
            j = self.i + k
            if j >= len(self.toks) or self.toks[j].text.upper() != word:
                return False
        self.i += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.keyword(*words):
            got = self.peek()
            raise QueryError(f"expected {' '.join(words)}, got {got.text if got else 'end'!r}")

    def punct(self, ch: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == ch:
            self.i += 1
            return True
        return False

    def name(self) -> str:
        tok = self.next()
        if tok.kind != "name":
            raise QueryError(f"expected a name, got {tok.text!r}")
        return tok.text

    def string(self) -> str:
        tok = self.next()
        if tok.kind != "string":
            raise QueryError(f"expected a quoted string, got {tok.text!r}")
        return tok.text[1:-1].replace("''", "'").replace("\\'", "'")

    # --- grammar -------------------------------------------------------------------------------

    def query(self) -> Query:
        self.expect("SELECT")
        items: list[SelectItem] = []
        star = False
        while True:
            if self.punct("*"):
                star = True
            else:
                items.append(self.select_item(len(items) + 1))
            if not self.punct(","):
                break
        self.expect("FROM")
        table = self.name()
        where: list[Condition] = []
        if self.keyword("WHERE"):
            where.append(self.condition())
            while self.keyword("AND"):
                where.append(self.condition())
            tok = self.peek()
            if tok is not None and tok.text.upper() == "OR":
                raise QueryError("OR is not supported by this simulator")
        order: list[tuple[str, bool]] = []
        if self.keyword("ORDER", "BY"):
            while True:
                col = self.name()
                desc = False
                if self.keyword("DESC"):
                    desc = True
                else:
                    self.keyword("ASC")
                if self.keyword("NULLS"):
                    self.next()
                order.append((col, desc))
                if not self.punct(","):
                    break
        limit = None
        if self.keyword("LIMIT"):
            tok = self.next()
            if tok.kind != "number":
                raise QueryError("LIMIT takes a number")
            limit = int(tok.text)
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek().text!r} after the query")  # type: ignore[union-attr]
        return Query(tuple(items), table, tuple(where), tuple(order), limit, star)

    def select_item(self, position: int) -> SelectItem:
        if self.dialect == "suiteql" and self.keyword("TO_CHAR"):
            if not self.punct("("):
                raise QueryError("TO_CHAR needs parentheses")
            col = self.name()
            if not self.punct(","):
                raise QueryError("TO_CHAR takes a column and a format")
            fmt = self.string()
            if not self.punct(")"):
                raise QueryError("TO_CHAR: missing ')'")
            alias = f"expr{position}"
            if self.keyword("AS"):
                alias = self.name()
            return SelectItem(col, alias, fmt)
        col = self.name()
        alias = col
        if self.dialect == "suiteql" and self.keyword("AS"):
            alias = self.name()
        return SelectItem(col, alias)

    def condition(self) -> Condition:
        col = self.name()
        if self.keyword("NOT", "IN"):
            return Condition(col, "not in", self.value_list())
        if self.keyword("IN"):
            return Condition(col, "in", self.value_list())
        if self.keyword("IS", "NOT", "NULL"):
            return Condition(col, "!=", None)
        if self.keyword("IS", "NULL"):
            return Condition(col, "=", None)
        tok = self.next()
        if tok.kind != "op":
            raise QueryError(f"expected an operator after {col}, got {tok.text!r}")
        op = "!=" if tok.text == "<>" else tok.text
        return Condition(col, op, self.value())

    def value_list(self) -> list[Any]:
        if not self.punct("("):
            raise QueryError("IN needs a parenthesised list")
        values = [self.value()]
        while self.punct(","):
            values.append(self.value())
        if not self.punct(")"):
            raise QueryError("IN list: missing ')'")
        return values

    def value(self) -> Any:
        tok = self.next()
        if tok.kind == "string":
            self.i -= 1
            return self.string()
        if tok.kind == "number":
            return Decimal(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "datetime" and self.dialect == "soql":
            return parse_soql_datetime(tok.text)
        if tok.kind == "date" and self.dialect == "soql":
            return dt.date.fromisoformat(tok.text)
        if tok.kind == "name":
            word = tok.text.upper()
            if word in ("TRUE", "FALSE"):
                return word == "TRUE"
            if word == "NULL":
                return None
            if self.dialect == "suiteql" and word in ("TO_TIMESTAMP", "TO_DATE"):
                if not self.punct("("):
                    raise QueryError(f"{word} needs parentheses")
                text = self.string()
                fmt = "YYYY-MM-DD HH24:MI:SS" if word == "TO_TIMESTAMP" else "YYYY-MM-DD"
                if self.punct(","):
                    fmt = self.string()
                if not self.punct(")"):
                    raise QueryError(f"{word}: missing ')'")
                try:
                    parsed = dt.datetime.strptime(text, oracle_to_strftime(fmt))
                except ValueError as exc:
                    raise QueryError(f"{word}: {text!r} does not match {fmt!r}") from exc
                # The account's time zone is UTC in the sandbox.
                parsed = parsed.replace(tzinfo=dt.UTC)
                return parsed if word == "TO_TIMESTAMP" else parsed.date()
        raise QueryError(f"unexpected value {tok.text!r}")


def parse_soql_datetime(text: str) -> dt.datetime:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


_ORACLE = [
    ("YYYY", "%Y"),
    ("HH24", "%H"),
    ("HH12", "%I"),
    ("HH", "%I"),
    ("MI", "%M"),
    ("SS", "%S"),
    ("MM", "%m"),
    ("DD", "%d"),
    ("AM", "%p"),
    ("PM", "%p"),
]


def oracle_to_strftime(fmt: str) -> str:
    """Translate the Oracle date format elements SuiteQL users write into strftime codes."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt[i] == '"':
            end = fmt.index('"', i + 1)
            out.append(fmt[i + 1 : end].replace("%", "%%"))
            i = end + 1
            continue
        for token, code in _ORACLE:
            if fmt.upper().startswith(token, i):
                out.append(code)
                i += len(token)
                break
        else:
            out.append(fmt[i].replace("%", "%%"))
            i += 1
    return "".join(out)


def parse_soql(text: str) -> Query:
    return _Parser(text, "soql").query()


def parse_suiteql(text: str) -> Query:
    return _Parser(text, "suiteql").query()


def resolve_column(name: str, columns: list[str], case_insensitive: bool = True) -> str:
    """The frame column a query names (SOQL and SuiteQL names are case-insensitive)."""
    if name in columns:
        return name
    if case_insensitive:
        lowered = {c.lower(): c for c in columns}
        if name.lower() in lowered:
            return lowered[name.lower()]
    raise QueryError(f"No such column '{name}'", code="INVALID_FIELD")


def _literal(value: Any, dtype: pl.DataType) -> Any:
    """Coerce a query literal to the column's type so comparisons are typed, not stringly."""
    if value is None:
        return None
    try:
        if isinstance(dtype, pl.Datetime):
            if isinstance(value, dt.datetime):
                return value
            if isinstance(value, dt.date):
                return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        if isinstance(dtype, pl.Date):
            if isinstance(value, dt.datetime):
                return value.date()
            if isinstance(value, dt.date):
                return value
            if isinstance(value, str):
                return dt.date.fromisoformat(value)
        if isinstance(dtype, pl.Decimal | pl.Float64 | pl.Float32):
            return Decimal(str(value))
        if dtype.is_integer():
            return int(value)
        if isinstance(dtype, pl.Boolean):
            if isinstance(value, str):
                return value.lower() in ("t", "true")
            return bool(value)
        if isinstance(dtype, pl.String):
            if isinstance(value, bool):
                return "T" if value else "F"
            return str(value)
    except (ValueError, ArithmeticError) as exc:
        raise QueryError(f"value {value!r} does not fit the column type {dtype}") from exc
    raise QueryError(f"value {value!r} cannot be compared with a {dtype} column")


def condition_expr(cond: Condition, column: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(column)
    if cond.op in ("in", "not in"):
        values = [_literal(v, dtype) for v in cond.value]
        expr = col.is_in(pl.Series(values, dtype=dtype).implode())
        return ~expr if cond.op == "not in" else expr
    if cond.value is None:
        if cond.op == "=":
            return col.is_null()
        if cond.op == "!=":
            return col.is_not_null()
        raise QueryError("null only compares with = and !=")
    lit = pl.lit(_literal(cond.value, dtype), dtype=dtype)
    return {
        "=": col == lit,
        "!=": col != lit,
        "<": col < lit,
        "<=": col <= lit,
        ">": col > lit,
        ">=": col >= lit,
    }[cond.op]


def filter_frame(frame: pl.DataFrame, query: Query, case_insensitive: bool = True) -> pl.DataFrame:
    """Apply the WHERE clause of `query` to `frame`."""
    columns = frame.columns
    exprs = []
    for cond in query.where:
        column = resolve_column(cond.column, columns, case_insensitive)
        exprs.append(condition_expr(cond, column, frame.schema[column]))
    return frame.filter(*exprs) if exprs else frame


def sort_key(frame: pl.DataFrame, column: str, numeric_ids: bool) -> pl.Expr:
    """Numeric ids ("9" < "10") sort as numbers, as NetSuite and Kantata internal ids do."""
    if numeric_ids and column.lower() == "id" and frame.schema[column] == pl.String:
        return pl.col(column).cast(pl.Int64, strict=False)
    return pl.col(column)


def sort_frame(
    frame: pl.DataFrame, query: Query, case_insensitive: bool = True, numeric_ids: bool = False
) -> pl.DataFrame:
    if not query.order_by:
        return frame
    cols = [resolve_column(c, frame.columns, case_insensitive) for c, _ in query.order_by]
    keys = [sort_key(frame, c, numeric_ids) for c in cols]
    return frame.sort(keys, descending=[d for _, d in query.order_by], nulls_last=True)
