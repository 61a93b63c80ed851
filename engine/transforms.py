"""Transforms in the style of JAX: NumPy arrays in, NumPy arrays out.

``grad``/``value_and_grad``/``vjp`` trace in reverse mode; ``jvp`` runs forward
mode in one pass with no tape; ``jacobian`` pushes a whole stacked identity
through ONE backward (or forward) pass; ``hessian`` is forward-over-reverse,
also one pass. Each call opens its own trace level, so transforms nest
(``grad(grad(f))``, ``jacobian(grad(f))``) without confusing perturbations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import engine.numpy as anp
from engine.core.backward import backward, toposort
from engine.core.trace import Box, Dual, Var, new_level, recording_tape, unbox
from engine.errors import NonScalarOutputError, ValueDomainError
from engine.fast import switch
from engine.fast.basis import Basis, dense
from engine.registry import shape_of

Fn = Callable[..., Any]
ArgNums = int | Sequence[int]


_F64, _F32 = np.dtype(np.float64), np.dtype(np.float32)
# the dtypes a transform takes (integers and booleans become float64)
INEXACT = (np.float32, np.float64, np.complex64, np.complex128)


def as_array(x: Any) -> Any:
    """A float array for a NumPy/Python input (boxes of outer transforms pass through)."""
    if type(x) is np.ndarray and (x.dtype is _F64 or x.dtype is _F32):  # the common case
        return x
    if isinstance(x, Box):
        return x
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype not in INEXACT:
        raise ValueDomainError(
            f"inputs must be float32, float64, complex64 or complex128 arrays, got {a.dtype}"
        )
    return a


def _argnums(argnums: ArgNums, n: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -n <= i < n:
            raise ValueDomainError(f"argnums {i} is out of range for {n} arguments")
    return tuple(i % n for i in nums)


def _outputs(out: Any) -> tuple[list[Any], bool]:
    """The function's outputs as a list, and whether it returned a tuple/list."""
    if isinstance(out, tuple | list):
        return list(out), True
    return [out], False


def _zeros(x: Any, batch: tuple[int, ...] = ()) -> Any:
    return np.zeros(tuple(batch) + shape_of(x), dtype=np.result_type(unbox_dtype(x)))


def _like(g: Any, primal: Any) -> Any:
    """A gradient in its primal's dtype (float64 constants must not promote it), as JAX does.

    A real primal's cotangent may have picked up an imaginary part (a complex constant
    promoted it): only its real part is the derivative (JAX's convert_element_type rule)."""
    dtype = primal.dtype if type(primal) is np.ndarray else unbox_dtype(primal)
    if dtype.kind == "f" and unbox_dtype(g).kind == "c":
        g = anp.real(g) if isinstance(g, Box) else np.real(g)
    if isinstance(g, np.ndarray | np.generic) and g.dtype != dtype:
        return g.astype(dtype)
    return g


def jacobian_block_like(block: Any, primal: Any) -> Any:
    """A Jacobian block in its input's dtype, made complex (of the input's precision) when
    the output is complex: jax.jacfwd's df/dx of a complex function of a real input."""
    if unbox_dtype(block).kind == "c" and unbox_dtype(primal).kind == "f":
        dtype = np.result_type(unbox_dtype(primal), np.complex64)
        return block.astype(dtype) if isinstance(block, np.ndarray) else block
    return _like(block, primal)


def _in_result_type(g: Any, x: Any, y: Any) -> Any:
    """A Hessian block for (x, y) in ``result_type(x, y)``."""
    dtype = np.result_type(unbox_dtype(x), unbox_dtype(y))
    if isinstance(g, np.ndarray | np.generic) and g.dtype != dtype:
        return g.astype(dtype)
    return g


def _own(g: Any, given: list[Any]) -> Any:
    """``g`` as a writable array of its own: rules may pass arrays through (an input, a
    cotangent, a broadcast view), but a gradient handed out must be safe to modify."""
    if type(g) is not np.ndarray:
        return g
    flags = g.flags
    if not (flags.writeable and flags.owndata):
        return np.array(g)
    for v in given:
        if g is v:
            return np.array(g)
    return g


def unbox_dtype(x: Any) -> Any:
    while isinstance(x, Box):
        x = x.value
    return np.asarray(x).dtype


