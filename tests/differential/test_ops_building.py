"""Differential tests of the building and reshaping ops against JAX (float64).

Each row is one function written once against a NumPy-like module (``anp`` for the
engine, ``jax.numpy`` for the reference) on random inputs: contiguous, non-contiguous
(strided, reversed, transposed views) and broadcast (zero-stride) arrays, several axes,
sizes 0 and 1. For each, the value, a VJP, a JVP, the Jacobian in both modes and the
Hessian of a smooth scalar of the result (``sum(sin(f(x)) * w)``: the ops are linear, so
the Hessian checks how their rules compose with a non-linear op, to second order) are
compared with references made from JAX's Jacobian (``test_against_jax``).

Several results (split, meshgrid) are compared one by one.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

# the ops this file checks against JAX (the random-program generator does not make them)
COVERS_TEXT = """
array asarray ravel moveaxis rollaxis roll pad atleast_1d atleast_2d atleast_3d vstack
row_stack hstack dstack column_stack append split array_split hsplit vsplit dsplit meshgrid
tril_indices tril_indices_from triu_indices triu_indices_from diag_indices diag_indices_from
flipud fliplr rot90 diagonal
"""
COVERED = frozenset(COVERS_TEXT.split())
TOL = 1e-10


@dataclass
class Row:
    name: str
    fn: Callable[..., Any]  # fn(module, *xs)
    shapes: tuple[tuple[int, ...], ...]
    layout: str = "plain"  # plain, strided, reversed, transposed, broadcast
    # "numpy" where JAX refuses what NumPy allows (split at out-of-order indices, meshgrid
    # of 2-D inputs): the reference is then NumPy's function itself, its Jacobian made of
    # its values on the basis vectors (the ops are affine)
    ref: str = "jax"

    @property
    def id(self) -> str:
        shapes = "-".join("x".join(map(str, s)) or "s" for s in self.shapes)
        return f"{self.name}[{shapes}-{self.layout}]"


def _layout(x: np.ndarray, layout: str, rng: np.random.Generator) -> np.ndarray:
    """The same values as ``x`` in another memory layout."""
    if layout == "strided":
        big = np.zeros(tuple(2 * d for d in x.shape))
        big[tuple(slice(None, None, 2) for _ in x.shape)] = x
        return big[tuple(slice(None, None, 2) for _ in x.shape)]
    if layout == "reversed":
        flipped = np.ascontiguousarray(x[tuple(slice(None, None, -1) for _ in x.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in x.shape)]
    if layout == "transposed":
        return np.ascontiguousarray(x.T).T
    if layout == "broadcast" and x.ndim:
        row = rng.normal(size=x.shape[1:])
        return np.broadcast_to(row, x.shape)
    return x


def _rows() -> list[Row]:
    rows = []

    def add(
        name: str,
        fn: Callable[..., Any],
        *shapes: tuple[int, ...],
        layouts: str = "",
        ref: str = "jax",
    ) -> None:
        for layout in ["plain", *layouts.split()]:
            rows.append(Row(name, fn, shapes, layout, ref))

    add("array", lambda m, x: m.array([x[0], 2.0 * x[1], x[0] - x[1]]), (2, 3), layouts="strided")
    add("array", lambda m, x, y: m.array([[x, y], [y, x]]), (3,), (3,), layouts="transposed")
    add("array", lambda m, x: m.array(x, ndmin=3), (0, 2))
    add("asarray", lambda m, x, y: m.asarray([x, y + 1.0]), (2, 1), (2, 1), layouts="broadcast")
    add("ravel", lambda m, x: m.ravel(x), (3, 4), layouts="transposed strided")
    add("ravel", lambda m, x: m.ravel(x, order="F"), (2, 3, 2), layouts="reversed")
    add("ravel", lambda m, x: m.ravel(x), (0, 3))
    add("moveaxis", lambda m, x: m.moveaxis(x, -1, 0), (2, 3, 4), layouts="transposed")
    add("moveaxis", lambda m, x: m.moveaxis(x, (0, 2), (-1, 0)), (2, 1, 3, 2))
    add("rollaxis", lambda m, x: m.rollaxis(x, -1, 1), (2, 3, 4), layouts="strided")
    add("rollaxis", lambda m, x: m.rollaxis(x, 1, 3), (2, 3, 4))
    add("roll", lambda m, x: m.roll(x, 5), (3, 4), layouts="reversed")
    add("roll", lambda m, x: m.roll(x, (2, -1, 7), axis=(0, 1, 0)), (3, 4), layouts="broadcast")
    add("roll", lambda m, x: m.roll(x, 3, axis=-1), (2, 0))
    add("roll", lambda m, x: m.roll(x, -1, axis=0), (1, 3))
    for mode in ("constant", "edge", "reflect", "symmetric", "wrap"):
        add("pad", lambda m, x, mode=mode: m.pad(x, ((2, 7), (1, 0)), mode=mode), (3, 2))
        add("pad", lambda m, x, mode=mode: m.pad(x, 4, mode=mode), (1,), layouts="strided")
        add(
            "pad",
            lambda m, x, mode=mode: m.pad(x, (1, 2), mode=mode),
            (2, 3, 2),
            layouts="transposed",
        )
    add("pad", lambda m, x: m.pad(x, 2), (0, 0))
    add("pad", lambda m, x: m.pad(x, ((1, 0), (0, 0)), mode="edge"), (2, 0))
    add(
        "pad",
        lambda m, x: m.pad(x, ((1, 2), (3, 1)), constant_values=((-1.0, 2.0), (0.5, 4.0))),
        (2, 2),
        layouts="broadcast",
    )
    for nd in (1, 2, 3):
        for shape in [(), (1,), (4,), (2, 3), (2, 1, 3, 2)]:
            add(f"atleast_{nd}d", lambda m, x, nd=nd: getattr(m, f"atleast_{nd}d")(x), shape)
        add(f"atleast_{nd}d", lambda m, x, y, nd=nd: getattr(m, f"atleast_{nd}d")(x, y), (), (3,))
    add("vstack", lambda m, x, y: m.vstack([x, y]), (3,), (3,), layouts="strided")
    add("vstack", lambda m, x, y: m.vstack([x, y]), (2, 3, 2), (1, 3, 2), layouts="transposed")
    add("vstack", lambda m, x: m.vstack(x), (3, 2, 2))
    add("row_stack", lambda m, x, y: m.vstack([x, y]), (0, 2), (3, 2))  # JAX has no row_stack
    add("hstack", lambda m, x, y: m.hstack([x, y]), (2,), (0,))
    add("hstack", lambda m, x, y: m.hstack((x, y)), (3, 1), (3, 2), layouts="broadcast")
    add("hstack", lambda m, x: m.hstack(x), (2, 3, 2))
    add("dstack", lambda m, x, y: m.dstack([x, y]), (2, 3), (2, 3), layouts="reversed")
    add("dstack", lambda m, x, y: m.dstack([x, y]), (4,), (4,))
    add("dstack", lambda m, x: m.dstack(x), (2, 3, 2, 2))
    add("column_stack", lambda m, x, y: m.column_stack([x, y]), (3,), (3, 2), layouts="strided")
    add("column_stack", lambda m, x: m.column_stack(x), (2, 3))
    add("append", lambda m, x, y: m.append(x, y), (2, 3), (), layouts="transposed")
    add("append", lambda m, x, y: m.append(x, y, axis=1), (2, 1), (2, 3))
    add("append", lambda m, x, y: m.append(x, y, axis=0), (0, 2), (1, 2))
    add("split", lambda m, x: m.split(x, 3), (6, 2), layouts="strided")
    add("split", lambda m, x: m.split(x, [1, 3], axis=-1), (2, 5), layouts="transposed")
    add("split", lambda m, x: m.split(x, [1, -1, 4, 9], axis=-1), (2, 5), ref="numpy")
    add("split", lambda m, x: m.split(x, 1, axis=1), (2, 0))
    add("array_split", lambda m, x: m.array_split(x, 4, axis=1), (2, 7), layouts="reversed")
    add("array_split", lambda m, x: m.array_split(x, 3), (1,))
    add("hsplit", lambda m, x: m.hsplit(x, [2]), (3, 4), layouts="broadcast")
    add("hsplit", lambda m, x: m.hsplit(x, 2), (4,))
    add("vsplit", lambda m, x: m.vsplit(x, 2), (4, 2, 3))
    add("dsplit", lambda m, x: m.dsplit(x, [1, 3]), (2, 2, 4), layouts="transposed")
    add("meshgrid", lambda m, x, y: m.meshgrid(x, y), (3,), (2,), layouts="strided")
    add("meshgrid", lambda m, x, y: m.meshgrid(x, y, indexing="ij"), (2,), (3,))
    add("meshgrid", lambda m, x, y: m.meshgrid(x, y, indexing="ij"), (2, 2), (3,), ref="numpy")
    add("meshgrid", lambda m, x, y, z: m.meshgrid(x, y, z, sparse=True), (2,), (1,), (3,))
    add("meshgrid", lambda m, x, y: m.meshgrid(x, y), (0,), (2,))
    add("triu_indices", lambda m, x: x[m.triu_indices(4, 1)], (4, 4), layouts="transposed")
    add("tril_indices", lambda m, x: x[m.tril_indices(3, 0, 5)], (3, 5))
    add("triu_indices_from", lambda m, x: x[m.triu_indices_from(x, -1)], (3, 2))
    add("tril_indices_from", lambda m, x: x[m.tril_indices_from(x)], (2, 4), layouts="strided")
    add("diag_indices", lambda m, x: x[m.diag_indices(3, 3)], (3, 3, 3))
    add("diag_indices_from", lambda m, x: x[m.diag_indices_from(x)], (2, 2), layouts="reversed")
    add("flipud", lambda m, x: m.flipud(x), (3, 2), layouts="strided")
    add("fliplr", lambda m, x: m.fliplr(x), (2, 3, 2), layouts="broadcast")
    for k in (-1, 1, 2, 3):
        add("rot90", lambda m, x, k=k: m.rot90(x, k, axes=(1, -1)), (2, 3, 4), layouts="reversed")
    add("rot90", lambda m, x: m.rot90(x), (0, 3))
    add("diagonal", lambda m, x: m.diagonal(x), (3, 4), layouts="transposed")
    add("diagonal", lambda m, x: m.diagonal(x, -1, 2, 0), (3, 2, 4), layouts="strided")
    add("diagonal", lambda m, x: m.diagonal(x, 5), (3, 3))
    add("squeeze", lambda m, x: m.squeeze(x, (0, -1)), (1, 3, 1), layouts="strided")
    add("expand_dims", lambda m, x: m.expand_dims(x, (0, -1, 2)), (2, 3), layouts="transposed")
    return rows


ROWS = _rows()


def _several(out: Any) -> list[Any]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _inputs(row: Row) -> tuple[list[np.ndarray], np.random.Generator]:
    rng = np.random.default_rng(zlib.crc32(row.id.encode()))
    xs = [_layout(rng.normal(size=s), row.layout, rng) for s in row.shapes]
    return xs, rng


def _close(ours: Any, theirs: Any, what: str) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=TOL, atol=TOL, err_msg=what)


def _flat(module: Any, out: Any) -> Any:
    """Every result of the op, flattened into one vector."""
    return module.concatenate([module.ravel(p) for p in _several(out)] + [module.zeros(0)])


def _reference_jacobian(
    row: Row, cs: list[np.ndarray], m: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """The reference's Jacobian blocks (shape output + input) and its value at zero."""
    zeros = [np.zeros_like(c) for c in cs]
    if row.ref == "jax":
        flat = lambda *a: _flat(jnp, row.fn(jnp, *a))  # noqa: E731
        jac = jax.jit(jax.jacrev(flat, tuple(range(len(cs)))))(*cs)
        return [np.asarray(j).reshape(m, *c.shape) for j, c in zip(jac, cs, strict=True)], (
            np.asarray(flat(*zeros))
        )
    base = np.asarray(_flat(np, row.fn(np, *zeros)))
    blocks = []
    for i, c in enumerate(cs):
        cols = []
        for k in range(c.size):
            args = list(zeros)
            args[i] = np.eye(c.size)[k].reshape(c.shape)
            cols.append(np.asarray(_flat(np, row.fn(np, *args))) - base)
        blocks.append(
            np.stack(cols, axis=-1).reshape(m, *c.shape) if cols else np.zeros((m, *c.shape))
        )
    return blocks, base


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_against_jax(row: Row) -> None:
    """Values against jax.numpy's; every derivative against JAX's Jacobian (``jit(jacrev)``).

    The ops are linear, y = sum_i J_i x_i with J_i JAX's Jacobian (checked: JAX's value is
    that sum), so the references follow exactly from J: VJP J_i^T u, JVP sum_i J_i t_i,
    and the Hessian of sum(sin(y) * w), -J_i^T diag(sin(y) w) J_j. One JAX transform per
    row keeps the file fast (JAX's own hessian costs seconds a row here)."""
    xs, rng = _inputs(row)
    cs = [np.array(x) for x in xs]  # contiguous copies for JAX
    argnums = tuple(range(len(xs)))

    ours = _several(row.fn(anp, *xs))
    theirs = _several(row.fn(jnp if row.ref == "jax" else np, *cs))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        _close(a, b, "value")

    def f_ours(*a: Any) -> Any:
        return _flat(anp, row.fn(anp, *a))

    y = np.asarray(_flat(np, theirs))
    jac, offset = _reference_jacobian(row, cs, y.size)
    mats = [j.reshape(y.size, x.size) for j, x in zip(jac, xs, strict=True)]
    affine = offset + sum(m @ x.ravel() for m, x in zip(mats, xs, strict=True))
    np.testing.assert_allclose(affine, y, rtol=1e-12, atol=1e-12)  # so J is the whole story

    u = rng.normal(size=y.shape)
    _, vjp_fn = ad.vjp(f_ours, *xs)
    for g, m, x in zip(vjp_fn(u), mats, xs, strict=True):
        _close(g, (u @ m).reshape(x.shape), "vjp")
    ts = [rng.normal(size=x.shape) for x in xs]
    jvp = sum(m @ t.ravel() for m, t in zip(mats, ts, strict=True))
    _close(ad.jvp(f_ours, xs, ts)[1], np.reshape(jvp, y.shape), "jvp")
    for mode in ("reverse", "forward"):
        for g, j in zip(ad.jacobian(f_ours, argnums, mode=mode)(*xs), jac, strict=True):
            _close(g, j, f"jacobian ({mode})")

    w = rng.normal(size=y.shape)
    hess = ad.hessian(lambda *a: anp.sum(anp.sin(f_ours(*a)) * w), argnums)(*xs)
    curvature = -np.sin(y) * w
    for i in argnums:
        for j in argnums:
            ref = (mats[i].T * curvature) @ mats[j]
            _close(hess[i][j], ref.reshape(xs[i].shape + xs[j].shape), f"hessian[{i}][{j}]")


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("tril_indices", (4,)),
        ("tril_indices", (4, -2, 6)),
        ("tril_indices", (3, 5, 2)),
        ("triu_indices", (5, 1)),
        ("triu_indices", (3, -4, 1)),
        ("triu_indices", (0,)),
        ("diag_indices", (4, 3)),
        ("diag_indices", (0,)),
    ],
)
def test_index_arrays_match_jax(name: str, args: tuple[int, ...]) -> None:
    ours = getattr(anp, name)(*args)
    theirs = getattr(jnp, name)(*args)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
        assert np.asarray(a).dtype.kind == "i"
    assert anp.OPS[name].shape(*args) == (len(ours), np.size(ours[0]))
