"""Tests for the rule condition language (clearcircle.policy.expr)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearcircle.policy.expr import (
    MAX_DEPTH,
    MAX_SOURCE_LENGTH,
    Condition,
    ConditionRuntimeError,
    ExprError,
    compile_condition,
)

SIGNALS: dict[str, type | tuple[type, ...]] = {
    "text.categories": list,
    "text.body": str,
    "text.marketing": float,
    "account.age_days": float,
    "account.strikes": int,
    "account.type": str,
    "account.labels": list,
    "account.banned": bool,
    "counters.friend_requests_1h": int,
    "counters.posts_1h": int,
    "loose": (int, str),  # declared loosely: only runtime checks apply
    "foo": int,
}


class Recording(Mapping[str, Any]):
    """A lazy mapping that remembers which keys were read."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.read.append(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def c(source: str) -> Condition:
    return compile_condition(source, SIGNALS)


def ev(source: str, **values: Any) -> bool:
    """Evaluate with keyword values; `a__b` spells the signal `a.b`; unset signals are None."""
    data: dict[str, Any] = dict.fromkeys(SIGNALS)
    data.update({k.replace("__", "."): v for k, v in values.items()})
    return c(source).evaluate(data)


def err(source: str, signals: Mapping[str, Any] = SIGNALS) -> ExprError:
    with pytest.raises(ExprError) as info:
        compile_condition(source, signals)
    return info.value


# --- operators --------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("account.strikes == 2", True),
        ("account.strikes != 2", False),
        ("account.strikes < 3", True),
        ("account.strikes <= 2", True),
        ("account.strikes > 2", False),
        ("account.strikes >= 2", True),
        ("account.strikes == 2.0", True),
        ("1 < account.strikes < 3", True),
        ("1 < account.strikes < 2", False),
        ("3 > account.strikes >= 2 > 1", True),
        ("account.type == 'personal'", True),
        ('account.type in ["personal", "business"]', True),
        ('account.type not in ("personal", "business")', False),
        ('"spam" in text.categories', True),
        ('"fraud" not in text.categories', True),
        ('"wx" in text.body', True),
        ('"qq" not in text.body', True),
        ("account.strikes + 1 == 3", True),
        ("account.strikes - 3 == -1", True),
        ("account.strikes * 2 == 4", True),
        ("account.strikes / 4 == 0.5", True),
        ("-account.strikes == -2", True),
        ("(account.strikes + 1) * 2 == 6", True),
        ("account.strikes + 1 * 2 == 4", True),
        ("account.banned", False),
        ("not account.banned", True),
        ("account.banned or account.strikes > 1", True),
        ("account.banned and account.strikes > 1", False),
        ("not (account.strikes > 1 and account.type == 'personal')", False),
        ("True", True),
        ("false or true", True),
        ("account.banned == false", True),
        ("text.categories == ['spam', 'ads']", True),
        ("text.categories != []", True),
        ("text.categories == ('spam', 'ads')", True),
        ("text.categories != ['spam']", True),
    ],
)
def test_operators(source: str, expected: bool) -> None:
    values = {
        "account.strikes": 2,
        "account.type": "personal",
        "text.categories": ["spam", "ads"],
        "text.body": "add my wx please",
        "account.banned": False,
    }
    assert c(source).evaluate({**dict.fromkeys(SIGNALS), **values}) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('any_of(text.categories, ["induced_share", "fraud"])', True),
        ('any_of(text.categories, ["fraud"])', False),
        ('all_of(text.categories, ["induced_share", "ads"])', True),
        ('all_of(text.categories, ["induced_share", "fraud"])', False),
        ("len(text.categories) == 2", True),
        ("len(text.body) == 5", True),
        ("min(account.strikes, 5) == 3", True),
        ("max(account.strikes, 5, 1) == 5", True),
        ("min(account.labels) == 1 and max(account.labels) == 9", True),
        ("abs(account.age_days) == 2.5", True),
        ('contains(text.body, "wx")', True),
        ('contains(text.body, "WX")', False),
    ],
)
def test_functions(source: str, expected: bool) -> None:
    values = {
        "text.categories": ["induced_share", "ads"],
        "text.body": "wx123",
        "account.strikes": 3,
        "account.labels": [4, 1, 9],
        "account.age_days": -2.5,
    }
    assert c(source).evaluate({**dict.fromkeys(SIGNALS), **values}) is expected


