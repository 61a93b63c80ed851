"""Random text and random syntax trees at the parser: a result or a clean AutodiffError.

Each case also runs (small limits), so the interpreter sees the odd programs
that survive checking. Hypothesis's deadline bounds every case in time.
"""

from __future__ import annotations

import ast
import warnings
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import AutodiffError
from engine.lang import Limits, compile_source

LIMITS = Limits(max_iterations=500, max_elements=10_000)
ENV = {"x": np.array([0.5, -1.0, 2.0]), "m": np.eye(3), "n": np.array(2.0)}
FUZZ = settings(
    max_examples=150, deadline=timedelta(seconds=2), suppress_health_check=list(HealthCheck)
)

SEEDS = [
    "b = x * 2\nwhile norm(b) < 1000:\n    b = b * 2\nif sum(b) > 0:\n    c = b\nelse:\n"
    "    c = 100 * b\nreturn sum(c)",
    "s = 0\nfor i in range(3):\n    s = s + x[i] ** 2\nreturn s, m[0, ::-1]",
    "einsum('ij,j->i', m, x) @ x + where(x > 0 and x < 1, x, -x)",
    "a, b = slogdet(m)\nreturn reshape(concatenate([x, x]), [2, 3])[:, 1:] * b",
]  # fmt: skip
TOKENS = [
    "x", "m", "n", "i", "(", ")", "[", "]", ",", ":", "=", "+", "-", "*", "/", "**", "//", "%",
    "@", "<", ">=", "==", " and ", " or ", "not ", "\n", "    ", "return ", "if ", "else:",
    "while ", "for i in range(", "sum(", "exp(", "reshape(", "einsum(", "'ij'", "0", "1", "2.5",
    "1e308", "9**9**9", "...", "None", "True", "lambda", ".", "__class__", "#", "\\", '"', "{",
    "}", "\t", "\u00e9", "\uff58", "\x00",
]  # fmt: skip


def outcome(text: str, differentiate: bool = False) -> None:
    """The property: compiling and running ``text`` ends in a value or an AutodiffError.

    With ``differentiate``, a program that runs is also run under ``jacobian`` with
    respect to ``x``, so boxes reach conditions, indices and static arguments.
    """
    try:
        program = compile_source(text, LIMITS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            program.run(ENV)
            if differentiate:
                engine.jacobian(lambda x: _first(program.run({**ENV, "x": x})))(ENV["x"])
    except AutodiffError:
        pass


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_random_token_soup(text: str) -> None:
    outcome(text)


@FUZZ
@given(st.text(max_size=200))
def test_random_unicode_text(text: str) -> None:
    outcome(text)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 3), st.sampled_from(TOKENS)), max_size=6
    ),
)
def test_mutated_programs(seed: str, edits: list[tuple[int, int, str]]) -> None:
    text = seed
    for at, cut, token in edits:
        at %= len(text) + 1
        text = text[:at] + token + text[at + cut :]
    outcome(text, differentiate=True)


# --- random syntax trees, every node type Python has, unparsed to text ---------------------

NAMES = st.sampled_from(["x", "m", "n", "i", "sum", "exp", "open", "__import__", "_x", "pi"])


