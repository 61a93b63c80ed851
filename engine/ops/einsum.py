"""einsum: subscripts normalised once (explicit output, ``...`` expanded), each operand's
cotangent an einsum of ``g`` with the other operands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.errors import ShapeError, ValueDomainError
from engine.ops._linalg import (
    LETTERS,
    Shape,
    _dtype,
    _fail,
)
from engine.ops._util import (
    PerArgument,
    sum_tangents,
)
from engine.ops.kinds import def_custom
from engine.registry import shape_of

# --- einsum ---------------------------------------------------------------------------------
# Subscripts are normalised before dispatch: explicit output, every ellipsis expanded to
# letters. A rule can then say "...": the batch axes get fresh letters of their own.


def _parse_terms(subscripts: str, n: int) -> tuple[list[str], str | None]:
    if not isinstance(subscripts, str):
        raise ValueDomainError(
            "einsum: the first argument must be a subscripts string", op="einsum"
        )
    s = subscripts.replace(" ", "")
    lhs, arrow, out = s.partition("->")
    terms = lhs.split(",")
    if len(terms) != n:
        raise ShapeError(
            f"einsum: {subscripts!r} names {len(terms)} operands but {n} were given", op="einsum"
        )
    for term in [*terms, out]:
        body = term.replace("...", "", 1)
        if any(c not in LETTERS for c in body):
            raise ValueDomainError(f"einsum: invalid subscripts {subscripts!r}", op="einsum")
    return terms, (out if arrow else None)


def normalize_einsum(subscripts: str, shapes: list[Shape]) -> str:
    """``subscripts`` with an explicit output and ellipses expanded to letters."""
    terms, out = _parse_terms(subscripts, len(shapes))
    ell_ndims = []
    for term, shape in zip(terms, shapes, strict=True):
        named = len(term.replace("...", ""))
        ell = len(shape) - named if "..." in term else 0
        if ell < 0 or ("..." not in term and named != len(shape)):
            raise _fail("einsum", f"subscripts {term!r} do not fit an operand", shape)
        ell_ndims.append(ell)
    if out is None:
        letters = "".join(terms).replace(".", "")
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        out = ("..." if any("..." in t for t in terms) else "") + "".join(once)
    width = max(ell_ndims, default=0)
    if width and "..." not in out:
        raise ShapeError(
            "einsum: the output needs '...' for the broadcast axes of the operands", op="einsum"
        )
    fresh = [c for c in LETTERS if c not in subscripts]
    if width > len(fresh):
        raise ShapeError("einsum: too many axes (at most 52 indices)", op="einsum")
    axes = "".join(fresh[:width])
    terms = [t.replace("...", axes[width - n :]) for t, n in zip(terms, ell_ndims, strict=True)]
    out = out.replace("...", axes)
    if len(set(out)) != len(out) or any(c not in "".join(terms) for c in out):
        raise ValueDomainError(f"einsum: invalid output subscripts in {subscripts!r}", op="einsum")
    return ",".join(terms) + "->" + out


def _split(subscripts: str) -> tuple[list[str], str]:
    lhs, _, out = subscripts.partition("->")
    return lhs.split(","), out


def _prepare_einsum(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if "subscripts" in kwargs:
        subscripts, operands = kwargs["subscripts"], args
    elif args:
        subscripts, operands = args[0], args[1:]
    else:
        raise ValueDomainError("einsum: missing subscripts", op="einsum")
    if "operands" in kwargs:
        operands = tuple(kwargs["operands"])
    normal = normalize_einsum(subscripts, [shape_of(x) for x in operands])
    return tuple(operands), {"subscripts": normal}


def _letter_sizes(subscripts: str, operands: tuple[Any, ...]) -> dict[str, int]:
    """The size of each index (1 broadcasts, as in NumPy); ShapeError on a mismatch."""
    terms, _ = _split(subscripts)
    sizes: dict[str, int] = {}
    shapes = [shape_of(x) for x in operands]
    for term, shape in zip(terms, shapes, strict=True):
        mine: dict[str, int] = {}
        for c, d in zip(term, shape, strict=True):
            if mine.setdefault(c, d) != d:
                raise _fail("einsum", f"repeated index {c!r} has sizes {mine[c]} and {d}", shape)
            if sizes.get(c, 1) not in (1, d) and d != 1:
                raise _fail("einsum", f"index {c!r} has sizes {sizes[c]} and {d}", *shapes)
            sizes[c] = max(sizes.get(c, 1), d)
    return sizes


def _einsum_shape(*operands: Any, subscripts: str) -> Shape:
    sizes = _letter_sizes(subscripts, operands)
    return tuple(sizes[c] for c in _split(subscripts)[1])


def _einsum_impl(*operands: Any, subscripts: str) -> Any:
    # NumPy's plain loop walks the whole index space (``i,j->`` on two 10^6-vectors: 10^12
    # steps); the greedy path sums private indices first and uses BLAS, but takes time to
    # plan, so only small two-operand sums (index space <= 4096^2) take the plain loop.
    big = len(operands) > 2 or max((np.size(x) for x in operands), default=0) > 4096
    return np.einsum(subscripts, *operands, optimize="greedy" if big else False)


def _fit(r: Any, shape: Shape) -> Any:
    """Bring ``r`` (batch + an operand's shape up to broadcasting) to batch + ``shape``."""
    rshape = shape_of(r)
    nb = len(rshape) - len(shape)
    if rshape[nb:] == shape:
        return r
    axes = tuple(i - len(shape) for i, d in enumerate(shape) if d == 1 and rshape[nb + i] != 1)
    if axes:
        r = anp.sum(r, axis=axes, keepdims=True)
    return anp.broadcast_to(r, rshape[:nb] + shape)


def _einsum_vjp(i: int) -> Callable[..., Any]:
    def vjp(g: Any, ans: Any, *operands: Any, subscripts: str) -> Any:
        terms, out = _split(subscripts)
        x = operands[i]
        xshape = shape_of(x)
        fresh = iter(c for c in LETTERS if c not in subscripts)
        others = [t for j, t in enumerate(terms) if j != i]
        extra_terms: list[str] = []
        extra_ops: list[Any] = []
        target = ""
        for pos, c in enumerate(terms[i]):
            if c in target:
                # a diagonal (``ii``): spread g over it with an identity
                f = next(fresh, None)
                if f is None:
                    raise ShapeError("einsum: too many indices to differentiate", op="einsum")
                target += f
                extra_terms.append(c + f)
                extra_ops.append(np.eye(xshape[pos], dtype=_dtype(g)))
            else:
                target += c
        for pos, c in enumerate(terms[i]):
            if c not in out and all(c not in t for t in others) and terms[i].index(c) == pos:
                # an index summed in x alone: the cotangent is constant along it
                extra_terms.append(c)
                extra_ops.append(np.ones(xshape[pos], dtype=_dtype(g)))
        rest = [x for j, x in enumerate(operands) if j != i]
        spec = ",".join(["..." + out, *others, *extra_terms]) + "->..." + target
        return _fit(anp.einsum(spec, g, *rest, *extra_ops), xshape)

    return vjp


def _einsum_jvp(tangents: list[Any], ans: Any, *operands: Any, subscripts: str) -> Any:
    terms, out = _split(subscripts)
    parts = []
    for i, t in enumerate(tangents):
        if t is None:
            continue
        spec = ",".join(("..." if j == i else "") + term for j, term in enumerate(terms))
        args = [t if j == i else x for j, x in enumerate(operands)]
        parts.append(anp.einsum(spec + "->..." + out, *args))
    return sum_tangents(parts)


def_custom(
    "einsum",
    _einsum_impl,
    "subscripts:s, *operands",
    "Einstein summation over the operands as the subscripts say (NumPy's einsum).",
    _einsum_shape,
    vjps=PerArgument(_einsum_vjp),
    jvp=_einsum_jvp,
    prepare=_prepare_einsum,
    cost="contraction",
)
