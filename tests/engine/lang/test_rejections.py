"""Every construct outside the language is refused with its kind, a message and a location."""

from __future__ import annotations

import pytest

import engine  # noqa: F401  (registers the ops)
from engine.errors import AutodiffError, LanguageError, SizeLimitError, UnknownOpError
from engine.lang import Limits, compile_source

ALLOWED = "the language has numbers, names"

# source, error type, fragment of the message, (line, column)
REJECTED = [
    ("x.__class__", LanguageError, "attribute access (.__class__)", (1, 1)),
    ("().__class__.__bases__", LanguageError, "attribute access (.__bases__)", (1, 1)),
    ("y = 1\nz = sum(x).foo\nreturn z", LanguageError, "attribute access (.foo)", (2, 5)),
    ("import os", LanguageError, "an import", (1, 1)),
    ("from os import path", LanguageError, "an import", (1, 1)),
    ("__import__('os')", LanguageError, "'__import__' (names may not start with _)", (1, 1)),
    ("_x + 1", LanguageError, "names may not start with _", (1, 1)),
    ("lambda: 1", LanguageError, "a lambda", (1, 1)),
    ("[i for i in x]", LanguageError, "a comprehension", (1, 1)),
    ("{i: i for i in x}", LanguageError, "a comprehension", (1, 1)),
    ("sum(i for i in x)", LanguageError, "a comprehension", (1, 4)),
    ("'abc'", LanguageError, "a string at line 1, column 1", (1, 1)),
    ("sum(x, 'a')", LanguageError, "a string is allowed only as a static option", (1, 8)),
    ("f'{x}'", LanguageError, "an f-string", (1, 1)),
    ("sum(*x)", LanguageError, "a starred expression", (1, 5)),
    ("a, *b = x\nreturn a", LanguageError, "a starred expression", (1, 4)),
    ("(y := x)", LanguageError, "the walrus operator", (1, 2)),
    ("def f():\n    return 1", LanguageError, "def at line 1", (1, 1)),
    ("async def f():\n    return 1", LanguageError, "async def", (1, 1)),
    ("@d\ndef f():\n    return 1", LanguageError, "a decorator", (1, 2)),
    ("class A:\n    pass", LanguageError, "class at line 1", (1, 1)),
    ("global x\nreturn x", LanguageError, "global", (1, 1)),
    ("with x:\n    pass", LanguageError, "with at line 1", (1, 1)),
    ("try:\n    y = x\nexcept:\n    y = x\nreturn y", LanguageError, "try", (1, 1)),
    ("raise x", LanguageError, "raise", (1, 1)),
    ("assert x", LanguageError, "assert", (1, 1)),
    ("del x", LanguageError, "del at", (1, 1)),
    ("yield x", LanguageError, "yield", (1, 1)),
    ("await x", LanguageError, "await", (1, 1)),
    ("{1: 2}", LanguageError, "a dict literal", (1, 1)),
    ("{1, 2}", LanguageError, "a set literal", (1, 1)),
    ("x & x", LanguageError, "the operator &", (1, 1)),
    ("x << 1", LanguageError, "the operator <<", (1, 1)),
    ("~x", LanguageError, "the operator ~", (1, 1)),
    ("x is x", LanguageError, "the operator is", (1, 1)),
    ("x in x", LanguageError, "the operator in", (1, 1)),
    ("b'x'", LanguageError, "only numbers", (1, 1)),
    ("x[0] = 1\nreturn x", LanguageError, "item assignment", (1, 1)),
    ("x[0] += 1\nreturn x", LanguageError, "augmented assignment", (1, 1)),
    ("y: float = 1\nreturn y", LanguageError, "annotated assignment", (1, 1)),
    ("while x:\n    break\nreturn x", LanguageError, "break", (2, 5)),
    ("while x:\n    continue\nreturn x", LanguageError, "continue", (2, 5)),
    ("while x:\n    y = 1\nelse:\n    y = 2\nreturn y", LanguageError, "while ... else", (4, 5)),
    ("for i in x:\n    y = i\nreturn y", LanguageError, "for NAME in range", (1, 10)),
    ("for i, j in range(3):\n    y = i\nreturn y", LanguageError, "one name", (1, 5)),
    ("for i in range(n=3):\n    y = i\nreturn y", LanguageError, "for NAME in range", (1, 10)),
    ("match x:\n    case 1:\n        y = 1\nreturn y", LanguageError, "match", (1, 1)),
    ("sum(x)(1)", LanguageError, "not an op name", (1, 1)),
    ("sum(x, **k)", LanguageError, "**keyword unpacking", (1, 8)),
    ("x + None", LanguageError, "None here", (1, 5)),
    ("x[1:2] + x[:]\ny = 1:2", LanguageError, "syntax error", (2, 6)),
    ("1 +", LanguageError, "syntax error at line 1", (1, 4)),
    ("pi = 3\nreturn pi", LanguageError, "cannot assign to the constant pi", (1, 1)),
    ("range(3)", LanguageError, "only as the iterable of `for", (1, 1)),
    ("return", LanguageError, "needs a value", (1, 1)),
    ("y = x", LanguageError, "never returns a value", (1, 1)),
    ("x\ny = 1\nreturn y", LanguageError, "stands alone and does nothing", (1, 1)),
    ("\uff58 + 1", LanguageError, "non-ASCII character", (1, 1)),
    ("y = 1\nreturn x\u0430", LanguageError, "U+0430", (2, 9)),
    ("x\x00", LanguageError, "control character", (1, 2)),
    # calls: only registry ops, bound against their signature
    ("open('f')", UnknownOpError, "'open' at line 1, column 1 is not an op", (1, 1)),
    ("exec('1')", UnknownOpError, "is not an op", (1, 1)),
    ("eval('1')", UnknownOpError, "is not an op", (1, 1)),
    ("print(x)", UnknownOpError, "is not an op", (1, 1)),
    ("foo(x)", UnknownOpError, "unknown op 'foo'", (1, 1)),
    ("sm(x)", UnknownOpError, "did you mean sum", (1, 1)),
    ("_scatter(x)", LanguageError, "names may not start with _", (1, 1)),
    ("y = 2\nz = sum(x, axes=0)\nreturn z", LanguageError, "unexpected keyword 'axes'", (2, 5)),
    ("sum()", LanguageError, "missing argument 'x'", (1, 1)),
    ("sum(x, 0, True, 1)", LanguageError, "takes 3 positional arguments but got 4", (1, 1)),
    ("sum(x, axis=0, axis=1)", LanguageError, "got two values for 'axis'", (1, 1)),
    ("sum(x, 0, axis=1)", LanguageError, "got two values for 'axis'", (1, 1)),
]


