"""Running the language: every construct, define-by-run control flow, limits, runtime errors."""

from __future__ import annotations

import math
import pickle
import warnings
from typing import Any

import numpy as np
import pytest

import engine
from engine.core import trace
from engine.errors import (
    IterationLimitError,
    LanguageError,
    ShapeError,
    SizeLimitError,
    UnknownNameError,
)
from engine.graph import Recorder
from engine.lang import Program, compile_source
from engine.locations import loc_dict

X = np.arange(6.0)
M = np.arange(6.0).reshape(2, 3)

TUTORIAL = (
    "b = a * 2\nwhile norm(b) < 1000:\n    b = b * 2\nif sum(b) > 0:\n    c = b\n"
    "else:\n    c = 100 * b\nreturn sum(c)"
)
A = np.array([0.3, -0.2, 0.5, 0.1])


def run(source: str, **env: Any) -> Any:
    return compile_source(source).run(env or {"x": X, "m": M})


# source, expected value (from NumPy)
VALUES = [
    ("x + 1", X + 1),
    ("1 - x", 1 - X),
    ("x * x / 2", X * X / 2),
    ("x // 4", X // 4),
    ("x % 4", X % 4),
    ("2 ** x", 2**X),
    ("m @ transpose(m)", M @ M.T),
    ("-x", -X),
    ("+x", X),
    ("x < 3", X < 3),
    ("x == 2", X == 2),
    ("x != 2", X != 2),
    ("x >= 2", X >= 2),
    ("1 < x <= 4", (X > 1) & (X <= 4)),
    ("where(x > 1 and x < 4, x, 0)", np.where((X > 1) & (X < 4), X, 0)),
    ("where(x < 1 or x > 4, x, 0)", np.where((X < 1) | (X > 4), X, 0)),
    ("where(not x > 2, 1, 2)", np.where(~(X > 2), 1.0, 2.0)),
    ("sum(x, axis=0, keepdims=True)", np.sum(X, axis=0, keepdims=True)),
    ("sum(m, axis=(0, 1))", np.sum(M)),
    ("sum(m, 1)", np.sum(M, 1)),
    ("reshape(x, [3, 2])", X.reshape(3, 2)),
    ("reshape(x, (3, -1))", X.reshape(3, 2)),
    ("concatenate([x, x])", np.concatenate([X, X])),
    ("stack([x, x], axis=1)", np.stack([X, X], axis=1)),
    ("[1, 2, 3]", np.array([1.0, 2.0, 3.0])),
    ("[[1, 2], [3, 4]]", np.array([[1.0, 2.0], [3.0, 4.0]])),
    ("[x[0], x[1] * 2]", np.array([0.0, 2.0])),
    ("[sum(x), 1]", np.array([15.0, 1.0])),
    ("x[0]", X[0]),
    ("x[-1]", X[-1]),
    ("x[1:3]", X[1:3]),
    ("x[::-1]", X[::-1]),
    ("x[1:-1:2]", X[1:-1:2]),
    ("m[:, 0]", M[:, 0]),
    ("m[1]", M[1]),
    ("m[..., 1]", M[..., 1]),
    ("x[None, :]", X[None, :]),
    ("x[[0, 2, 2]]", X[[0, 2, 2]]),
    ("m[0, [2, 0]]", M[0, [2, 0]]),
    ("pi * e + 0 * inf * 0 + True", math.pi * math.e + np.nan),
    ("exp(log(x + 1))", X + 1),
    ("x[1 + 1]", X[2]),
    ("x[7 // 2]", X[3]),
    ("x[2 ** 2]", X[4]),
    ("x[-(1)]", X[-1]),
    ("zeros([2, 3])", np.zeros((2, 3))),
    ("ones((2,))", np.ones(2)),
    ("eye(3)", np.eye(3)),
    ("full([2], 7.5)", np.full(2, 7.5)),
]


@pytest.mark.parametrize(("source", "expected"), VALUES)
def test_values(source: str, expected: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.asarray(trace.unbox_all(run(source)))
    np.testing.assert_allclose(out, np.asarray(expected, dtype=float), equal_nan=True)


def test_literals_are_floats_so_huge_powers_are_inf() -> None:
    with pytest.warns(RuntimeWarning):
        assert run("9 ** 9 ** 9") == np.inf
    with pytest.warns(RuntimeWarning):
        assert run("2 ** 100000") == np.inf
    assert run("2 ** 100") == 2.0**100  # not an int64 wrap-around


def test_static_integer_arithmetic_is_bounded() -> None:
    with pytest.raises(LanguageError, match="an index must be an integer, got inf"):
        run("x[9 ** 9 ** 9]")
    with pytest.raises(LanguageError, match="integer division by zero"):
        run("x[1 // 0]")


def test_output_of_a_number_is_an_array() -> None:
    out = run("return 3", x=X)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out == 3.0


# --- programs ----------------------------------------------------------------------------


def test_assignments_and_augmented_assignments() -> None:
    source = "y = x\ny += 1\ny -= 2\ny *= 3\ny /= 3\ny **= 2\ny //= 1\ny %= 100\ny @= y\nreturn y"
    y = X + 1 - 2
    expected = ((((y * 3) / 3) ** 2) // 1) % 100
    assert run(source) == pytest.approx(expected @ expected)


def test_inputs_can_be_reassigned() -> None:
    program = compile_source("x = x * 2\nreturn x")
    assert program.free_names == ("x",)
    np.testing.assert_array_equal(program.run({"x": X}), 2 * X)


def test_tuple_unpacking_and_swap() -> None:
    assert run("a, b = 1, 2\na, b = b, a\nreturn a - b") == 1.0
    np.testing.assert_array_equal(run("r0, r1 = m\nreturn r1 - r0"), M[1] - M[0])
    with pytest.raises(ShapeError, match="cannot unpack a value of shape"):
        run("a, b, c = m\nreturn a")
    with pytest.raises(LanguageError, match="cannot unpack 2 values into 3 names"):
        run("a, b, c = 1, 2\nreturn a")


def test_chained_assignment() -> None:
    assert run("a = b = sum(x)\nreturn a + b") == 30.0


def test_if_elif_else() -> None:
    source = "if sum(x) > 100:\n    y = 1\nelif sum(x) > 10:\n    y = 2\nelse:\n    y = 3\nreturn y"
    assert run(source) == 2.0
    assert run(source, x=np.zeros(2)) == 3.0
    assert run(source, x=np.full(2, 60.0)) == 1.0


def test_while_and_for_loops() -> None:
    program = compile_source("s = 0\nfor i in range(4):\n    s = s + x[i]\nreturn s")
    assert program.has_loops and program.free_names == ("x",)
    assert program.run({"x": X}) == 6.0
    assert run("s = 0\nfor i in range(1, 6, 2):\n    s = s + i\nreturn s") == 9.0
    assert run("s = 0\nfor i in range(3, 0, -1):\n    s = s * 10 + i\nreturn s") == 321.0
    assert run("n = 0\nwhile n < 5:\n    n += 1\nreturn n") == 5.0
    assert run("s = 0\nfor i in range(len0):\n    s = s + 1\nreturn s", len0=np.array(3.0)) == 3.0


def test_return_inside_loop_and_nested_blocks() -> None:
    source = "for i in range(10):\n    if i * i > 20:\n        return i\nreturn -1"
    assert run(source) == 5.0


def test_conditions_short_circuit() -> None:
    # the right side would be a non-scalar condition: never evaluated
    assert run("if 1 > 2 and x > 0:\n    y = 1\nelse:\n    y = 2\nreturn y") == 2.0
    assert run("if 1 < 2 or x > 0:\n    y = 1\nelse:\n    y = 2\nreturn y") == 1.0
    assert run("if not sum(x) > 0:\n    y = 1\nelse:\n    y = 2\nreturn y") == 2.0
    assert run("if 0 < sum(x) < 100:\n    y = 1\nelse:\n    y = 2\nreturn y") == 1.0


def test_non_scalar_condition_names_its_line() -> None:
    with pytest.raises(LanguageError) as info:
        run("y = x\nif x > 1:\n    y = 2\nreturn y")
    assert "condition at line 2 is not a scalar: it has shape (6,)" in info.value.message
    assert info.value.loc == {"line": 2, "column": 1}
    with pytest.raises(LanguageError, match="line 1 is not a scalar"):
        run("while x:\n    x = x - 1\nreturn x")


def test_several_outputs() -> None:
    out = run("y = sum(x)\nreturn y, x * 2")
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_array_equal(out[1], 2 * X)
    assert run("sum(x), 1")[1] == 1.0


def test_program_without_reaching_return() -> None:
    with pytest.raises(LanguageError, match="ended without reaching a return"):
        run("if sum(x) > 100:\n    return x\ny = 1")


# --- names ---------------------------------------------------------------------------------


def test_free_names_in_order_and_constants_excluded() -> None:
    program = compile_source("y = b * pi + a\nz = y + c + e\nreturn z + b")
    assert program.free_names == ("b", "a", "c")
    assert program.unused(["a", "b", "c", "d"]) == ["d"]


def test_names_assigned_on_some_path_are_locals() -> None:
    program = compile_source("if sum(x) > 0:\n    y = x\nreturn y")
    assert program.free_names == ("x",)
    assert program.run({"x": X}) is X
    with pytest.raises(UnknownNameError) as info:
        program.run({"x": -X - 1})
    assert "'y' at line 3, column 8 has no value here" in info.value.message
    assert info.value.loc == {"line": 3, "column": 8}
    loop = compile_source("for i in range(3):\n    y = x\nreturn y + i")
    assert loop.free_names == ("x",)


def test_missing_input_is_named() -> None:
    with pytest.raises(UnknownNameError) as info:
        compile_source("y = 1\nreturn y + z").run({})
    assert "no input named 'z'" in info.value.message
    assert info.value.loc == {"line": 2, "column": 12}
    with pytest.raises(UnknownNameError, match="'sum' is an op: call it as sum"):
        compile_source("return sum + 1").run({})


# --- limits --------------------------------------------------------------------------------


def test_while_true_stops_at_the_iteration_limit() -> None:
    program = compile_source("i = 0\nwhile True:\n    i = i + 1\nreturn i")
    with pytest.raises(IterationLimitError) as info:
        program.run({}, max_iterations=1000)
    assert "the loop at line 2 ran past the limit of 1000 iterations" in info.value.message
    assert info.value.loc == {"line": 2, "column": 1}


def test_iteration_limit_counts_all_loops() -> None:
    source = (
        "s = 0\nfor i in range(60):\n    s = s + 1\nfor j in range(60):\n    s = s + 1\nreturn s"
    )
    with pytest.raises(IterationLimitError, match="loop at line 4"):
        compile_source(source).run({}, max_iterations=100)
    assert compile_source(source).run({}, max_iterations=120) == 120.0


def test_size_limit_before_allocation() -> None:
    big = np.zeros(100_000)
    with pytest.raises(SizeLimitError) as info:
        compile_source("y = 1\nreturn outer(x, x)").run({"x": big}, max_elements=10**7)
    assert info.value.op == "outer" and info.value.loc == {"line": 2, "column": 8}
    with pytest.raises(SizeLimitError):
        compile_source("zeros([100000, 100000])").run({})
    with pytest.raises(SizeLimitError, match="list literal"):
        compile_source("[x, x, x]").run({"x": np.zeros(10)}, max_elements=20)


def test_default_limits_come_from_the_program() -> None:
    from engine.lang import Limits

    program = compile_source(
        "i = 0\nwhile True:\n    i = i + 1\nreturn i", Limits(max_iterations=50)
    )
    with pytest.raises(IterationLimitError, match="limit of 50"):
        program.run({})


# --- runtime errors carry the source location ------------------------------------------------


def test_shape_errors_get_the_location() -> None:
    with pytest.raises(ShapeError) as info:
        run("y = 1\nz = x + m\nreturn z")
    assert info.value.loc == {"line": 2, "column": 5}
    assert info.value.op == "add"


def test_bad_static_argument() -> None:
    with pytest.raises(LanguageError, match="expected a number"):
        run("sum(x, axis=x)")
    with pytest.raises(LanguageError, match="range\\(\\) must be an integer"):
        run("for i in range(2.5):\n    y = 1\nreturn x")
    with pytest.raises(LanguageError, match="step is zero"):
        run("for i in range(0, 3, 0):\n    y = 1\nreturn x")


def test_boolean_mask_index_selects() -> None:
    x = np.array([1.0, 3.0, 2.0, 5.0])
    np.testing.assert_array_equal(compile_source("x[x > 2]").run({"x": x}), [3.0, 5.0])


def test_ragged_list_literal() -> None:
    with pytest.raises(ShapeError, match="not rectangular"):
        run("[[1, 2], [3]]")


def test_recorder_gets_the_location_of_each_op() -> None:
    seen: list[Any] = []

    class Spy(Recorder):
        def record(self, op: Any, args: Any, kwargs: Any, ans: Any) -> None:
            seen.append((op.name, loc_dict(self.loc)))
            super().record(op, args, kwargs, ans)

    with Spy():
        compile_source("y = x * 2\nreturn sum(y)").run({"x": X})
    assert seen == [("multiply", {"line": 1, "column": 5}), ("sum", {"line": 2, "column": 8})]


# --- differentiation -------------------------------------------------------------------------


def test_tutorial_program_value_and_gradient() -> None:
    program = compile_source(TUTORIAL)
    value = program.run({"a": A})
    assert value == pytest.approx(1433.6)
    g = engine.grad(lambda a: program.run({"a": a}))(A)
    np.testing.assert_allclose(g, np.full(4, 2048.0))


def test_tutorial_vector_output_differentiates_to_f_over_a() -> None:
    source = TUTORIAL.replace("return sum(c)", "return c")
    program = compile_source(source)
    value, pullback = engine.vjp(lambda a: program.run({"a": a}), A)
    (g,) = pullback(np.ones(4))
    np.testing.assert_allclose(g, value / A)  # the Jacobian is 2**k times the identity


def test_two_outputs_with_a_cotangent_each_sum_their_gradients() -> None:
    program = compile_source("y = sum(a * a)\nz = a * 3\nreturn y, z")
    (y, z), pullback = engine.vjp(lambda a: program.run({"a": a}), A)
    ct_z = np.array([1.0, 2.0, 3.0, 4.0])
    (g,) = pullback((np.array(2.0), ct_z))
    np.testing.assert_allclose(g, 2.0 * 2 * A + 3 * ct_z)


def test_gradient_through_for_loop_and_indexing() -> None:
    program = compile_source("s = 0\nfor i in range(3):\n    s = s + x[i] * x[i + 1]\nreturn s")
    g = engine.grad(lambda x: program.run({"x": x}))(X)
    expected = np.zeros(6)
    for i in range(3):
        expected[i] += X[i + 1]
        expected[i + 1] += X[i]
    np.testing.assert_allclose(g, expected)


def test_deepest_allowed_expression_runs_under_hessian() -> None:
    program = compile_source("sum(" + "+".join(["x"] * 196) + ") ** 2")  # 197 is too deep
    h = engine.hessian(lambda x: program.run({"x": x}))(np.ones(2))
    np.testing.assert_allclose(h, np.full((2, 2), 2 * 196.0**2))


def test_ops_and_names_are_separate() -> None:
    program = compile_source("sum(sum) + exp")
    assert program.free_names == ("sum", "exp")
    assert program.run({"sum": np.arange(3.0), "exp": 1.0}) == 4.0


def test_program_is_plain_picklable_data() -> None:
    program = compile_source(TUTORIAL)
    again = pickle.loads(pickle.dumps(program))
    assert isinstance(again, Program) and again == program
    assert again.run({"a": A}) == pytest.approx(1433.6)
    assert program.num_ops == 8 and program.kind == "program"


def test_index_arrays_must_hold_integers() -> None:
    with pytest.raises(LanguageError, match="must hold integers"):
        run("x[[10 ** 30]]")
    with pytest.raises(LanguageError, match="must hold integers"):
        run("x[[0.5]]")
    np.testing.assert_array_equal(run("x[idx]", x=X, idx=np.array([3.0, 1.0])), X[[3, 1]])


def test_scalar_loop_counters_meet_ops_as_floats() -> None:
    out = run("s = 0\nfor i in range(70):\n    s = s + 2 ** i\nreturn s")
    assert out == sum(2.0**i for i in range(70))  # no int64 wrap-around


def test_computed_integral_values_serve_as_indices_and_bounds() -> None:
    env = {"x": np.arange(5.0), "y": np.ones(2)}
    assert compile_source("x[sum(y)]").run(env) == 2.0
    assert compile_source("reshape(x[1:], [sum(y), -1])").run(env).shape == (2, 2)
    program = compile_source("s = 0\nfor i in range(sum(y) + 1):\n    s = s + i\nreturn s")
    assert program.run(env) == 3.0
    with pytest.raises(LanguageError, match="an index must be an integer, got 1.0"):
        compile_source("x[1.0]").run(env)  # a float literal is not an index, as in Python


# --- expressions compiled to closures (engine/lang/interp.py) --------------------------------


def test_indexing_an_ops_several_results_by_constant() -> None:
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    sign, logdet = np.linalg.slogdet(a)
    assert run("return slogdet(a)[0] * slogdet(a)[1]", a=a) == pytest.approx(sign * logdet)
    with pytest.raises(LanguageError, match="bad index into a tuple of 2 results at line 1"):
        run("return slogdet(a)[2]", a=a)


def test_constant_and_computed_indices_agree() -> None:
    # x[1:5:2], x[..., 2] and x[None, 0] are worked out when compiled; x[i] at run time
    x = np.arange(8.0) ** 2
    source = "i = 3\nreturn sum(x[1:5:2]) + x[..., 2] + sum(x[None, 0]) + x[i] + x[-1]"
    expected = x[1:5:2].sum() + x[2] + x[None, 0].sum() + x[3] + x[-1]
    assert run(source, x=x) == pytest.approx(expected)
    grad = engine.grad(lambda v: compile_source(source).run({"x": v}))(x)
    want = np.zeros(8)
    for k in (1, 3, 2, 0, 3, 7):
        want[k] += 1.0
    np.testing.assert_array_equal(grad, want)


def test_compiled_expressions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.lang import interp

    monkeypatch.setattr(interp, "_COMPILED_MAX", 50)
    for k in range(40):
        assert run(f"return x[{k % 6}] * {k} + sin(x[0])") == pytest.approx(
            X[k % 6] * k + math.sin(X[0])
        )
    assert 0 < len(interp._compiled) <= 50


@pytest.mark.parametrize(
    ("source", "dtype"),
    [
        ("mean([sum(x), sum(x * 2)])", np.float32),  # float32 values alone stay float32
        ("[sum(x), 1.5]", np.float64),  # a number literal is float64, as np.array makes it
        ("[1, 2]", np.float64),
        ("[x[0] > 0, x[1] > 0]", np.float64),
        ("max([sum(x), sum(c)])", np.float32),  # a float32 constant beside a traced value
    ],
)
def test_a_list_literal_has_numpys_dtype_traced_or_not(source: str, dtype: Any) -> None:
    """The differential run found mean([...]) of float32 values float64 untraced and float32
    traced (so a JVP's dtype differed from its value's)."""
    x = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    c = np.array([1.0, 2.0], dtype=np.float32)
    program = compile_source(source)
    assert program.run({"x": x, "c": c}).dtype == dtype
    if "x" in source and "> 0" not in source:
        run = lambda v: program.run({"x": v, "c": c})  # noqa: E731
        value, tangent = engine.jvp(run, (x,), (np.ones_like(x),))
        assert value.dtype == tangent.dtype == dtype