def test_bare_name_is_a_signal() -> None:
    assert ev("foo > 1", foo=2)


def test_result_is_coerced_to_bool() -> None:
    # `or` returns an operand in Python; evaluate must still return a real bool.
    assert ev("account.banned or account.banned") is False
    assert ev("min(account.labels) or false", account__labels=[7]) is True


def test_multiline_in_parentheses_and_surrounding_whitespace() -> None:
    assert ev("  (account.strikes > 1\n   and account.type == 'x')\n", account__strikes=2, account__type="x")


def test_min_max_of_empty_list_is_missing() -> None:
    assert not ev("min(account.labels) < 100", account__labels=[])
    assert ev("max(account.labels) == None", account__labels=[])


def test_division_by_zero_is_missing() -> None:
    assert not ev(
        "counters.posts_1h / counters.friend_requests_1h > 0.5",
        counters__posts_1h=3,
        counters__friend_requests_1h=0,
    )
    assert ev(
        "counters.posts_1h / counters.friend_requests_1h == null",
        counters__posts_1h=3,
        counters__friend_requests_1h=0,
    )


# --- laziness -----------------------------------------------------------------


def test_and_short_circuits() -> None:
    values = Recording({"account.banned": False, "account.strikes": 1, "text.categories": ["x"]})
    assert not c('account.banned and account.strikes > 0 and any_of(text.categories, ["x"])').evaluate(values)
    assert values.read == ["account.banned"]


def test_or_short_circuits() -> None:
    values = Recording({"account.banned": True, "account.strikes": 1})
    assert c("account.banned or account.strikes > 0").evaluate(values)
    assert values.read == ["account.banned"]


def test_reads_right_side_when_needed() -> None:
    values = Recording({"account.banned": False, "account.strikes": 1})
    assert c("account.banned or account.strikes > 0").evaluate(values)
    assert values.read == ["account.banned", "account.strikes"]


def test_chained_comparison_reads_middle_once_and_short_circuits() -> None:
    values = Recording({"account.strikes": 5, "counters.posts_1h": 0})
    assert c("1 < account.strikes < 10").evaluate(values)
    assert values.read == ["account.strikes"]
    values = Recording({"account.strikes": 0, "counters.posts_1h": 0})
    assert not c("1 < account.strikes < counters.posts_1h").evaluate(values)
    assert values.read == ["account.strikes"]


def test_unreferenced_signals_are_never_read() -> None:
    values = Recording(dict.fromkeys(SIGNALS, 1))
    c("account.strikes == 1").evaluate(values)
    assert values.read == ["account.strikes"]


# --- missing values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("account.strikes == 1", False),
        ("account.strikes != 1", False),
        ("account.strikes < 1", False),
        ("account.strikes >= 1", False),
        ("1 < account.strikes < 3", False),
        ("account.type in ['a', 'b']", False),
        ("account.type not in ['a', 'b']", False),
        ("'a' in text.categories", False),
        ("'a' not in text.categories", False),
        ("'a' in text.body", False),
        ("any_of(text.categories, ['a'])", False),
        ("all_of(text.categories, ['a'])", False),
        ("contains(text.body, 'a')", False),
        ("len(text.categories) == 0", True),
        ("len(text.body) > 0", False),
        ("account.strikes + 1 == None", True),
        ("-account.strikes == None", True),
        ("-null == None", True),
        ("-true == -1", True),
        ("account.strikes * 2 > 0", False),
        ("abs(account.strikes) == null", True),
        ("min(account.strikes, 3) == null", True),
        ("max(account.labels) == null", True),
        ("account.strikes == None", True),
        ("account.strikes != null", False),
        ("None == account.strikes", True),
        ("account.banned", False),
        ("not account.banned", True),
    ],
)
def test_none_handling(source: str, expected: bool) -> None:
    assert c(source).evaluate(dict.fromkeys(SIGNALS)) is expected


def test_none_literal_tests_presence() -> None:
    assert ev("account.strikes != None", account__strikes=0)
    assert not ev("account.strikes == None", account__strikes=0)