# --- reverse mode ------------------------------------------------------------------------


class Trace:
    """A function traced once in reverse mode: outputs, leaves, and the backward pass."""

    def __init__(self, f: Fn, primals: Sequence[Any], argnums: ArgNums = None) -> None:  # type: ignore[assignment]
        # plain loops, not comprehensions: this runs once per call of every transform
        primals = list(map(as_array, primals))
        nums = tuple(range(len(primals))) if argnums is None else _argnums(argnums, len(primals))
        self.level = level = new_level()
        self.primals = primals
        self.argnums = nums
        self.leaves = []
        boxed = list(primals)
        for i in nums:
            leaf = boxed[i] = Var(primals[i], level)
            self.leaves.append(leaf)
        with recording_tape(level) as self.tape:
            out, self.is_tuple = _outputs(f(*boxed))
        self.outputs = []
        self.values = []
        for o in out:
            if not isinstance(o, Box):
                o = as_array(o)
            self.outputs.append(o)
            self.values.append(unbox(o, level))

    @property
    def value(self) -> Any:
        return tuple(self.values) if self.is_tuple else self.values[0]

    def pullback(self, cotangents: Sequence[Any]) -> list[Any]:
        """Input cotangents (zeros where no path) for output cotangents; batch axes allowed."""
        if len(cotangents) != len(self.outputs):
            raise ValueDomainError(
                f"expected {len(self.outputs)} cotangents (one per output), got {len(cotangents)}"
            )
        batch: tuple[int, ...] = ()
        cts = []
        for v, ct in zip(self.values, cotangents, strict=True):
            ct = as_array(ct)
            vs, cs = shape_of(v), shape_of(ct)
            if cs[len(cs) - len(vs) :] != vs:
                raise ValueDomainError(
                    f"cotangent of shape {cs} does not match the output's shape {vs}"
                )
            batch = cs[: len(cs) - len(vs)]
            cts.append(ct)
        grads = backward(self.outputs, cts, self.leaves, self.level, tape=self.tape)
        given = [*self.primals, *self.values, *cts]
        return [
            _own(_like(g, self.primals[i]), given)
            if g is not None
            else _zeros(self.primals[i], batch)
            for g, i in zip(grads, self.argnums, strict=True)
        ]


