"""The ``requires`` expression language: boolean expressions over probed capability names.

::

    expr = parse("capset.venus and param.host_visible and kernel.guest >= 6.14")
    expr.evaluate(snapshot.as_dict())   # -> bool
    expr.names                          # -> ("capset.venus", "param.host_visible", "kernel.guest")

Grammar (parsed by hand, never ``eval``)::

    expr    = and_ ("or" and_)*
    and_    = not_ ("and" not_)*
    not_    = "not" not_ | compare
    compare = operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
    operand = NAME | INT | VERSION | STRING | "(" expr ")"

NAME is dotted (``param.3d_features``), INT is decimal or ``0x`` hex, VERSION is dotted digits
(``6.14``), STRING is single- or double-quoted.  A name that was not probed is *absent*: false
on its own, and every comparison with it is false.  When either side of an ordering is a version
(or a string such as ``7.2.13+deb14-amd64`` compared with a number), both compare as versions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Union

__all__ = ["ABSENT", "CapExprError", "Expr", "Version", "parse", "truthy"]


class CapExprError(ValueError):
    """A malformed expression: names the expression and the position of the problem."""

    def __init__(self, expression: str, position: int, problem: str) -> None:
        self.expression = expression
        self.position = position
        self.problem = problem
        where = "end" if position >= len(expression) else f"{expression[position:position + 12]!r}"
        super().__init__(f"bad capability expression {expression!r}: {problem} at position "
                         f"{position} ({where})\n    {expression}\n    {' ' * position}^")


class _Absent:
    """The value of a name the probe did not find."""

    def __repr__(self) -> str:
        return "absent"

    def __bool__(self) -> bool:
        return False


ABSENT = _Absent()


@dataclass(frozen=True, order=True)
class Version:
    """A dotted version (``6.14``), compared component by component."""

    parts: tuple[int, ...]

    @classmethod
    def from_text(cls, text: str) -> "Version | None":
        """The leading dotted digits of ``text`` (``7.2.13+deb14`` -> 7.2.13), or None."""
        match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
        return cls(tuple(int(p) for p in match.group(1).split("."))) if match else None

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))

    def padded(self, length: int) -> tuple[int, ...]:
        return self.parts + (0,) * (length - len(self.parts))


Value = Union[bool, int, str, Version, _Absent]


def truthy(value: object) -> bool:
    """How a probed value reads on its own: absent, False, 0 and "" are false."""
    return bool(value)


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<version>\d+\.\d+(?:\.\d+)*)
  | (?P<int>0[xX][0-9a-fA-F]+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<string>"[^"]*"|'[^']*')
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<paren>[()])
""", re.VERBOSE)

_KEYWORDS = {"and", "or", "not"}