# --- names and strings --------------------------------------------------------


def test_names_and_strings() -> None:
    cond = c(
        'any_of(text.categories, ["induced_share", "fraud"]) and account.age_days < 7 '
        'and (counters.friend_requests_1h > 20 or contains(text.body, "wx")) and foo in [1, "x"]'
    )
    assert cond.names == {
        "text.categories",
        "account.age_days",
        "counters.friend_requests_1h",
        "text.body",
        "foo",
    }
    assert cond.strings == {"induced_share", "fraud", "wx", "x"}
    assert cond.source.startswith("any_of(")


def test_condition_equality_ignores_compiled_function() -> None:
    assert c("foo > 1") == c("foo > 1")
    assert hash(c("foo > 1")) == hash(c("foo > 1"))
    assert "_fn" not in repr(c("foo > 1"))


def test_evaluation_is_deterministic() -> None:
    cond = c('any_of(text.categories, ["a", "b", "c"]) or all_of(account.labels, [1, 2])')
    values = {"text.categories": ["c"], "account.labels": [2, 1]}
    assert {cond.evaluate(values) for _ in range(50)} == {True}


# --- errors: hints and columns -------------------------------------------------


def test_misspelt_signal_hint() -> None:
    e = err("account.age_dyas < 7")
    assert "unknown signal 'account.age_dyas'" in e.message
    assert e.col == 0
    assert e.hint is not None and "account.age_days" in e.hint
    assert "did you mean" in str(e) and "column 0" in str(e)


def test_signal_prefix_hint() -> None:
    e = err("counters > 1")
    assert e.hint is not None and "counters." in e.hint


def test_misspelt_function_hint() -> None:
    e = err('account.strikes > 1 and anyof(text.categories, ["x"])')
    assert "unknown function 'anyof'" in e.message
    assert e.col == 24
    assert e.hint is not None and "any_of" in e.hint


def test_unknown_function_without_close_match() -> None:
    e = err("frobnicate(1)")
    assert e.hint is None
    assert e.col == 0


def test_error_is_a_value_error() -> None:
    assert isinstance(err("nope"), ValueError)


@pytest.mark.parametrize(
    ("source", "col"),
    [
        ("foo > 1 and bar > 2", 12),
        ("foo > 1 and foo > 'x'", 12),
        ("  bar", 2),
        ("'中文字' in text.body and bar", 23),
        ("foo > 1 and (foo ** 2 > 3)", 13),
        ("foo > 1 and", 11),
        ("foo >> 1", 0),
        ("len(text.body, **k)", 15),
        ("foo +", 5),
        ("  foo +  ", 7),
        ("(foo > 1", 0),
        ("foo > 1 ) ", 8),
    ],
)
def test_error_columns(source: str, col: int) -> None:
    assert err(source).col == col


def test_syntax_error_multiline_hint() -> None:
    e = err("foo > 1 and\nfoo < 3")
    assert "syntax error" in e.message
    assert e.hint is not None and "parentheses" in e.hint


