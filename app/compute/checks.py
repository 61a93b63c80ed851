"""Finite-difference checks of each endpoint's answer (``"check": true``). No web imports.

Each check compares the same derivative the endpoint answered with central differences
of the function along a few directions: every coordinate for small inputs, seeded
random directions otherwise, so the cost stays a handful of forward passes whatever
the size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import engine
from app.compute.problem import (
    Arrays,
    Problem,
    batched_cotangents,
    cotangents_for,
    directions_for,
    output_list,
)

# Every coordinate up to this many input elements, else random directions.
FD_COORDINATES_UP_TO = 16
FD_RANDOM_DIRECTIONS = 6
FD_SEED = 0


def _basis(problem: Problem) -> list[Arrays]:
    shapes = [problem.inputs[n].shape for n in problem.diff]
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    if total == 0:
        return []
    complex_inputs = [problem.inputs[n].dtype.kind == "c" for n in problem.diff]
    if any(complex_inputs):
        return _complex_basis(problem, shapes, sizes, complex_inputs)
    if total <= FD_COORDINATES_UP_TO:
        flat = np.eye(total)
    else:
        flat = np.random.default_rng(FD_SEED).standard_normal((FD_RANDOM_DIRECTIONS, total))
    return _split(flat, shapes, sizes)


def _split(flat: Any, shapes: list[tuple[int, ...]], sizes: list[int]) -> list[Arrays]:
    splits = np.cumsum(sizes)[:-1]
    return [
        tuple(p.reshape(s) for p, s in zip(np.split(row, splits), shapes, strict=True))
        for row in flat
    ]


def _complex_basis(
    problem: Problem, shapes: list[tuple[int, ...]], sizes: list[int], complex_inputs: list[bool]
) -> list[Arrays]:
    """Directions in the real coordinates of complex inputs: a complex input's real and
    imaginary parts are perturbed separately (every coordinate of each for small inputs,
    else random complex directions)."""
    total = sum(sizes)
    flags = np.concatenate([np.full(n, c) for n, c in zip(sizes, complex_inputs, strict=True)])
    if total + int(flags.sum()) <= FD_COORDINATES_UP_TO:
        eye = np.eye(total, dtype=np.complex128)
        flat = np.concatenate([eye, 1j * eye[flags]])
    else:
        rng = np.random.default_rng(FD_SEED)
        shape = (FD_RANDOM_DIRECTIONS, total)
        flat = rng.standard_normal(shape) + 1j * flags * rng.standard_normal(shape)
    return _split(flat, shapes, sizes)


def _wide(x: Any) -> Any:
    """``x`` in float64, or complex128 when complex (the finite differences' precision)."""
    x = np.asarray(x)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _shifted(problem: Problem, direction: Arrays, t: float) -> Arrays:
    return tuple(
        _wide(problem.inputs[n]) + t * (d if problem.inputs[n].dtype.kind == "c" else d.real)
        for n, d in zip(problem.diff, direction, strict=True)
    )


def _step(problem: Problem, direction: Arrays) -> float:
    scale = max(
        [1.0] + [float(np.max(np.abs(problem.inputs[n]), initial=0.0)) for n in problem.diff]
    )
    size = max([float(np.max(np.abs(d), initial=0.0)) for d in direction] + [1e-300])
    return 6e-6 * scale / size


def _central(g: Callable[[Arrays], list[Any]], problem: Problem, direction: Arrays) -> list[Any]:
    h = _step(problem, direction)
    plus, minus = g(_shifted(problem, direction, h)), g(_shifted(problem, direction, -h))
    # float64: a comparison's output is boolean (NumPy has no boolean subtraction)
    return [(_wide(p) - _wide(m)) / (2 * h) for p, m in zip(plus, minus, strict=True)]


def _errors(pairs: list[tuple[Any, Any]], directions: int) -> dict[str, Any]:
    if not pairs:
        return {"max_abs_error": 0.0, "max_rel_error": 0.0, "directions": 0}
    abs_err = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0)) for a, b in pairs
    )
    scale = max(
        max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        for a, b in pairs
    )
    rel = abs_err / scale if scale > 0 else abs_err
    return {"max_abs_error": abs_err, "max_rel_error": rel, "directions": directions}


def _outputs_of(problem: Problem) -> Callable[[Arrays], list[Any]]:
    f = problem.fn()
    return lambda xs: output_list(f(*xs))[0]


def _gradient_of(problem: Problem) -> Callable[[Arrays], list[Any]]:
    f = problem.fn()
    argnums = tuple(range(len(problem.diff)))
    holomorphic = problem.task.holomorphic
    return lambda xs: list(engine.value_and_grad(f, argnums, holomorphic)(*xs)[1])