@dataclass(frozen=True)
class _Token:
    kind: str  # name, int, version, string, op, paren, keyword, end
    text: str
    pos: int


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise CapExprError(expression, pos, f"unexpected character {expression[pos]!r}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "name" and text in _KEYWORDS:
            kind = "keyword"
        if kind != "ws":
            tokens.append(_Token(kind, text, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(expression)))
    return tokens


# --- the syntax tree ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Name:
    name: str


@dataclass(frozen=True)
class _Literal:
    value: int | str | Version


@dataclass(frozen=True)
class _Not:
    operand: "_Node"


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "and" / "or"
    operands: tuple["_Node", ...]


@dataclass(frozen=True)
class _Compare:
    op: str
    left: "_Node"
    right: "_Node"


_Node = Union[_Name, _Literal, _Not, _BoolOp, _Compare]


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, token: _Token, problem: str) -> CapExprError:
        return CapExprError(self.expression, token.pos, problem)

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise self.error(self.peek(), "empty expression")
        node = self.or_()
        if self.peek().kind != "end":
            raise self.error(self.peek(), f"unexpected {self.peek().text!r}")
        return node

    def _chain(self, keyword: str, sub) -> _Node:
        operands = [sub()]
        while self.peek().kind == "keyword" and self.peek().text == keyword:
            self.take()
            operands.append(sub())
        return operands[0] if len(operands) == 1 else _BoolOp(keyword, tuple(operands))

    def or_(self) -> _Node:
        return self._chain("or", self.and_)

    def and_(self) -> _Node:
        return self._chain("and", self.not_)

    def not_(self) -> _Node:
        if self.peek().kind == "keyword" and self.peek().text == "not":
            self.take()
            return _Not(self.not_())
        return self.compare()

    def compare(self) -> _Node:
        left = self.operand()
        if self.peek().kind == "op":
            op = self.take().text
            right = self.operand()
            if self.peek().kind == "op":
                raise self.error(self.peek(), "chained comparisons are not supported")
            return _Compare(op, left, right)
        return left

    def operand(self) -> _Node:
        token = self.take()
        if token.kind == "name":
            return _Name(token.text)
        if token.kind == "int":
            return _Literal(int(token.text, 0))
        if token.kind == "version":
            return _Literal(Version(tuple(int(p) for p in token.text.split("."))))
        if token.kind == "string":
            return _Literal(token.text[1:-1])
        if token.kind == "paren" and token.text == "(":
            node = self.or_()
            close = self.take()
            if close.kind != "paren" or close.text != ")":
                raise self.error(close, "expected ')'")
            return node
        found = "end of expression" if token.kind == "end" else repr(token.text)
        raise self.error(token, f"expected a name, number, version, string or '(', found {found}")


def _names(node: _Node, out: list[str]) -> None:
    if isinstance(node, _Name):
        if node.name not in out:
            out.append(node.name)
    elif isinstance(node, _Not):
        _names(node.operand, out)
    elif isinstance(node, _BoolOp):
        for operand in node.operands:
            _names(operand, out)
    elif isinstance(node, _Compare):
        _names(node.left, out)
        _names(node.right, out)


def _as_version(value: object) -> Version | None:
    if isinstance(value, Version):
        return value
    if isinstance(value, bool):
        return Version((int(value),))
    if isinstance(value, int):
        return Version((value,))
    if isinstance(value, str):
        return Version.from_text(value)
    return None


_ORDER = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
          ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
          "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _compare(op: str, left: object, right: object) -> bool:
    if left is ABSENT or right is ABSENT:
        return False
    numeric = (bool, int)
    if isinstance(left, numeric) and isinstance(right, numeric):
        return _ORDER[op](int(left), int(right))
    if isinstance(left, str) and isinstance(right, str) and op in ("==", "!="):
        return _ORDER[op](left, right)
    a, b = _as_version(left), _as_version(right)
    if a is None or b is None:
        return op == "!="  # incomparable values are simply unequal
    length = max(len(a.parts), len(b.parts))
    return _ORDER[op](a.padded(length), b.padded(length))


def _evaluate(node: _Node, values: Mapping[str, object]) -> object:
    if isinstance(node, _Name):
        return values.get(node.name, ABSENT)
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Not):
        return not truthy(_evaluate(node.operand, values))
    if isinstance(node, _BoolOp):
        results = (truthy(_evaluate(o, values)) for o in node.operands)
        return all(results) if node.op == "and" else any(results)
    return _compare(node.op, _evaluate(node.left, values), _evaluate(node.right, values))


@dataclass(frozen=True)
class Expr:
    """A parsed expression; :meth:`evaluate` against a flat ``name -> value`` mapping."""

    source: str
    _root: _Node

    @property
    def names(self) -> tuple[str, ...]:
        """The capability names it refers to, in order of appearance."""
        out: list[str] = []
        _names(self._root, out)
        return tuple(out)

    def evaluate(self, values: Mapping[str, object]) -> bool:
        """Whether the expression holds for ``values`` (missing names are absent)."""
        return truthy(_evaluate(self._root, values))

    def __str__(self) -> str:
        return self.source


def parse(expression: str) -> Expr:
    """Parse ``expression``; raises :class:`CapExprError` naming the position of a mistake."""
    if not isinstance(expression, str):
        raise TypeError(f"a capability expression is a string, not {type(expression).__name__}")
    return Expr(expression, _Parser(expression).parse())