# --- static type checks ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("account.age_days == 'young'", "cannot compare"),
        ("account.age_days < '7'", "cannot compare"),
        ("account.type == 3", "cannot compare"),
        ("account.type > 3.5", "cannot compare"),
        ("text.categories == 'spam'", "cannot compare"),
        ("'x' in account.strikes", "'in' needs a list or string"),
        ("account.strikes not in account.age_days", "'in' needs a list or string"),
        ("account.strikes in text.body", "'in' on a string needs a string"),
        ("account.strikes in None", "'in' needs a list or string"),
        ("account.strikes < None", "cannot order against None"),
        ("text.categories < ['a']", "cannot compare"),
        ("text.body + 'x' == 'y'", "+ needs numbers"),
        ("text.body * 1000000000 == 'y'", "* needs numbers"),
        ("-text.body == 'x'", "unary - needs numbers"),
        ("any_of(text.body, ['x'])", "any_of() needs a list"),
        ("all_of(account.strikes, [1])", "all_of() needs a list"),
        ("any_of(text.categories, text.categories)", "literal list"),
        ("any_of(text.categories, [])", "at least one value"),
        ("any_of(text.categories)", "takes 2 argument"),
        ("len(account.strikes) > 1", "len() needs a string or list"),
        ("len() > 1", "takes 1 argument"),
        ("abs(text.body) > 1", "abs() needs numbers"),
        ("min(text.body, 3) > 1", "min() needs numbers"),
        ("max(account.strikes) > 1", "max() of one argument needs a list"),
        ("min() > 1", "at least 1"),
        ("contains(text.categories, 'x')", "contains() needs a string signal"),
        ("contains(text.body, account.type)", "string constant"),
        ("account.strikes", "not a condition"),
        ("text.body and account.banned", "not a condition"),
        ("not text.categories", "not a condition"),
        ("len(text.body)", "not a condition"),
        ("3", "not a condition"),
        ("account.strikes is None", "'is'"),
        ("len > 1", "must be called"),
        ("account.banned(1)", "is a signal, not a function"),
        ("text.body.lower() == 'x'", "method calls"),
        ("foo in [account.strikes]", "only constants"),
        ("foo in [[1]]", "only constants"),
        ("b'x' in text.body", "bytes"),
        ("foo == 1j", "complex"),
        ("foo == ...", "..."),
    ],
)
def test_type_and_usage_errors(source: str, fragment: str) -> None:
    assert fragment in err(source).message


def test_type_hint_for_list_equality() -> None:
    e = err("text.categories == 'spam'")
    assert e.hint is not None and "in" in e.hint


def test_hint_for_non_condition_signal() -> None:
    e = err("account.strikes")
    assert e.hint is not None and "account.strikes > 0" in e.hint


def test_loosely_typed_signals_are_checked_at_runtime() -> None:
    cond = c("loose < 3")  # (int, str): could be fine, so no static error
    assert cond.evaluate({"loose": 1})
    with pytest.raises(ConditionRuntimeError):
        cond.evaluate({"loose": "a"})


def test_generic_and_unknown_declared_types() -> None:
    signals = {"a": list[str], "b": dict, "c": bool}
    assert compile_condition("'x' in a", signals).evaluate({"a": ["x"]})
    assert compile_condition("b == 1", signals).evaluate({"b": 1})  # unknown type: no static check
    assert compile_condition("c", signals).evaluate({"c": True})


# --- refusal of unsafe constructs ---------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "foo.__class__",
        "_private > 1",
        "open('x')",
        "eval('1')",
        "exec('1')",
        "getattr(foo, 'x')",
        "globals()",
        "[x for x in y]",
        "{x for x in y}",
        "{x: 1 for x in y}",
        "any(x for x in y)",
        "lambda: 1",
        "(lambda: 1)()",
        "a[0]",
        "text.categories[0] == 'x'",
        "text.body[1:2] == 'x'",
        "f(**k)",
        "len(*text.categories) > 1",
        "len(**k)",
        "len(x=text.body) > 1",
        "f'{foo}' == 'x'",
        "(y := 1)",
        "foo if foo else foo",
        "{'a': 1}",
        "{1, 2}",
        "'%s' % foo",
        "foo ** 99999999",
        "foo // 2 == 1",
        "~foo == 1",
        "+foo == 1",
        "foo & 1",
        "(1)(2)",
        "'abc'.join(text.categories)",
        "len(text.body).real > 1",
        "foo = 1",
        "import os",
        "await foo",
        "yield foo",
    ],
)
def test_unsafe_constructs_are_refused(source: str) -> None:
    err(source)


def test_limits() -> None:
    e = err("foo > 1 or " * 200 + "foo > 1")
    assert "too long" in e.message
    assert len("foo > 1 or " * 100) < MAX_SOURCE_LENGTH
    c("foo > 1 or " * 100 + "foo > 1")  # long but flat is fine
    # Depth counts syntax-tree levels; redundant parentheses add none.
    c("(" * 60 + "foo > 1" + ")" * 60)
    assert "nested too deeply" in err("foo > 1 and " + "not " * 60 + "foo > 1").message
    assert "nested too deeply" in err("abs(" * 60 + "foo" + ")" * 60 + " > 1").message
    assert "nested too deeply" in err("foo" + " + 1" * (MAX_DEPTH + 5) + " > 1").message
    c("not " * (MAX_DEPTH - 3) + "foo > 1")
    err("-" * 1999 + "1")  # the parser's own recursion limit
    err("(" * 300 + "1" + ")" * 300)