def vjp(f: Fn, *primals: Any) -> tuple[Any, Callable[..., tuple[Any, ...]]]:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(ct)`` gives a cotangent per primal.

    With several outputs pass one cotangent each (a tuple): their contributions are
    summed, as ``torch.autograd.backward(tensors, grad_tensors)`` does.
    """
    trace = Trace(f, primals)

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        cts = list(cotangent) if trace.is_tuple else [cotangent]
        return tuple(trace.pullback(cts))

    return trace.value, vjp_fn


class ComplexDifferentiationError(ValueDomainError):
    """A transform asked of complex values where its answer would be ambiguous (an
    invalid-argument error, 422)."""


def _is_complex(x: Any) -> bool:
    return bool(unbox_dtype(x).kind == "c")


def check_holomorphic(
    what: str, inputs: Sequence[Any], outputs: Sequence[Any], holomorphic: bool
) -> None:
    """JAX's rules for ``grad``/``jacrev``/``hessian`` and their ``holomorphic=True``: with
    it, the differentiated inputs and the outputs are complex and the answer is the complex
    derivative df/dz; without it, a complex output has no gradient (ask for a VJP with a
    cotangent, or reduce it to a real number: abs, real, imag)."""
    if holomorphic:
        if not all(_is_complex(x) for x in inputs):
            raise ComplexDifferentiationError(
                f"{what} with holomorphic=true needs complex inputs (complex64 or complex128)"
            )
        if not all(_is_complex(o) for o in outputs):
            raise ComplexDifferentiationError(
                f"{what} with holomorphic=true needs complex outputs: the function's output "
                "is real (drop holomorphic for the gradient of a real-valued function)"
            )
        return
    if any(_is_complex(o) for o in outputs):
        raise ComplexDifferentiationError(
            f"{what} needs a real-valued output, the function's output is complex: pass "
            "holomorphic=true for the complex derivative df/dz of a holomorphic function, "
            "give a cotangent (a vector-Jacobian product), or reduce the output to a real "
            "number (abs, real, imag)"
        )


def _scalar_seed(trace: Trace, holomorphic: bool = False, what: str = "grad") -> list[Any]:
    check_holomorphic(what, [trace.primals[i] for i in trace.argnums], trace.values, holomorphic)
    if trace.is_tuple:
        raise NonScalarOutputError(
            f"grad needs one scalar output, the function returned {len(trace.values)}: "
            "pass a cotangent per output (a vector-Jacobian product)"
        )
    v = trace.values[0]
    if math.prod(shape_of(v)) != 1:
        raise NonScalarOutputError(
            f"grad needs a scalar output, got shape {shape_of(v)}: pass a cotangent "
            "(a vector-Jacobian product) or reduce the output, e.g. sum(...)",
            shapes=[shape_of(v)],
        )
    return [np.ones(shape_of(v), dtype=unbox_dtype(v))]


def value_and_grad(f: Fn, argnums: ArgNums = 0, holomorphic: bool = False) -> Fn:
    """A function returning ``(f(*args), gradient)`` for a scalar-output ``f``.

    Complex inputs: JAX's convention, ``df/dx - i df/dy`` for a real-valued ``f`` of
    ``z = x + iy``; ``holomorphic=True``: ``df/dz`` of a complex-valued holomorphic ``f``."""

    def wrapped(*args: Any) -> tuple[Any, Any]:
        trace = Trace(f, args, argnums)
        grads = trace.pullback(_scalar_seed(trace, holomorphic))
        return trace.value, grads[0] if isinstance(argnums, int) else tuple(grads)

    return wrapped


def grad(f: Fn, argnums: ArgNums = 0, holomorphic: bool = False) -> Fn:
    """The gradient of a scalar-output ``f`` with respect to the ``argnums`` arguments."""
    vg = value_and_grad(f, argnums, holomorphic)
    return lambda *args: vg(*args)[1]


# --- forward mode ------------------------------------------------------------------------


def _push(f: Fn, primals: Sequence[Any], tangents: Sequence[Any], argnums: tuple[int, ...]):
    """Run ``f`` once with Duals; returns (values, tangents out, is_tuple, level)."""
    primals = [as_array(p) for p in primals]
    level = new_level()
    boxed = list(primals)
    for i, t in zip(argnums, tangents, strict=True):
        boxed[i] = Dual(primals[i], level, t if type(t) is Basis else as_array(t))
    outs, is_tuple = _outputs(f(*boxed))
    batch = shape_of(tangents[0])[: len(shape_of(tangents[0])) - len(shape_of(primals[argnums[0]]))]
    values, touts = [], []
    for o in outs:
        if isinstance(o, Dual) and o.level == level:
            values.append(o.value)
            touts.append(dense(o.tangent))
        else:
            o = o if isinstance(o, Box) else as_array(o)
            values.append(o)
            touts.append(_zeros(o, batch))
    return values, touts, is_tuple


def jvp(f: Fn, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(f(*primals), J @ tangents)`` in one forward pass (no tape)."""
    if len(primals) != len(tangents):
        raise ValueDomainError("jvp needs one tangent per primal")
    for p, t in zip(primals, tangents, strict=True):
        if shape_of(p) != shape_of(t):
            raise ValueDomainError(
                f"tangent of shape {shape_of(t)} does not match its primal's shape {shape_of(p)}"
            )
    values, touts, is_tuple = _push(f, primals, tangents, tuple(range(len(primals))))
    # an output's tangent in the output's dtype (as jax.jvp)
    touts = [_like(t, v) for t, v in zip(touts, values, strict=True)]
    if is_tuple:
        return tuple(values), tuple(touts)
    return values[0], touts[0]


# --- Jacobians and Hessians ----------------------------------------------------------------


def _basis(sizes: Sequence[int], dtype: Any) -> list[Any]:
    """Blocks of one identity: block k has shape (sum(sizes), sizes[k])."""
    eye = np.eye(sum(sizes), dtype=dtype)
    offsets = np.cumsum([0, *sizes])
    return [eye[:, offsets[k] : offsets[k + 1]] for k in range(len(sizes))]