def _dot(a: Any, b: Any) -> float:
    """``Re(sum(a * b))``: the pairing under which JAX's convention makes a VJP the
    transpose (for a complex input, ``<g, dz>`` is the directional derivative of a real
    loss whose gradient is ``g = dL/dx - i dL/dy``)."""
    return float(np.real(np.sum(_wide(a) * _wide(b))))


# With K directions (cotangents, tangents_batch, vectors_batch) the first few of them are
# checked, each as its single-direction form is: the cost stays bounded whatever K.
FD_MAX_BATCH_DIRECTIONS = FD_RANDOM_DIRECTIONS


def _first(k: int) -> range:
    return range(min(k, FD_MAX_BATCH_DIRECTIONS))


def check_vjp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """<vjp, v> against the central difference of <cotangent, f> along v."""
    derivative = result.get("gradients", result.get("vjp", {}))
    outs, multi = output_list(result["value"])
    if problem.task.cotangents is not None:
        many = batched_cotangents(problem, outs, multi)
        pairs: list[tuple[Any, Any]] = []
        for k in _first(many[0].shape[0]):
            one = {n: g[k] for n, g in derivative.items()}
            pairs += _vjp_pairs(problem, [c[k] for c in many], one)
        return _errors(pairs, len(pairs))
    cots = cotangents_for(problem, outs, multi, required=False)
    pairs = _vjp_pairs(problem, cots, derivative)
    return _errors(pairs, len(pairs))


def _vjp_pairs(problem: Problem, cots: list[Any], derivative: dict[str, Any]) -> list[Any]:
    outputs = _outputs_of(problem)

    def scalar(xs: Arrays) -> list[Any]:
        return [sum(_dot(c, o) for c, o in zip(cots, outputs(xs), strict=True))]

    pairs = []
    for d in _basis(problem):
        ad = sum(_dot(derivative[n], dn) for n, dn in zip(problem.diff, d, strict=True))
        pairs.append((ad, _central(scalar, problem, d)[0]))
    return pairs


def check_jvp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """The JVP against the central difference of f along the tangent."""
    tangents = directions_for(problem, "tangents")
    if not problem.diff:
        return _errors([], 0)
    multi = isinstance(result["value"], list)
    ad = result["jvp"] if multi else [result["jvp"]]
    if problem.task.tangents_batch is None:
        fd = _central(_outputs_of(problem), problem, tangents)
        return _errors(list(zip(ad, fd, strict=True)), 1)
    pairs = []
    checked = _first(tangents[0].shape[0])
    for k in checked:
        fd = _central(_outputs_of(problem), problem, tuple(t[k] for t in tangents))
        pairs += [(a[k], b) for a, b in zip(ad, fd, strict=True)]
    return _errors(pairs, len(checked))


def check_jacobian(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """J v against the central difference of f along v, for each direction v."""
    multi = isinstance(result["value"], list)
    outs = result["value"] if multi else [result["value"]]
    pairs = []
    basis = _basis(problem)
    for d in basis:
        fd = _central(_outputs_of(problem), problem, d)
        for k, out in enumerate(outs):
            jv = sum(
                np.tensordot(
                    np.asarray(result["jacobian"][n][k] if multi else result["jacobian"][n]),
                    dn,
                    axes=dn.ndim,
                )
                for n, dn in zip(problem.diff, d, strict=True)
            )
            pairs.append((np.reshape(jv, np.shape(out)), fd[k]))
    return _errors(pairs, len(basis))


def check_hessian(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """H v against the central difference of the gradient along v."""
    pairs = []
    basis = _basis(problem)
    for d in basis:
        fd = _central(_gradient_of(problem), problem, d)
        for i, a in enumerate(problem.diff):
            hv = sum(
                np.tensordot(np.asarray(result["hessian"][a][b]), db, axes=db.ndim)
                for b, db in zip(problem.diff, d, strict=True)
            )
            pairs.append((hv, fd[i]))
    return _errors(pairs, len(basis))


def check_hvp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    """The HVP against the central difference of the gradient along the vector."""
    vectors = directions_for(problem, "vectors")
    if not problem.diff:
        return _errors([], 0)
    hvp = result["hvp"]
    if problem.task.vectors_batch is None:
        fd = _central(_gradient_of(problem), problem, vectors)
        return _errors([(hvp[n], g) for n, g in zip(problem.diff, fd, strict=True)], 1)
    pairs = []
    checked = _first(vectors[0].shape[0])
    for k in checked:
        fd = _central(_gradient_of(problem), problem, tuple(v[k] for v in vectors))
        pairs += [(hvp[n][k], g) for n, g in zip(problem.diff, fd, strict=True)]
    return _errors(pairs, len(checked))