def _expressions() -> st.SearchStrategy[ast.expr]:
    leaves = st.one_of(
        NAMES.map(lambda n: ast.Name(n, ast.Load())),
        st.one_of(
            st.integers(-5, 10**30), st.floats(allow_nan=False), st.text(max_size=3), st.none()
        ).map(ast.Constant),
    )

    def extend(sub: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
        ops = st.sampled_from([ast.Add(), ast.Pow(), ast.MatMult(), ast.BitAnd(), ast.FloorDiv()])
        cmps = st.sampled_from([ast.Lt(), ast.Eq(), ast.Is(), ast.In()])
        return st.one_of(
            st.builds(ast.BinOp, sub, ops, sub),
            st.builds(ast.UnaryOp, st.sampled_from([ast.USub(), ast.Not(), ast.Invert()]), sub),
            st.builds(lambda a, b: ast.BoolOp(ast.And(), [a, b]), sub, sub),
            st.builds(lambda a, op, b: ast.Compare(a, [op], [b]), sub, cmps, sub),
            st.builds(_call, NAMES, st.lists(sub, max_size=3)),
            st.builds(lambda v, i: ast.Subscript(v, i, ast.Load()), sub, sub),
            st.builds(lambda v, a, b: ast.Subscript(v, ast.Slice(a, b), ast.Load()), sub, sub, sub),
            st.builds(lambda v: ast.Attribute(v, "__class__", ast.Load()), sub),
            st.builds(lambda es: ast.List(es, ast.Load()), st.lists(sub, max_size=3)),
            st.builds(lambda es: ast.Tuple(es, ast.Load()), st.lists(sub, max_size=3)),
            st.builds(lambda b: ast.Lambda(_no_args(), b), sub),
            st.builds(lambda a, b, c: ast.IfExp(a, b, c), sub, sub, sub),
            st.builds(lambda e: ast.ListComp(e, [_comprehension()]), sub),
            st.builds(lambda e: ast.Starred(e, ast.Load()), sub),
            st.builds(lambda e: ast.NamedExpr(ast.Name("y", ast.Store()), e), sub),
            st.builds(lambda e: ast.Dict([e], [e]), sub),
        )  # fmt: skip

    return st.recursive(leaves, extend, max_leaves=12)


def _call(name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), args, [])


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])


def _comprehension() -> ast.comprehension:
    return ast.comprehension(ast.Name("j", ast.Store()), ast.Name("x", ast.Load()), [], 0)


def _statements(expr: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[list[ast.stmt]]:
    target = st.sampled_from(["y", "i", "x", "pi"]).map(lambda n: ast.Name(n, ast.Store()))
    simple = st.one_of(
        st.builds(lambda t, v: ast.Assign([t], v), target, expr),
        st.builds(lambda t, v: ast.AugAssign(t, ast.Add(), v), target, expr),
        st.builds(ast.Return, expr),
        st.builds(ast.Expr, expr),
        st.just(ast.Pass()),
        st.builds(lambda v: ast.Import([ast.alias("os")]), expr),
        st.builds(lambda v: ast.Global(["x"]), expr),
    )

    def extend(sub: st.SearchStrategy[list[ast.stmt]]) -> st.SearchStrategy[list[ast.stmt]]:
        body = sub.filter(bool)
        compound: st.SearchStrategy[list[ast.stmt]] = st.one_of(
            st.builds(lambda t, b, o: [ast.If(t, b, o)], expr, body, sub),
            st.builds(lambda t, b: [ast.While(t, b, [])], expr, body),
            st.builds(
                lambda a, b: [ast.For(ast.Name("i", ast.Store()), _range(a), b, [])], expr, body
            ),
            st.builds(lambda b: [ast.With([ast.withitem(ast.Name("x", ast.Load()))], b)], body),
            st.builds(lambda b: [ast.FunctionDef("f", _no_args(), b, [], None)], body),
        )
        return st.one_of(compound, st.lists(st.one_of(sub, compound), max_size=3).map(_flat))

    return st.recursive(simple.map(lambda s: [s]), extend, max_leaves=8)


def _range(arg: ast.expr) -> ast.Call:
    return ast.Call(ast.Name("range", ast.Load()), [arg], [])


def _flat(blocks: list[list[ast.stmt]]) -> list[ast.stmt]:
    return [s for b in blocks for s in b]


PROGRAMS = _statements(_expressions())


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # big strategy repr
@FUZZ
@given(PROGRAMS)
def test_random_syntax_trees(body: list[ast.stmt]) -> None:
    if not body:
        body = [ast.Pass()]
    tree = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
    try:
        text = ast.unparse(tree)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return  # a tree Python itself cannot print is not an input anyone can send
    outcome(text)
