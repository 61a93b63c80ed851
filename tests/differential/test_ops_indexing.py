"""Indexing through the language against JAX (float64), on random index forms.

Each case is a random chain of one or two NumPy indices (``tests/engine/test_indexing``'s
generator: integers, slices with any step, None, ..., integer arrays of any rank with
negative and repeated entries, boolean masks, mixed and placed anywhere, on shapes with
axes of size 1) written as text the way a user writes it: integer arrays as list
literals or as inputs, masks as comparisons of an input (``m0 > 0``). The program
``sum(sin(x[...]) * w)`` is compared with JAX for the value, the gradient (reverse), the
JVP (forward), the Hessian-vector product (forward over reverse), and ``x[...]``'s
Jacobian in both modes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
from engine.lang import compile_source
from tests.engine.test_indexing import _apply, _case

COVERED = {"getitem"}  # every x[...] form here is getitem (tests/differential/test_differential.py)

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

SEEDS = range(30)


def _item(item: Any, k: int, inputs: dict[str, Any], as_input: bool) -> str:
    """One index item as language text; arrays and masks may become inputs."""
    if item is None:
        return "None"
    if item is Ellipsis:
        return "..."
    if isinstance(item, slice):
        parts = ["" if p is None else str(p) for p in (item.start, item.stop, item.step)]
        return ":".join(parts)
    if isinstance(item, np.ndarray) and item.dtype == np.bool_:
        name = f"m{k}"
        inputs[name] = np.where(item, 1.0, -1.0)  # a float input; the mask is m > 0
        return f"({name} > 0)"
    if isinstance(item, np.ndarray):
        if as_input and item.ndim:
            name = f"i{k}"
            inputs[name] = item.astype(np.float64)  # integral floats index, as JSON ones do
            return name
        return str(item.tolist())
    return str(int(item))


def _text(chain: list[tuple[Any, ...]], seed: int) -> tuple[str, dict[str, Any]]:
    inputs: dict[str, Any] = {}
    parts = []
    k = 0
    for index in chain:
        items = []
        for item in index:
            items.append(_item(item, k, inputs, as_input=seed % 3 == 0))
            k += 1
        parts.append("[" + (", ".join(items) if items else "...") + "]")
    return "x" + "".join(parts), inputs


def _jax_chain(chain: list[tuple[Any, ...]]) -> Any:
    def f(x: Any) -> Any:
        for index in chain:
            x = x[tuple(jnp.asarray(i) if isinstance(i, np.ndarray) else i for i in index)]
        return x

    return f


@pytest.mark.parametrize("seed", SEEDS)
def test_indexing_text_against_jax(seed: int) -> None:
    x, chain = _case(seed)
    text, extra = _text(chain, seed)
    rng = np.random.default_rng(seed + 1000)
    y = _apply(x, chain)
    w = rng.normal(size=np.shape(y))
    index_program = compile_source(text)
    program = compile_source(f"sum(sin({text}) * w)")
    env = {**extra, "w": w}
    f = lambda v: program.run({**env, "x": v})  # noqa: E731
    g = lambda v: index_program.run({**extra, "x": v})  # noqa: E731
    jf = lambda v: jnp.sum(jnp.sin(_jax_chain(chain)(v)) * w)  # noqa: E731

    np.testing.assert_array_equal(g(x), y, err_msg=text)
    np.testing.assert_allclose(f(x), jf(x), rtol=1e-12, err_msg=text)
    np.testing.assert_allclose(ad.grad(f)(x), jax.grad(jf)(x), rtol=1e-12, atol=1e-14)
    t = rng.normal(size=x.shape)
    _, ours = ad.jvp(f, (x,), (t,))
    _, theirs = jax.jvp(jf, (x,), (t,))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12, err_msg=text)
    (hvp,) = ad.hvp(f, (x,), (t,))
    _, jax_hvp = jax.jvp(jax.grad(jf), (x,), (t,))
    np.testing.assert_allclose(hvp, jax_hvp, rtol=1e-10, atol=1e-12, err_msg=text)
    want_jac = jax.jacfwd(_jax_chain(chain))(x)
    for mode in ("reverse", "forward"):
        jac = ad.jacobian(g, mode=mode)(x)
        assert np.shape(jac) == np.shape(want_jac), (mode, text)
        np.testing.assert_array_equal(jac, want_jac, err_msg=f"{mode} {text}")
