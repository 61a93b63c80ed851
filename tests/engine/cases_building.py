"""Test rows for the building and reshaping family (``engine/ops/building.py``), consumed
by ``test_ops.py``: finite differences in float64 in both modes, both Jacobian modes,
second order, float32, fast layer on and off.

An op with several results (``split``, ``meshgrid``, ``atleast_1d(a, b)``) is checked
through a function that joins them back into one array in another order, so every
piece's rule is exercised. Rows avoid bare numbers next to traced values where the
float32 run would promote them (``array([x, 3.0])`` is float64 in NumPy too).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.numpy as anp
from tests.engine.cases import Case


def _joined(pieces: Any) -> Any:
    """The pieces of a split, flattened and joined in reverse order."""
    return anp.concatenate([anp.ravel(p) for p in pieces[::-1]])


def _array_rows() -> list[Case]:
    return [
        Case("array", lambda x: anp.array([x[1], x[0] * 2.0, x[2] + x[0]]), ((3,),)),
        Case(
            "array",
            lambda x: anp.array([[x, x * x], [x + 1.0, 2.0 * x]]),
            ((),),
            tag="nested-scalars",
        ),
        Case("array", lambda x: anp.array([x, 2.0 * x]), ((3, 2),), tag="of-arrays"),
        Case("array", lambda x: anp.array(x), ((),), tag="scalar"),
        Case("array", lambda x: anp.array(x, ndmin=3), ((2,),), tag="ndmin"),
        Case("asarray", lambda x, y: anp.asarray([x, y]), ((2, 3), (2, 3))),
        Case("asarray", lambda x: anp.asarray(x), ((2,),), tag="array"),
    ]


def _reshaping_rows() -> list[Case]:
    return [
        Case("ravel", lambda x: anp.ravel(x), ((2, 3),)),
        Case("ravel", lambda x: anp.ravel(x, order="F"), ((2, 3),), tag="F"),
        Case("ravel", lambda x: anp.ravel(x), ((),), tag="scalar"),
        Case("moveaxis", lambda x: anp.moveaxis(x, 0, -1), ((2, 3, 4),)),
        Case("moveaxis", lambda x: anp.moveaxis(x, (0, 1), (2, 0)), ((2, 3, 4),), tag="tuples"),
        Case("rollaxis", lambda x: anp.rollaxis(x, 2), ((2, 3, 4),)),
        Case("rollaxis", lambda x: anp.rollaxis(x, 0, 2), ((2, 3, 4),), tag="start"),
        Case("roll", lambda x: anp.roll(x, 2), ((2, 3),), tag="flat"),
        Case("roll", lambda x: anp.roll(x, 2, axis=1), ((4, 5),), tag="axis1"),
        Case("roll", lambda x: anp.roll(x, (1, -2), axis=(0, 1)), ((2, 3),), tag="tuples"),
        Case("roll", lambda x: anp.roll(x, (1, 4), axis=(1, 1)), ((2, 3),), tag="repeated"),
        Case("roll", lambda x: anp.roll(x, -7, axis=0), ((3,),), tag="wraps"),
        Case("squeeze", lambda x: anp.squeeze(x, (0, 2)), ((1, 3, 1),), tag="axis-tuple"),
        Case("squeeze", lambda x: anp.squeeze(x, (-1,)), ((2, 1),), tag="axis-neg"),
        Case("expand_dims", lambda x: anp.expand_dims(x, (0, 2, 4)), ((2, 3),), tag="three"),
        Case("expand_dims", lambda x: anp.expand_dims(x, (-1, 0)), ((3,),), tag="neg-first"),
        Case("flipud", anp.flipud, ((3, 2),)),
        Case("fliplr", anp.fliplr, ((2, 3, 2),)),
        Case("rot90", anp.rot90, ((2, 3),)),
        Case("rot90", lambda x: anp.rot90(x, 3, axes=(2, 0)), ((2, 3, 4),), tag="k3-axes"),
        Case("rot90", lambda x: anp.rot90(x, -2), ((2, 3),), tag="k-2"),
        Case("diagonal", anp.diagonal, ((3, 3),)),
        Case("diagonal", lambda x: anp.diagonal(x, 1, -1, 0), ((2, 3, 4),), tag="offset-axes"),
        Case("diagonal", lambda x: anp.diagonal(x, -1), ((3, 2),), tag="below"),
    ]


def _atleast_rows() -> list[Case]:
    rows = []
    for nd in (1, 2, 3):
        op = getattr(anp, f"atleast_{nd}d")
        for shape in [(), (3,), (2, 3), (2, 1, 3)]:
            rows.append(Case(f"atleast_{nd}d", op, (shape,)))
        rows.append(
            Case(
                f"atleast_{nd}d",
                lambda x, y, op=op: anp.concatenate([anp.ravel(a) for a in op(x, y)]),
                ((), (2, 2)),
                tag="two",
            )
        )
    return rows


def _pad_rows() -> list[Case]:
    rows = [
        Case("pad", lambda x: anp.pad(x, 1), ((2, 3),)),
        Case("pad", lambda x: anp.pad(x, ((1, 0), (2, 1))), ((2, 3),), tag="pairs"),
        Case("pad", lambda x: anp.pad(x, (2, 1)), ((3,),), tag="pair"),
        Case(
            "pad",
            lambda x: anp.pad(x, ((1, 2), (0, 1)), constant_values=((1.5, -2.0), (0.5, 3.0))),
            ((2, 2),),
            tag="values",
        ),
    ]
    for mode in ("edge", "reflect", "symmetric", "wrap"):
        rows.append(Case("pad", lambda x, m=mode: anp.pad(x, 2, mode=m), ((3,),), tag=mode))
        rows.append(
            Case(
                "pad",
                lambda x, m=mode: anp.pad(x, ((1, 5), (0, 2)), mode=m),
                ((2, 3),),
                tag=f"{mode}-wide",
            )
        )
    return rows


def _join_rows() -> list[Case]:
    return [
        Case("vstack", lambda x, y: anp.vstack([x, y]), ((3,), (3,))),
        Case("vstack", lambda x, y: anp.vstack((x, y)), ((2, 3), (1, 3)), tag="2d"),
        Case("vstack", lambda x: anp.vstack(x), ((2, 3),), tag="array"),
        Case("vstack", lambda x: anp.vstack(x), ((3,),), tag="array-1d"),
        Case("row_stack", lambda x, y: anp.row_stack([x, y]), ((3,), (3,))),
        Case("hstack", lambda x, y: anp.hstack([x, y]), ((3,), (2,))),
        Case("hstack", lambda x, y: anp.hstack([x, y]), ((2, 3), (2, 1)), tag="2d"),
        Case("hstack", lambda x: anp.hstack([x[0], x[1], x[0]]), ((3,),), tag="scalars"),
        Case("hstack", lambda x: anp.hstack(x), ((2, 3, 2),), tag="array"),
        Case("dstack", lambda x, y: anp.dstack([x, y]), ((2, 3), (2, 3))),
        Case("dstack", lambda x, y: anp.dstack([x, y]), ((3,), (3,)), tag="1d"),
        Case("dstack", lambda x: anp.dstack(x), ((2, 3),), tag="array"),
        Case("column_stack", lambda x, y: anp.column_stack([x, y]), ((3,), (3,))),
        Case("column_stack", lambda x, y: anp.column_stack([x, y]), ((3,), (3, 2)), tag="mixed"),
        Case("column_stack", lambda x: anp.column_stack(x), ((2, 3),), tag="array"),
        Case("append", lambda x, y: anp.append(x, y), ((2, 2), (3,))),
        Case("append", lambda x, y: anp.append(x, y, axis=0), ((2, 3), (1, 3)), tag="axis0"),
        Case("append", lambda x, y: anp.append(x, y, axis=-1), ((2, 1), (2, 2)), tag="axis-1"),
        Case("append", lambda x, y: anp.append(x, y), ((), ()), tag="scalars"),
    ]


def _split_rows() -> list[Case]:
    return [
        Case("split", lambda x: _joined(anp.split(x, 3)), ((6,),)),
        Case("split", lambda x: anp.split(x, 2)[0], ((10,),), tag="first"),
        Case("split", lambda x: _joined(anp.split(x, [1, 3], axis=1)), ((2, 5),), tag="indices"),
        Case("split", lambda x: _joined(anp.split(x, [-1, 1, 9])), ((4,),), tag="odd-indices"),
        Case("split", lambda x: _joined(anp.split(x, 2, axis=-1)), ((3, 2, 4),), tag="axis-1"),
        Case("array_split", lambda x: _joined(anp.array_split(x, 3)), ((7,),)),
        Case("array_split", lambda x: _joined(anp.array_split(x, 4)), ((2,),), tag="empty"),
        Case("hsplit", lambda x: _joined(anp.hsplit(x, 2)), ((3, 4),)),
        Case("hsplit", lambda x: _joined(anp.hsplit(x, [1])), ((3,),), tag="1d"),
        Case("vsplit", lambda x: _joined(anp.vsplit(x, [1])), ((3, 2),)),
        Case("dsplit", lambda x: _joined(anp.dsplit(x, 2)), ((2, 1, 4),)),
    ]


def _meshgrid_rows() -> list[Case]:
    return [
        Case("meshgrid", lambda x, y: anp.stack(anp.meshgrid(x, y)), ((3,), (2,))),
        Case(
            "meshgrid",
            lambda x, y: anp.stack(anp.meshgrid(x, y, indexing="ij")),
            ((3,), (2,)),
            tag="ij",
        ),
        Case(
            "meshgrid",
            lambda x, y, z: anp.stack(anp.meshgrid(x, y, z)) * 1.0,
            ((2,), (3,), (2,)),
            tag="3d",
        ),
        Case(
            "meshgrid",
            lambda x, y: (lambda a, b: anp.sum((a - b) ** 3))(*anp.meshgrid(x * y, x, sparse=True)),
            ((2,), (2,)),
            tag="sparse-nonlinear",
        ),
        Case(
            "meshgrid",
            lambda x, y: (lambda a, b: a * b)(*anp.meshgrid(x, y, sparse=True)),
            ((3,), (2, 2)),
            tag="sparse-2d-input",
        ),
    ]


def _tri(name: str, *args: Any) -> Case:
    fn = getattr(anp, name)
    ref = getattr(np, name)
    return Case(
        name, lambda: fn(*args), (), diff=False, reference=lambda: ref(*args), tag=repr(args)
    )


def _index_rows() -> list[Case]:
    rows = [
        _tri("tril_indices", 3),
        _tri("tril_indices", 4, -1, 6),
        _tri("triu_indices", 3),
        _tri("triu_indices", 4, 2, 3),
        _tri("diag_indices", 3),
        _tri("diag_indices", 2, 3),
    ]
    for name in ("tril_indices_from", "triu_indices_from"):
        rows.append(
            Case(
                name,
                lambda x, n=name: getattr(anp, n)(x, 1),
                ((3, 4),),
                diff=False,
                reference=lambda x, n=name: getattr(np, n)(x, 1),
            )
        )
    rows.append(
        Case(
            "diag_indices_from",
            anp.diag_indices_from,
            ((3, 3),),
            diff=False,
            reference=np.diag_indices_from,
        )
    )
    # the index arrays in use, differentiated through the indexing
    rows += [
        Case("triu_indices", lambda x: x[anp.triu_indices(3)], ((3, 3),), tag="index"),
        Case("tril_indices", lambda x: x[anp.tril_indices(3, -1, 4)], ((3, 4),), tag="index"),
        Case("triu_indices_from", lambda x: x[anp.triu_indices_from(x)], ((2, 3),), tag="index"),
        Case("diag_indices", lambda x: x[anp.diag_indices(3)] ** 2, ((3, 3),), tag="index"),
    ]
    return rows


CASES: list[Case] = (
    _array_rows()
    + _reshaping_rows()
    + _atleast_rows()
    + _pad_rows()
    + _join_rows()
    + _split_rows()
    + _meshgrid_rows()
    + _index_rows()
)