@pytest.mark.parametrize(("source", "kind", "fragment", "loc"), REJECTED)
def test_rejected(source: str, kind: type, fragment: str, loc: tuple[int, int]) -> None:
    with pytest.raises(AutodiffError) as info:
        compile_source(source)
    err = info.value
    assert type(err) is kind, err
    assert fragment in err.message
    assert err.loc == {"line": loc[0], "column": loc[1]}


def test_rejection_says_what_is_allowed() -> None:
    with pytest.raises(LanguageError) as info:
        compile_source("lambda: 1")
    assert ALLOWED in info.value.message and "while" in info.value.message


def test_bad_call_names_signature() -> None:
    with pytest.raises(LanguageError) as info:
        compile_source("sum(x, axes=0)")
    assert info.value.op == "sum"
    assert "signature: sum(x, axis=None, keepdims=False)" in info.value.message


def test_non_ascii_allowed_in_comments() -> None:
    program = compile_source("# x \u2248 \u03c0\nreturn x * 2  # \u00e9")
    assert program.free_names == ("x",)


# --- resource limits before any work --------------------------------------------------------


def test_source_length_limit() -> None:
    with pytest.raises(SizeLimitError) as info:
        compile_source("x" * 101, Limits(max_source_chars=100))
    assert "101 characters, over the limit of 100" in info.value.message


@pytest.mark.parametrize("brackets", ["()", "[]"])
def test_ten_thousand_nested_brackets(brackets: str) -> None:
    source = brackets[0] * 10_000 + "x" + brackets[1] * 10_000
    with pytest.raises(LanguageError) as info:
        compile_source(source)
    assert "nested deeper than 200" in info.value.message
    assert info.value.loc == {"line": 1, "column": 201}


@pytest.mark.parametrize("source", ["-" * 50_000 + "x", "1+" * 30_000 + "1", "x" + "[0]" * 20_000])
def test_deep_operator_chains_are_clean_errors(source: str) -> None:
    with pytest.raises(LanguageError) as info:
        compile_source(source)
    assert "nested too deeply" in info.value.message or "nested deeper" in info.value.message


def test_depth_limit_after_parse() -> None:
    with pytest.raises(LanguageError) as info:
        compile_source("1+" * 300 + "1")
    assert "nested deeper than 200 levels" in info.value.message
    assert info.value.loc is not None and info.value.loc["line"] == 1


def test_node_count_limit() -> None:
    with pytest.raises(SizeLimitError) as info:
        compile_source(" + ".join(["x"] * 100), Limits(max_program_nodes=50, max_depth=1000))
    assert "more than 50 syntax nodes" in info.value.message


def test_empty_source() -> None:
    with pytest.raises(LanguageError, match="empty"):
        compile_source("  \n ")


def test_not_a_string() -> None:
    with pytest.raises(LanguageError, match="must be a string"):
        compile_source(b"x")  # type: ignore[arg-type]


def test_huge_integer_literal_is_a_clean_error() -> None:
    with pytest.raises(LanguageError):
        compile_source("1" * 5000)
