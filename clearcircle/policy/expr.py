"""The condition language that policy staff write in rule files.

Rule packs are YAML, edited by people who are not engineers, and they are
evaluated on every event the platform produces. So the language has to be
three things at once:

* familiar - it is a small subset of Python expressions
  (``any_of(text.categories, ["induced_share"]) and account.age_days < 7``);
* safe - a rule file must never be able to run code, read files or loop
  forever, so we parse with :mod:`ast`, accept only a whitelist of node types
  and call only our own helper functions;
* fast - each condition is compiled once, at pack load, into a real Python
  function; evaluating it costs a few dict lookups and helper calls
  (about a microsecond).

Missing data is the normal case (not every signal exists for every event), so
``None`` is handled without exceptions: comparisons involving ``None`` are
False, membership tests are False, ``len(None)`` is 0 and arithmetic with
``None`` gives ``None``.  To test for a missing value explicitly write
``x == None`` (or ``x == null``), which compiles to an identity check.
"""

from __future__ import annotations

import ast
import difflib
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_SOURCE_LENGTH",
    "Condition",
    "ConditionRuntimeError",
    "ExprError",
    "FUNCTIONS",
    "compile_condition",
]

MAX_SOURCE_LENGTH = 2000
MAX_DEPTH = 50


class ExprError(ValueError):
    """A condition that cannot be compiled.

    Carries the column and an optional hint separately so the pack loader can
    point at the exact spot in the rule file and show the did-you-mean text.
    """

    message: str
    col: int | None
    hint: str | None

    def __init__(self, message: str, col: int | None = None, hint: str | None = None) -> None:
        self.message = message
        self.col = col
        self.hint = hint
        text = message if col is None else f"{message} (column {col})"
        if hint:
            text = f"{text}; {hint}"
        super().__init__(text)


class ConditionRuntimeError(RuntimeError):
    """A compiled condition failed on concrete values (e.g. a str compared with an int).

    Static checks catch most type mistakes at load time, but signals declared
    with loose types can still carry surprising values; the engine catches
    this per rule instead of crashing the whole event.
    """


# --------------------------------------------------------------------------
# Runtime helpers. The compiled code calls only these (plus the value mapping).
# They implement the None semantics and refuse anything that could blow up
# (e.g. ``"a" * 10**9`` is rejected because arithmetic is numbers-only).
# --------------------------------------------------------------------------

_NUMBER_TYPES = (int, float)


def _num(a: Any, b: Any, op: str) -> None:
    if not isinstance(a, _NUMBER_TYPES) or not isinstance(b, _NUMBER_TYPES):
        raise TypeError(f"unsupported operand types for {op}: {type(a).__name__!r} and {type(b).__name__!r}")


def _add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    _num(a, b, "+")
    return a + b


