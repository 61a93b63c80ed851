"""Finite-difference checks of a batch's answer (``check: true`` with ``batch``). No web imports.

The points are independent, so one central difference of the batched function along a
direction that is the same at every point checks every point at once: the cost is that of
the single-point check (a handful of batched forward passes), whatever B. The directions are
those of ``app.compute.checks``: every per-point coordinate for small inputs, seeded random
directions otherwise; with K directions, the first few of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from app.compute.checks import FD_COORDINATES_UP_TO, FD_RANDOM_DIRECTIONS, FD_SEED, _errors, _first
from app.compute.problem import Problem, output_list

Arrays = tuple[Any, ...]


def _basis(problem: Problem) -> list[Arrays]:
    """Directions of the differentiated inputs, each (B, *per-point shape), the same at
    every point."""
    shapes = [tuple(problem.point_shapes[n]) for n in problem.diff]
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    if total == 0:
        return []
    if total <= FD_COORDINATES_UP_TO:
        flat = np.eye(total)
    else:
        flat = np.random.default_rng(FD_SEED).standard_normal((FD_RANDOM_DIRECTIONS, total))
    splits = np.cumsum(sizes)[:-1]
    size = problem.batch or 1
    return [
        tuple(
            np.broadcast_to(p.reshape(s), (size, *s))
            for p, s in zip(np.split(row, splits), shapes, strict=True)
        )
        for row in flat
    ]


def _central(g: Callable[[Arrays], list[Any]], problem: Problem, direction: Arrays) -> list[Any]:
    scale = max([1.0] + [float(np.max(np.abs(x), initial=0.0)) for x in problem.primals])
    size = max([float(np.max(np.abs(d), initial=0.0)) for d in direction] + [1e-300])
    h = 6e-6 * scale / size
    xs = [np.asarray(x, dtype=np.float64) for x in problem.primals]
    plus = g(tuple(x + h * d for x, d in zip(xs, direction, strict=True)))
    minus = g(tuple(x - h * d for x, d in zip(xs, direction, strict=True)))
    return [
        (np.asarray(p, dtype=np.float64) - np.asarray(m, dtype=np.float64)) / (2 * h)
        for p, m in zip(plus, minus, strict=True)
    ]


def _outputs(problem: Problem) -> Callable[[Arrays], list[Any]]:
    f = problem.fn()
    return lambda xs: output_list(f(*xs))[0]


def _gradients(problem: Problem) -> Callable[[Arrays], list[Any]]:
    from app.compute.batch import _grads_fn

    g = _grads_fn(problem)
    return lambda xs: list(g(*xs)[1:])


def _per_point(a: Any) -> Any:
    """Sum over every axis but the leading one (B): a per-point inner product's terms."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1).sum(axis=1)


def _apply(block: Any, d: Any, nd: int) -> Any:
    """``block`` (B, *out, *in) applied to ``d`` (B, *in) per point: (B, *out)."""
    block = np.asarray(block, dtype=np.float64)
    size = block.shape[0]
    in_size = math.prod(d.shape[1:])
    flat = block.reshape(size, -1, in_size) @ np.asarray(d, np.float64).reshape(size, in_size, 1)
    return flat.reshape(block.shape[: block.ndim - nd])


def check(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    endpoint = problem.task.endpoint
    if not problem.diff:
        return _errors([], 0)
    return _CHECKS[endpoint](problem, result)


def _vjp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    derivative = result.get("gradients", result.get("vjp", {}))
    cots = problem.used["cotangents"]
    many = problem.task.cotangents is not None and problem.task.endpoint == "vjp"
    pairs: list[tuple[Any, Any]] = []
    ks = _first(cots[0].shape[0]) if many else [None]
    outputs = _outputs(problem)
    for k in ks:
        cs = [c[k] for c in cots] if k is not None else cots

        def scalar(xs: Arrays, cs: list[Any] = cs) -> list[Any]:
            outs = outputs(xs)
            return [sum(_per_point(c * o) for c, o in zip(cs, outs, strict=True))]

        for d in _basis(problem):
            ad = sum(
                _per_point((derivative[n][:, k] if k is not None else derivative[n]) * dn)
                for n, dn in zip(problem.diff, d, strict=True)
            )
            pairs.append((ad, _central(scalar, problem, d)[0]))
    return _errors(pairs, len(pairs))


def _jvp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    tangents = problem.used["tangents"]
    multi = isinstance(result["value"], list)
    ad = result["jvp"] if multi else [result["jvp"]]
    if problem.task.tangents_batch is None:
        fd = _central(_outputs(problem), problem, tangents)
        return _errors(list(zip(ad, fd, strict=True)), 1)
    pairs = []
    checked = _first(tangents[0].shape[0])
    for k in checked:
        fd = _central(_outputs(problem), problem, tuple(t[k] for t in tangents))
        pairs += [(a[:, k], b) for a, b in zip(ad, fd, strict=True)]
    return _errors(pairs, len(checked))


def _jacobian(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    multi = isinstance(result["value"], list)
    outs = result["value"] if multi else [result["value"]]
    pairs = []
    basis = _basis(problem)
    for d in basis:
        fd = _central(_outputs(problem), problem, d)
        for k, out in enumerate(outs):
            jv = sum(
                _apply(
                    result["jacobian"][n][k] if multi else result["jacobian"][n], dn, dn.ndim - 1
                )
                for n, dn in zip(problem.diff, d, strict=True)
            )
            pairs.append((np.reshape(jv, np.shape(out)), fd[k]))
    return _errors(pairs, len(basis))


def _hessian(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    pairs = []
    basis = _basis(problem)
    for d in basis:
        fd = _central(_gradients(problem), problem, d)
        for i, a in enumerate(problem.diff):
            hv = sum(
                _apply(result["hessian"][a][b], db, db.ndim - 1)
                for b, db in zip(problem.diff, d, strict=True)
            )
            pairs.append((hv, fd[i]))
    return _errors(pairs, len(basis))


def _hvp(problem: Problem, result: dict[str, Any]) -> dict[str, Any]:
    vectors = problem.used["vectors"]
    hvp = result["hvp"]
    if problem.task.vectors_batch is None:
        fd = _central(_gradients(problem), problem, vectors)
        return _errors([(hvp[n], g) for n, g in zip(problem.diff, fd, strict=True)], 1)
    pairs = []
    checked = _first(vectors[0].shape[0])
    for k in checked:
        fd = _central(_gradients(problem), problem, tuple(v[k] for v in vectors))
        pairs += [(hvp[n][:, k], g) for n, g in zip(problem.diff, fd, strict=True)]
    return _errors(pairs, len(checked))


_CHECKS = {
    "grad": _vjp,
    "vjp": _vjp,
    "jvp": _jvp,
    "jacobian": _jacobian,
    "hessian": _hessian,
    "hvp": _hvp,
}