@pytest.mark.parametrize("source", ["", "   ", "\n"])
def test_empty(source: str) -> None:
    assert "empty" in err(source).message


def test_non_string_source() -> None:
    e = err(True)  # type: ignore[arg-type]
    assert "must be a string" in e.message


def test_odd_source_text() -> None:
    err("foo\x00")
    err("'\ud800' in text.body")
    assert c("'\\d' in text.body").strings == {"\\d"}  # no warning leaks out of the parser


# --- runtime errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("loose < 3", {"loose": "x"}),
        ("loose == 3", {"loose": "x"}),
        ("loose != 'x'", {"loose": 3}),
        ("loose + 1 > 2", {"loose": "x"}),
        ("loose * 3 > 1", {"loose": "x"}),
        ("-loose == 1", {"loose": "x"}),
        ("abs(loose) == 1", {"loose": "x"}),
        ("len(loose) > 1", {"loose": 3}),
        ("1 in loose", {"loose": "abc"}),
        ("'a' in loose", {"loose": 3}),
        ("any_of(text.categories, ['x'])", {"text.categories": "x"}),
        ("all_of(text.categories, ['x'])", {"text.categories": 5}),
        ("any_of(text.categories, ['x'])", {"text.categories": [["unhashable"]]}),
        ("contains(text.body, 'x')", {"text.body": ["x"]}),
        ("min(account.labels) > 1", {"account.labels": [1, "a"]}),
        ("account.strikes / 3 > 1", {"account.strikes": 10**400}),
        ("foo > 1", {}),  # the mapping does not provide a declared signal
    ],
)
def test_runtime_type_errors(source: str, values: dict[str, Any]) -> None:
    cond = c(source)
    with pytest.raises(ConditionRuntimeError) as info:
        cond.evaluate(values)
    assert source in str(info.value)


def test_string_repetition_is_refused_at_runtime() -> None:
    # Arithmetic is numbers-only, so a loosely typed signal cannot build huge strings.
    with pytest.raises(ConditionRuntimeError):
        c("loose * 1000000000000 > 1").evaluate({"loose": "x"})


# --- fuzzing ------------------------------------------------------------------------

TOKENS = [
    *SIGNALS,
    "text",
    "account",
    "__import__",
    "__class__",
    "_x",
    "any_of",
    "all_of",
    "len",
    "min",
    "max",
    "abs",
    "contains",
    "open",
    "true",
    "false",
    "null",
    "None",
    "True",
    "0",
    "1",
    "-1",
    "2.5",
    "1e400",
    "'a'",
    '"spam"',
    "'中文'",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ".",
    ":",
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "for",
    "lambda",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "**",
    "%",
    ":=",
    "=",
    "\n",
    "#",
]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join)
values_strategy = st.fixed_dictionaries(
    {
        name: st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=5),
            st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=4),
        )
        for name in SIGNALS
    }
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_only_raises_expr_error(source: str) -> None:
    try:
        compile_condition(source, SIGNALS)
    except ExprError:
        pass


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(token_soup, values_strategy)
def test_random_token_soup_compiles_or_raises_expr_error(source: str, values: dict[str, Any]) -> None:
    try:
        cond = compile_condition(source, SIGNALS)
    except ExprError:
        return
    # Whatever compiled must evaluate to a bool or fail with ConditionRuntimeError only.
    try:
        assert isinstance(cond.evaluate(values), bool)
    except ConditionRuntimeError:
        pass


# --- speed --------------------------------------------------------------------------


def test_benchmark_typical_condition(benchmark: Any) -> None:
    cond = c(
        'any_of(text.categories, ["induced_share", "fraud"]) and account.age_days < 7 '
        "and counters.friend_requests_1h > 20"
    )
    values = {
        "text.categories": ["induced_share"],
        "account.age_days": 3.0,
        "counters.friend_requests_1h": 30,
    }
    assert benchmark(cond.evaluate, values) is True
    assert benchmark.stats.stats.mean < 20e-6  # generous; typically ~1 µs