def _sub(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    _num(a, b, "-")
    return a - b


def _mul(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    _num(a, b, "*")
    return a * b


def _div(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    _num(a, b, "/")
    # A ratio over an empty denominator is "no data", not a crash.
    if b == 0:
        return None
    return a / b


def _neg(a: Any) -> Any:
    if a is None:
        return None
    if not isinstance(a, _NUMBER_TYPES):
        raise TypeError(f"bad operand type for unary -: {type(a).__name__!r}")
    return -a


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if a == b:
        return True
    # A list literal is stored as a tuple; compare sequences by their items.
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    # Python says "abc" == 3 is just False; for rules that is almost always a
    # mistyped signal, so surface it.
    if isinstance(a, str) is not isinstance(b, str):
        raise TypeError(f"cannot compare {type(a).__name__!r} with {type(b).__name__!r}")
    return False


def _ne(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    return not _eq(a, b)


def _lt(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a < b


def _le(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a <= b


def _gt(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a > b


def _ge(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a >= b


def _in(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a in b


def _not_in(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a not in b


def _iterable(x: Any, fn: str) -> Any:
    # A str is iterable, but any_of("spam", ...) would compare characters.
    if isinstance(x, str):
        raise TypeError(f"{fn}() needs a list, got a string")
    return x


def _any_of(xs: Any, wanted: frozenset[Any]) -> bool:
    if xs is None:
        return False
    return not wanted.isdisjoint(_iterable(xs, "any_of"))


def _all_of(xs: Any, wanted: frozenset[Any]) -> bool:
    if xs is None:
        return False
    return wanted.issubset(_iterable(xs, "all_of"))


def _len(x: Any) -> int:
    return 0 if x is None else len(x)


def _minmax(fn: Callable[..., Any], name: str, args: tuple[Any, ...]) -> Any:
    if len(args) == 1:
        xs = args[0]
        if xs is None:
            return None
        items = list(_iterable(xs, name))
        # The min of nothing is "no data", like a missing signal.
        return fn(items) if items else None
    if any(a is None for a in args):
        return None
    return fn(args)


def _min(*args: Any) -> Any:
    return _minmax(min, "min", args)


def _max(*args: Any) -> Any:
    return _minmax(max, "max", args)


def _abs(x: Any) -> Any:
    if x is None:
        return None
    if not isinstance(x, _NUMBER_TYPES):
        raise TypeError(f"bad operand type for abs(): {type(x).__name__!r}")
    return abs(x)


def _contains(s: Any, sub: str) -> bool:
    if s is None:
        return False
    if not isinstance(s, str):
        raise TypeError(f"contains() needs a string, got {type(s).__name__!r}")
    return sub in s


_HELPERS: dict[str, Callable[..., Any]] = {
    "_add": _add,
    "_sub": _sub,
    "_mul": _mul,
    "_div": _div,
    "_neg": _neg,
    "_eq": _eq,
    "_ne": _ne,
    "_lt": _lt,
    "_le": _le,
    "_gt": _gt,
    "_ge": _ge,
    "_in": _in,
    "_not_in": _not_in,
    "_any_of": _any_of,
    "_all_of": _all_of,
    "_len": _len,
    "_min": _min,
    "_max": _max,
    "_abs": _abs,
    "_contains": _contains,
}

# Public function name -> helper name. Keep in sync with _Compiler._call.
FUNCTIONS: dict[str, str] = {
    "any_of": "_any_of",
    "all_of": "_all_of",
    "len": "_len",
    "min": "_min",
    "max": "_max",
    "abs": "_abs",
    "contains": "_contains",
}

# Errors that a helper or the value mapping can raise on bad data.
_RUNTIME_ERRORS = (TypeError, ValueError, KeyError, OverflowError)


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: the source for messages, plus what it references.

    ``names`` lets the engine compute only the signals a pack needs;
    ``strings`` lets it pick evidence (e.g. which category triggered a rule).
    """

    source: str
    names: frozenset[str]
    strings: frozenset[str]
    _fn: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        """Evaluate against one event's signals.

        ``values`` may be lazy: only the names actually needed are read, and
        ``and``/``or`` short-circuit as in Python.
        """
        try:
            return bool(self._fn(values))
        except _RUNTIME_ERRORS as exc:
            raise ConditionRuntimeError(f"condition {self.source!r} failed: {exc}") from exc


# --------------------------------------------------------------------------
# Compiler
# --------------------------------------------------------------------------

# Static type tags. A signal value may always be None at run time, so "none"
# only appears for the literal None.
_NUM, _BOOL, _STR, _LIST, _NONE = "number", "bool", "string", "list", "none"
_ANY = frozenset({_NUM, _BOOL, _STR, _LIST, _NONE})
_NUMERIC = frozenset({_NUM, _BOOL})
_NOT_CONDITIONS = frozenset({_NUM, _STR, _LIST})

_CONST_ALIASES: dict[str, Any] = {"true": True, "false": False, "null": None}

_COMPARE_HELPERS: dict[type[ast.cmpop], str] = {
    ast.Eq: "_eq",
    ast.NotEq: "_ne",
    ast.Lt: "_lt",
    ast.LtE: "_le",
    ast.Gt: "_gt",
    ast.GtE: "_ge",
    ast.In: "_in",
    ast.NotIn: "_not_in",
}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)

_BINOP_HELPERS: dict[type[ast.operator], str] = {
    ast.Add: "_add",
    ast.Sub: "_sub",
    ast.Mult: "_mul",
    ast.Div: "_div",
}
_OP_SYMBOLS: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.UAdd: "unary +",
    ast.Invert: "~",
}

# Friendly names for refused constructs.
_REFUSED: dict[type[ast.AST], str] = {
    ast.Subscript: "subscripts (x[...])",
    ast.Slice: "slices",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.IfExp: "conditional expressions (x if c else y)",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.Starred: "star arguments",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_NEWLINE = re.compile(r"\r\n|\r|\n")


def _tags_for(declared: Any) -> frozenset[str]:
    """Map a declared signal type (or tuple of types) to static type tags."""
    types = declared if isinstance(declared, tuple) else (declared,)
    tags: set[str] = set()
    for t in types:
        t = typing.get_origin(t) or t  # list[str] -> list
        if t is type(None):
            tags.add(_NONE)
        elif not isinstance(t, type):
            return _ANY
        elif issubclass(t, bool):
            tags.add(_BOOL)
        elif issubclass(t, int | float):
            tags.add(_NUM)
        elif issubclass(t, str):
            tags.add(_STR)
        elif issubclass(t, list | tuple | set | frozenset):
            tags.add(_LIST)
        else:
            return _ANY
    return frozenset(tags) or _ANY


def _describe_tags(tags: frozenset[str]) -> str:
    return "value of any type" if tags == _ANY else " or ".join(sorted(tags))


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if not matches:
        # "text" alone: offer the signals under that prefix.
        matches = sorted(c for c in choices if c.startswith(word + "."))[:3]
    if not matches:
        return None
    return "did you mean " + " or ".join(repr(m) for m in matches) + "?"


@dataclass
class _Typed:
    """A transformed node with its static types and a description for errors."""

    node: ast.expr
    tags: frozenset[str]
    what: str
    signal: str | None = None


class _Compiler:
    """Validates the parsed AST and rewrites it into calls of the helpers."""

    def __init__(self, text: str, lead: int, signals: Mapping[str, Any]) -> None:
        self.text = text  # the stripped source that was parsed
        self.lead = lead  # characters stripped from the front of the original
        self.signals = signals
        self.names: set[str] = set()
        self.strings: set[str] = set()
        self.temps = 0
        self.line_starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]

    # -- errors -------------------------------------------------------------

    def col(self, lineno: int | None, offset: int | None, *, byte_offset: bool) -> int | None:
        """Convert a (line, offset) from ast/SyntaxError to a column in the original source."""
        if lineno is None or offset is None:
            return None
        lineno = min(max(lineno, 1), len(self.line_starts))
        start = self.line_starts[lineno - 1]
        if byte_offset:  # ast col_offset counts UTF-8 bytes, not characters
            end = self.line_starts[lineno] if lineno < len(self.line_starts) else len(self.text)
            offset = len(self.text[start:end].encode("utf-8")[:offset].decode("utf-8", "ignore"))
        return self.lead + min(start + max(offset, 0), len(self.text))

    def error(self, message: str, node: ast.AST, hint: str | None = None) -> ExprError:
        lineno = getattr(node, "lineno", None)
        return ExprError(message, self.col(lineno, getattr(node, "col_offset", None), byte_offset=True), hint)

    # -- entry --------------------------------------------------------------

    def compile(self, tree: ast.Expression) -> Callable[[Mapping[str, Any]], Any]:
        self.check_depth(tree.body)
        body = self.condition(tree.body)
        lam = ast.Lambda(
            args=ast.arguments(
                posonlyargs=[], args=[ast.arg(arg="__v")], kwonlyargs=[], kw_defaults=[], defaults=[]
            ),
            body=body.node,
        )
        code = compile(ast.fix_missing_locations(ast.Expression(body=lam)), "<condition>", "eval")
        # No builtins: the generated code can reach only the helpers.
        fn: Callable[[Mapping[str, Any]], Any] = eval(code, {"__builtins__": {}, **_HELPERS})
        return fn

    def check_depth(self, root: ast.expr) -> None:
        # Iterative, so a pathological input cannot hit Python's recursion limit
        # before we refuse it; after this the recursive transform is safe.
        skip = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)
        stack: list[tuple[ast.AST, int]] = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.error(f"expression is nested too deeply (limit {MAX_DEPTH} levels)", node)
            stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node) if not isinstance(c, skip))

    # -- node kinds ---------------------------------------------------------

    def condition(self, node: ast.expr) -> _Typed:
        """Transform a node used as a truth value; numbers, strings and lists are refused."""
        typed = self.expr(node)
        if typed.tags <= _NOT_CONDITIONS:
            hint = None
            if typed.signal:
                example = {
                    _NUM: f"{typed.signal} > 0",
                    _STR: f'{typed.signal} != ""',
                    _LIST: f"len({typed.signal}) > 0",
                }.get(next(iter(sorted(typed.tags))), f"{typed.signal} == ...")
                hint = f"compare it explicitly, e.g. `{example}`"
            raise self.error(f"{typed.what} is a {_describe_tags(typed.tags)}, not a condition", node, hint)
        return typed

    def expr(self, node: ast.expr) -> _Typed:
        if isinstance(node, ast.BoolOp):
            values = [self.condition(v) for v in node.values]
            tags = frozenset().union(*(v.tags for v in values))
            return _Typed(ast.BoolOp(op=node.op, values=[v.node for v in values]), tags, "this condition")
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.List | ast.Tuple):
            return self.literal_list(node)
        if isinstance(node, ast.Name | ast.Attribute):
            return self.reference(node)
        what = _REFUSED.get(type(node), type(node).__name__)
        raise self.error(f"not allowed in conditions: {what}", node)

    def constant(self, node: ast.Constant) -> _Typed:
        value = node.value
        if isinstance(value, bool):
            tags = frozenset({_BOOL})
        elif value is None:
            tags = frozenset({_NONE})
        elif isinstance(value, int | float):
            tags = frozenset({_NUM})
        elif isinstance(value, str):
            tags = frozenset({_STR})
            self.strings.add(value)
        else:
            kind = "..." if value is Ellipsis else type(value).__name__
            raise self.error(f"not allowed in conditions: {kind} constants", node)
        return _Typed(ast.Constant(value=value), tags, repr(value))

    def literal_list(self, node: ast.List | ast.Tuple) -> _Typed:
        items = []
        for elt in node.elts:
            value = self.literal_value(elt)
            if isinstance(value, str):
                self.strings.add(value)
            items.append(value)
        value = tuple(items)  # immutable, and a single constant in the code object
        return _Typed(ast.Constant(value=value), frozenset({_LIST}), "a list")

    def literal_value(self, node: ast.expr) -> Any:
        """The value of a constant list element (constants, aliases and negative numbers)."""
        if isinstance(node, ast.Name) and node.id in _CONST_ALIASES:
            return _CONST_ALIASES[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = node.operand
            if isinstance(inner, ast.Constant) and type(inner.value) in (int, float):
                return -inner.value
        if isinstance(node, ast.Constant):
            return self.constant(node).node.value  # type: ignore[attr-defined]
        raise self.error("list literals may contain only constants", node)

    def reference(self, node: ast.Name | ast.Attribute) -> _Typed:
        if isinstance(node, ast.Name) and node.id in _CONST_ALIASES:
            return self.constant(ast.copy_location(ast.Constant(value=_CONST_ALIASES[node.id]), node))
        name = self.dotted(node)
        if isinstance(node, ast.Name) and name in FUNCTIONS:
            raise self.error(f"function {name!r} must be called, e.g. {name}(...)", node)
        if name not in self.signals:
            hint = _did_you_mean(name, sorted(self.signals))
            raise self.error(f"unknown signal {name!r}", node, hint)
        self.names.add(name)
        tags = _tags_for(self.signals[name])
        lookup = ast.Subscript(value=ast.Name(id="__v", ctx=ast.Load()), slice=ast.Constant(value=name))
        lookup.ctx = ast.Load()
        return _Typed(lookup, tags, f"signal {name!r}", signal=name)

    def dotted(self, node: ast.expr) -> str:
        """The dotted name of a Name/Attribute chain, refusing private names and other bases."""
        parts: list[str] = []
        cur = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name):
            parts.append(cur.id)
        for part in parts:
            if part.startswith("_"):
                raise self.error(f"names starting with '_' are not allowed ({part!r})", node)
        if not isinstance(cur, ast.Name):
            raise self.error("attribute access is only allowed in signal names (like text.categories)", node)
        return ".".join(reversed(parts))

    def unary(self, node: ast.UnaryOp) -> _Typed:
        if isinstance(node.op, ast.Not):
            operand = self.condition(node.operand)
            return _Typed(
                ast.UnaryOp(op=ast.Not(), operand=operand.node), frozenset({_BOOL}), "this condition"
            )
        if isinstance(node.op, ast.USub):
            operand = self.expr(node.operand)
            self.require_numeric(operand, "unary -", node.operand)
            if isinstance(operand.node, ast.Constant) and isinstance(operand.node.value, int | float):
                # fold -3 at compile time
                value = -operand.node.value
                return _Typed(ast.Constant(value=value), frozenset({_NUM}), repr(value))
            return _Typed(self.helper("_neg", operand.node), frozenset({_NUM}), "this expression")
        symbol = _OP_SYMBOLS.get(type(node.op), type(node.op).__name__)
        raise self.error(f"operator {symbol} is not allowed in conditions", node)

    def binop(self, node: ast.BinOp) -> _Typed:
        helper = _BINOP_HELPERS.get(type(node.op))
        if helper is None:
            symbol = _OP_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise self.error(f"operator {symbol} is not allowed in conditions (use + - * /)", node)
        left, right = self.expr(node.left), self.expr(node.right)
        symbol = {"_add": "+", "_sub": "-", "_mul": "*", "_div": "/"}[helper]
        self.require_numeric(left, symbol, node.left)
        self.require_numeric(right, symbol, node.right)
        return _Typed(self.helper(helper, left.node, right.node), frozenset({_NUM}), "this arithmetic")

    def require_numeric(self, typed: _Typed, op: str, node: ast.expr) -> None:
        if not typed.tags & (_NUMERIC | {_NONE}):
            raise self.error(f"{op} needs numbers, but {typed.what} is a {_describe_tags(typed.tags)}", node)

    def compare(self, node: ast.Compare) -> _Typed:
        parts: list[ast.expr] = []
        left_src = node.left
        left = self.expr(node.left)
        last = len(node.ops) - 1
        for i, (op, right_src) in enumerate(zip(node.ops, node.comparators, strict=True)):
            if isinstance(op, ast.Is | ast.IsNot):
                hint = "use `x == None` / `x != None` to test for a missing value"
                raise self.error("'is' / 'is not' are not allowed in conditions", node, hint)
            right = self.expr(right_src)
            self.check_compare(op, left, right, left_src, right_src, node)
            right_node = right.node
            following = right
            if i < last and not isinstance(right.node, ast.Constant):
                # Chained a < b < c: evaluate b once and reuse it.
                tmp = f"__t{self.temps}"
                self.temps += 1
                right_node = ast.NamedExpr(target=ast.Name(id=tmp, ctx=ast.Store()), value=right.node)
                following = _Typed(ast.Name(id=tmp, ctx=ast.Load()), right.tags, right.what, right.signal)
            parts.append(self.pair(op, left.node, right_node, left_src, right_src))
            left, left_src = following, right_src
        result = parts[0] if len(parts) == 1 else ast.BoolOp(op=ast.And(), values=parts)
        return _Typed(result, frozenset({_BOOL}), "this comparison")

    def pair(
        self, op: ast.cmpop, left: ast.expr, right: ast.expr, lsrc: ast.expr, rsrc: ast.expr
    ) -> ast.expr:
        """One comparison; `x == None` becomes an identity test so missing values can be matched."""
        if isinstance(op, ast.Eq | ast.NotEq) and (_is_none(lsrc) or _is_none(rsrc)):
            other = right if _is_none(lsrc) else left
            ident: ast.cmpop = ast.Is() if isinstance(op, ast.Eq) else ast.IsNot()
            return ast.Compare(left=other, ops=[ident], comparators=[ast.Constant(value=None)])
        return self.helper(_COMPARE_HELPERS[type(op)], left, right)

    def check_compare(
        self, op: ast.cmpop, left: _Typed, right: _Typed, lsrc: ast.expr, rsrc: ast.expr, node: ast.expr
    ) -> None:
        """Refuse comparisons that can never work, e.g. a number signal with a string."""
        if isinstance(op, ast.In | ast.NotIn):
            if _is_none(rsrc) or not right.tags & {_STR, _LIST, _NONE}:
                raise self.error(
                    f"'in' needs a list or string on the right, but {right.what} is a "
                    f"{_describe_tags(right.tags)}",
                    rsrc,
                )
            if right.tags == {_STR} and not left.tags & {_STR, _NONE}:
                raise self.error(
                    f"'in' on a string needs a string on the left, but {left.what} is a "
                    f"{_describe_tags(left.tags)}",
                    lsrc,
                )
            return
        if _is_none(lsrc) or _is_none(rsrc):
            if isinstance(op, _ORDERING):
                hint = "use `x == None` to test for a missing value"
                raise self.error("cannot order against None", node, hint)
            return
        if not _comparable(left.tags, right.tags, isinstance(op, ast.Eq | ast.NotEq)):
            hint = None
            if isinstance(op, ast.Eq | ast.NotEq) and {_LIST, _STR} <= left.tags | right.tags:
                hint = "use `in` or any_of() to test list membership"
            raise self.error(
                f"cannot compare {left.what} ({_describe_tags(left.tags)}) "
                f"with {right.what} ({_describe_tags(right.tags)})",
                node,
                hint,
            )

    def call(self, node: ast.Call) -> _Typed:
        func = node.func
        if not isinstance(func, ast.Name | ast.Attribute):
            raise self.error("only the built-in condition functions can be called", node)
        name = self.dotted(func)
        if name not in FUNCTIONS:
            if isinstance(func, ast.Attribute) and name.rpartition(".")[0] in self.signals:
                raise self.error("method calls are not allowed in conditions", func)
            if name in self.signals:
                raise self.error(f"{name!r} is a signal, not a function", func)
            hint = _did_you_mean(name, sorted(FUNCTIONS))
            raise self.error(f"unknown function {name!r}", func, hint)
        for kw in node.keywords:
            what = "**keyword arguments" if kw.arg is None else "keyword arguments"
            raise self.error(f"{what} are not allowed ({name}() takes positional arguments)", kw)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error("star arguments are not allowed", arg)
        args = node.args
        helper = FUNCTIONS[name]

        def arity(lo: int, hi: int | None) -> None:
            if len(args) < lo or (hi is not None and len(args) > hi):
                want = str(lo) if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
                raise self.error(f"{name}() takes {want} argument(s), got {len(args)}", node)

        if name in ("any_of", "all_of"):
            arity(2, 2)
            seq = self.expr(args[0])
            self.require(seq, {_LIST}, f"{name}() needs a list signal", args[0])
            if not isinstance(args[1], ast.List | ast.Tuple):
                raise self.error(f'{name}() needs a literal list of values, e.g. ["a", "b"]', args[1])
            wanted = self.literal_list(args[1]).node.value  # type: ignore[attr-defined]
            if not wanted:
                raise self.error(f"{name}() needs at least one value", args[1])
            call = self.helper(helper, seq.node, ast.Constant(value=frozenset(wanted)))
            return _Typed(call, frozenset({_BOOL}), f"{name}(...)")
        if name == "contains":
            arity(2, 2)
            text = self.expr(args[0])
            self.require(text, {_STR}, "contains() needs a string signal", args[0])
            sub = args[1]
            if not (isinstance(sub, ast.Constant) and isinstance(sub.value, str)):
                raise self.error('contains() needs a string constant, e.g. contains(text.body, "wx")', sub)
            self.strings.add(sub.value)
            call = self.helper(helper, text.node, ast.Constant(value=sub.value))
            return _Typed(call, frozenset({_BOOL}), "contains(...)")
        if name == "len":
            arity(1, 1)
            arg = self.expr(args[0])
            self.require(arg, {_STR, _LIST}, "len() needs a string or list", args[0])
            return _Typed(self.helper(helper, arg.node), frozenset({_NUM}), "len(...)")
        if name == "abs":
            arity(1, 1)
            arg = self.expr(args[0])
            self.require_numeric(arg, "abs()", args[0])
            return _Typed(self.helper(helper, arg.node), frozenset({_NUM}), "abs(...)")
        # min / max: either one list, or several numbers.
        arity(1, None)
        typed = [self.expr(a) for a in args]
        if len(typed) == 1:
            self.require(typed[0], {_LIST}, f"{name}() of one argument needs a list", args[0])
            tags = _ANY - {_NONE}  # element types are not declared
        else:
            for t, a in zip(typed, args, strict=True):
                self.require_numeric(t, f"{name}()", a)
            tags = frozenset({_NUM})
        return _Typed(self.helper(helper, *(t.node for t in typed)), tags, f"{name}(...)")

    def require(self, typed: _Typed, allowed: set[str], message: str, node: ast.expr) -> None:
        if not typed.tags & (allowed | {_NONE}):
            raise self.error(f"{message}, but {typed.what} is a {_describe_tags(typed.tags)}", node)

    @staticmethod
    def helper(name: str, *args: ast.expr) -> ast.Call:
        return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def _is_none(node: ast.expr) -> bool:
    """True for the literal None / null in the source."""
    if isinstance(node, ast.Constant):
        return node.value is None
    return isinstance(node, ast.Name) and node.id == "null"


def _comparable(left: frozenset[str], right: frozenset[str], equality: bool) -> bool:
    """Whether some pair of the possible static types can be compared meaningfully."""
    groups = (_NUMERIC, frozenset({_STR}), frozenset({_LIST}) if equality else frozenset())
    if _NONE in left or _NONE in right:
        return True
    return any(left & g and right & g for g in groups)


def compile_condition(source: str, signals: Mapping[str, type | tuple[type, ...]]) -> Condition:
    """Compile a rule condition once, at pack load, so per-event evaluation is cheap.

    ``signals`` maps every known signal name to its declared value type; it is
    used to reject misspelt names (with a did-you-mean hint) and obvious type
    mistakes before a pack goes live. Any problem raises :class:`ExprError`.
    """
    if not isinstance(source, str):
        # YAML turns `when: true` into a bool; say so instead of crashing.
        raise ExprError(f"condition must be a string, got {type(source).__name__}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExprError(
            f"condition is too long ({len(source)} characters, limit {MAX_SOURCE_LENGTH})", MAX_SOURCE_LENGTH
        )
    text = source.strip()
    lead = len(source) - len(source.lstrip())
    if not text:
        raise ExprError("condition is empty", 0)
    compiler = _Compiler(text, lead, signals)
    try:
        # Silence SyntaxWarning/DeprecationWarning (e.g. "\d" in a string):
        # they are about Python code, not about the condition.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        hint = "wrap multi-line conditions in parentheses" if "\n" in text else None
        message = f"syntax error: {exc.msg}"
        if exc.offset == 0:  # CPython reports a premature end of input at offset 0
            col: int | None = len(source.rstrip())
            message += " (the condition ends too early)"
        else:
            col = compiler.col(exc.lineno, exc.offset - 1 if exc.offset else None, byte_offset=False)
        raise ExprError(message, col, hint) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # null bytes, lone surrogates, absurd nesting
        raise ExprError(f"cannot parse condition: {exc}") from None
    fn = compiler.compile(tree)
    return Condition(source, frozenset(compiler.names), frozenset(compiler.strings), fn)