def _basis_rows(
    part: slice, primals: list[Any], nums: tuple[int, ...], sizes: list[int], dtype: Any
) -> list[Any]:
    """Rows ``part`` of the identity that ``_basis`` would make, per input: kept symbolic
    (``engine.fast.basis``) when the fast layer is on, else dense."""
    offsets = np.cumsum([0, *sizes])
    rows = [
        Basis(part.start, part.stop, int(offsets[k]), shape_of(primals[i]), dtype)
        for k, i in enumerate(nums)
    ]
    return rows if switch.ON else [r.dense() for r in rows]


# Called before the first and after each chunk of a chunked Jacobian or Hessian with
# (chunks done, chunks in all):
# a caller's progress report (the service's jobs). Optional; it must not raise.
Progress = Callable[[int, int], None]


def _chunks(n: int, chunk_size: int | None) -> list[slice]:
    step = n if not chunk_size or chunk_size >= n else chunk_size
    return [slice(i, min(i + step, n)) for i in range(0, max(n, 1), max(step, 1))]


def jacobian_and_value(
    f: Fn,
    primals: Sequence[Any],
    argnums: ArgNums = 0,
    mode: str = "auto",
    chunk_size: int | None = None,
    max_elements: int | None = None,
    progress: Progress | None = None,
    holomorphic: bool = False,
) -> tuple[Any, list[list[Any]], bool, str]:
    """Value, Jacobian blocks ``jac[output][arg]`` of shape out.shape + arg.shape,
    whether f returned a tuple, and the mode that ran ("reverse" or "forward").

    All rows (or columns) go through ONE batched pass. ``chunk_size`` splits the
    stacked identity to bound memory; ``max_elements`` picks the largest chunk whose
    batched intermediates stay under that many elements (with both, the smaller chunk).
    ``progress(done, total)`` is called after each chunk.
    """
    if mode not in ("auto", "reverse", "forward"):
        raise ValueDomainError(f"mode must be 'auto', 'reverse' or 'forward', got {mode!r}")
    primals = [as_array(p) for p in primals]
    nums = _argnums(argnums, len(primals))
    check_jacobian_inputs([primals[i] for i in nums], holomorphic)
    in_sizes = [math.prod(shape_of(primals[i])) for i in nums]
    if mode == "auto" and not max_elements and not any(isinstance(p, Box) for p in primals):
        # the output's size from an untraced forward pass (a fifth of a traced one for W6):
        # forward mode then needs no reverse-mode trace at all
        outs, _ = _outputs(f(*primals))
        out_size = sum(math.prod(shape_of(o)) for o in outs)
        mode = "reverse" if out_size < sum(in_sizes) else "forward"
        mode = _complex_mode(mode, outs, holomorphic)
    trace = Trace(f, primals, nums) if mode != "forward" or max_elements else None
    if trace is not None and mode == "auto":
        out_size = sum(math.prod(shape_of(v)) for v in trace.values)
        mode = "reverse" if out_size < sum(in_sizes) else "forward"
    if trace is not None:
        mode = _complex_mode(mode, trace.values, holomorphic)
    if trace is not None and max_elements:
        chunk_size = _smaller(chunk_size, max(1, max_elements // peak_size(trace)))
    if mode == "reverse":
        assert trace is not None
        return trace.value, _jac_reverse(trace, chunk_size, progress), trace.is_tuple, "reverse"
    values, jac, is_tuple = _jac_forward(f, primals, nums, in_sizes, chunk_size, progress)
    if holomorphic:
        check_holomorphic("jacobian", [primals[i] for i in nums], values, True)
    return (tuple(values) if is_tuple else values[0]), jac, is_tuple, "forward"


def check_jacobian_inputs(inputs: list[Any], holomorphic: bool) -> None:
    """A Jacobian by complex inputs is the complex one, df/dz, of a holomorphic function
    (JAX's jacfwd/jacrev refuse complex inputs without holomorphic=True, as here)."""
    if holomorphic:
        check_holomorphic("jacobian", inputs, [], True)
    elif any(_is_complex(x) for x in inputs):
        raise ComplexDifferentiationError(
            "a Jacobian by complex inputs needs holomorphic=true (it is then df/dz); for a "
            "real-valued function of complex inputs ask for the gradient, or pass the real "
            "and imaginary parts as separate real inputs"
        )


def check_hessian_inputs(inputs: list[Any], holomorphic: bool) -> None:
    """A Hessian by complex inputs is the complex one, d2f/dz2, of a holomorphic function."""
    if not holomorphic and any(_is_complex(x) for x in inputs):
        raise ComplexDifferentiationError(
            "a Hessian by complex inputs needs holomorphic=true (it is then d2f/dz2); for a "
            "real-valued function of complex inputs ask for Hessian-vector products (/hvp: "
            "the derivative of the gradient df/dx - i df/dy along a complex vector), or pass "
            "the real and imaginary parts as separate real inputs"
        )


def _complex_mode(mode: str, outputs: Sequence[Any], holomorphic: bool) -> str:
    """Forward mode for complex outputs of real inputs (jax.jacfwd's df/dx: a real basis
    pulled back through a complex output would keep only the real part)."""
    if holomorphic:
        check_holomorphic("jacobian", [], outputs, True)
        return mode
    return "forward" if any(_is_complex(o) for o in outputs) else mode


def _smaller(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def peak_size(trace: Trace) -> int:
    """Elements of the largest value on the trace's tape (a batched pass multiplies it)."""
    sizes = [math.prod(shape_of(v)) for v in toposort(trace.outputs, trace.level)]
    sizes += [math.prod(shape_of(v)) for v in trace.values]
    return max([1, *sizes])


def _jac_reverse(
    trace: Trace, chunk_size: int | None = None, progress: Progress | None = None
) -> list[list[Any]]:
    out_shapes = [shape_of(v) for v in trace.values]
    out_sizes = [math.prod(s) for s in out_shapes]
    dtype = np.result_type(*[unbox_dtype(v) for v in trace.values])
    rows = _basis(out_sizes, dtype)  # rows[k]: (N, size_k)
    n = sum(out_sizes)
    pieces: list[list[Any]] = [[] for _ in trace.leaves]
    chunks = _chunks(n, chunk_size)
    if progress is not None:
        progress(0, len(chunks))
    for done, part in enumerate(chunks, 1):
        count = part.stop - part.start  # rows in this chunk (0 for a size-0 output)
        cts = [r[part].reshape((count,) + s) for r, s in zip(rows, out_shapes, strict=True)]
        for k, g in enumerate(trace.pullback(cts)):
            pieces[k].append(g)
        if progress is not None:
            progress(done, len(chunks))
    grads = [_concatenate(p) for p in pieces]
    jac: list[list[Any]] = []
    offset = 0
    for s, size in zip(out_shapes, out_sizes, strict=True):
        row = []
        for g, i in zip(grads, trace.argnums, strict=True):
            block = g[offset : offset + size]
            row.append(_reshape(block, s + shape_of(trace.primals[i])))
        jac.append(row)
        offset += size
    return jac


def _jac_forward(
    f: Fn,
    primals: list[Any],
    nums: tuple[int, ...],
    in_sizes: list[int],
    chunk_size: int | None,
    progress: Progress | None = None,
) -> tuple[list[Any], list[list[Any]], bool]:
    dtype = np.result_type(*[unbox_dtype(primals[i]) for i in nums])
    n = sum(in_sizes)
    parts: list[list[Any]] = []
    values: list[Any] = []
    is_tuple = False
    chunks = _chunks(n, chunk_size)
    if progress is not None:
        progress(0, len(chunks))
    for done, part in enumerate(chunks, 1):
        tangents = _basis_rows(part, primals, nums, in_sizes, dtype)
        values, touts, is_tuple = _push(f, primals, tangents, nums)
        parts.append(touts)
        if progress is not None:
            progress(done, len(chunks))
    touts = [_concatenate([p[k] for p in parts]) for k in range(len(values))]
    jac = []
    for v, t in zip(values, touts, strict=True):
        vnd = len(shape_of(v))
        row, offset = [], 0
        for i, size in zip(nums, in_sizes, strict=True):
            block = t[offset : offset + size]  # (size_i, *out.shape)
            block = _reshape(block, shape_of(primals[i]) + shape_of(v))
            xnd = len(shape_of(primals[i]))
            perm = tuple(range(xnd, xnd + vnd)) + tuple(range(xnd))
            row.append(_transpose(block, perm))
            offset += size
        jac.append(row)
    return values, jac, is_tuple


# A transform nested in another (``grad(jacobian(f))``, ``jacobian(hessian(f))``) gets
# the outer transform's boxes back from its passes: its own assembly of the blocks must
# then be traced too, so it goes through engine ops for boxes and NumPy otherwise.


def _transpose(a: Any, perm: tuple[int, ...]) -> Any:
    if isinstance(a, Box):
        return anp.transpose(a, perm)
    return np.transpose(a, perm)


def _reshape(a: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(a, Box):
        return anp.reshape(a, shape)
    return np.reshape(a, shape)


def _concatenate(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if any(isinstance(p, Box) for p in parts):
        return anp.concatenate(parts)
    return np.concatenate(parts)


def jacobian(
    f: Fn,
    argnums: ArgNums = 0,
    mode: str = "auto",
    chunk_size: int | None = None,
    holomorphic: bool = False,
) -> Fn:
    """The full Jacobian, shape ``out.shape + arg.shape``, in one batched pass.

    ``mode="auto"`` runs reverse mode when the output is smaller than the input.
    A tuple ``argnums`` gives a tuple of blocks; a tuple output a tuple of those.
    """

    def wrapped(*args: Any) -> Any:
        _, jac, is_tuple, _ = jacobian_and_value(
            f, args, argnums, mode, chunk_size, holomorphic=holomorphic
        )
        # each block in its input's dtype, whichever mode ran (the service's rule)
        nums = _argnums(argnums, len(args))
        jac = [
            [jacobian_block_like(b, as_array(args[i])) for b, i in zip(row, nums, strict=True)]
            for row in jac
        ]
        rows = [row[0] if isinstance(argnums, int) else tuple(row) for row in jac]
        return tuple(rows) if is_tuple else rows[0]

    return wrapped


def hessian_and_grad(
    f: Fn,
    primals: Sequence[Any],
    argnums: ArgNums = 0,
    max_elements: int | None = None,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    holomorphic: bool = False,
) -> tuple[Any, list[Any], list[list[Any]]]:
    """Value, gradients, and Hessian blocks ``H[i][j]`` (shape x_i.shape + x_j.shape) of a
    scalar ``f``, in one forward-over-reverse pass with a stacked identity (split into
    chunks of at most ``chunk_size`` columns, and smaller when ``max_elements`` says the
    batched intermediates would be too large; ``progress(done, total)`` after each)."""
    primals = [as_array(p) for p in primals]
    nums = _argnums(argnums, len(primals))
    check_hessian_inputs([primals[i] for i in nums], holomorphic)

    def value_and_grads(*xs: Any) -> tuple[Any, ...]:
        trace = Trace(f, xs, nums)
        return (trace.value, *trace.pullback(_scalar_seed(trace, holomorphic, "hessian")))

    if max_elements:
        peak = peak_size(Trace(f, primals, nums))
        chunk_size = _smaller(chunk_size, max(1, max_elements // peak))
    in_sizes = [math.prod(shape_of(primals[i])) for i in nums]
    values, jac, _ = _jac_forward(value_and_grads, primals, nums, in_sizes, chunk_size, progress)
    return values[0], values[1:], jac[1:]


def hessian(f: Fn, argnums: ArgNums = 0, holomorphic: bool = False) -> Fn:
    """The Hessian of a scalar ``f`` (forward-over-reverse, one batched pass)."""

    def wrapped(*args: Any) -> Any:
        _, _, h = hessian_and_grad(f, args, argnums, holomorphic=holomorphic)
        # block (i, j) in result_type(x_i, x_j) (the service's rule)
        nums = _argnums(argnums, len(args))
        h = [
            [
                _in_result_type(b, as_array(args[i]), as_array(args[j]))
                for b, j in zip(row, nums, strict=True)
            ]
            for row, i in zip(h, nums, strict=True)
        ]
        if isinstance(argnums, int):
            return h[0][0]
        return tuple(tuple(row) for row in h)

    return wrapped


def hvp_and_grad(
    f: Fn, primals: Sequence[Any], vectors: Sequence[Any], holomorphic: bool = False
) -> tuple[Any, tuple[Any, ...], tuple[Any, ...]]:
    """Value, gradients and Hessian-vector products of a scalar ``f`` (forward-over-reverse,
    one pass, the Hessian never formed). Complex inputs: the derivative of the gradient map
    (JAX's ``df/dx - i df/dy``) along the complex vectors, ``jax.jvp(jax.grad(f), z, v)``."""
    nums = tuple(range(len(primals)))

    def value_and_grads(*xs: Any) -> tuple[Any, ...]:
        trace = Trace(f, xs, nums)
        return (trace.value, *trace.pullback(_scalar_seed(trace, holomorphic, "hvp")))

    out, tangents = jvp(value_and_grads, primals, vectors)
    return out[0], tuple(out[1:]), tuple(tangents[1:])


def hvp(f: Fn, primals: Sequence[Any], vectors: Sequence[Any]) -> tuple[Any, ...]:
    """Hessian-vector products ``H @ v``, one per primal (in its dtype), without forming the
    Hessian."""
    products = hvp_and_grad(f, primals, vectors)[2]
    return tuple(_like(p, as_array(x)) for p, x in zip(products, primals, strict=True))


# --- several directions at one point (K products in one vectorised pass) -------------------
# The passes above already carry a leading batch axis on cotangents and tangents (the
# Jacobian pushes its whole identity that way); these entry points expose it for K
# directions given by the caller. Each returns the plain value (no K axis) and products
# with a leading axis K.


def _leading(k_arrays: Sequence[Any], primal_shapes: Sequence[tuple[int, ...]], what: str) -> int:
    """The common leading axis K of ``k_arrays`` (each ``(K, *primal_shape)``)."""
    ks = set()
    for a, s in zip(k_arrays, primal_shapes, strict=True):
        shape = shape_of(a)
        if len(shape) != len(s) + 1 or shape[1:] != s:
            raise ValueDomainError(
                f"each {what} must have shape (K, *{list(s)}), got {list(shape)}",
                shapes=[shape, s],
            )
        ks.add(shape[0])
    if len(ks) != 1:
        raise ValueDomainError(f"the {what}s disagree on K: {sorted(ks)}")
    return ks.pop()


def vjp_many(
    f: Fn, primals: Sequence[Any], cotangents: Sequence[Any]
) -> tuple[Any, tuple[Any, ...]]:
    """``(f(*primals), vjps)`` for K cotangents at once: ``cotangents`` has one array per
    output, each ``(K, *output.shape)``; ``vjps[i]`` is ``(K, *primals[i].shape)`` (the
    outputs' contributions summed, as ``vjp``). One forward and one backward pass."""
    trace = Trace(f, primals)
    cts = [as_array(c) for c in cotangents]
    if len(cts) != len(trace.values):
        raise ValueDomainError(
            f"expected {len(trace.values)} cotangents (one per output), got {len(cts)}"
        )
    _leading(cts, [shape_of(v) for v in trace.values], "cotangent")
    return trace.value, tuple(trace.pullback(cts))


def jvp_many(f: Fn, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(f(*primals), J @ tangents)`` for K tangents per primal (each ``(K, *primal.shape)``),
    in one forward pass; each output's product is ``(K, *output.shape)``."""
    primals = [as_array(p) for p in primals]
    if len(primals) != len(tangents):
        raise ValueDomainError("jvp_many needs one tangent array per primal")
    tangents = [as_array(t) for t in tangents]
    _leading(tangents, [shape_of(p) for p in primals], "tangent")
    values, touts, is_tuple = _push(f, primals, tangents, tuple(range(len(primals))))
    touts = [_like(t, v) for t, v in zip(touts, values, strict=True)]
    if is_tuple:
        return tuple(values), tuple(touts)
    return values[0], touts[0]


def hvp_many(
    f: Fn, primals: Sequence[Any], vectors: Sequence[Any], holomorphic: bool = False
) -> tuple[Any, tuple[Any, ...], tuple[Any, ...]]:
    """Value, gradients and K Hessian-vector products of a scalar ``f``: ``vectors`` has one
    ``(K, *primal.shape)`` array per primal, each product is ``(K, *primal.shape)``
    (forward-over-reverse, one pass, the Hessian never formed)."""
    nums = tuple(range(len(primals)))

    def value_and_grads(*xs: Any) -> tuple[Any, ...]:
        trace = Trace(f, xs, nums)
        return (trace.value, *trace.pullback(_scalar_seed(trace, holomorphic, "hvp")))

    out, tangents = jvp_many(value_and_grads, primals, vectors)
    products = tuple(_like(p, as_array(x)) for p, x in zip(tangents[1:], primals, strict=True))
    return out[0], tuple(out[1:]), products
