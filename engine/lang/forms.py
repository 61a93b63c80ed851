"""The NumPy spellings the language accepts beyond bare op names, as allow-lists.

- module prefixes (``np.sin``, ``scipy.special.expit``, ``jnp.linalg.norm``): a dotted
  name whose prefix is in ``PREFIXES`` names the op called by its last part. Nothing is
  imported or looked up in Python: the prefix is a spelling, checked against this list,
  and the last part goes through the op registry as a bare name does. A prefix not in the
  list (``os.system``, ``np.os.system``) is refused as attribute access.
- array attributes (``x.T``, ``x.shape``, ``x.ndim``, ``x.size``, ``x.dtype``, ``x.real``,
  ``x.imag``): ``ATTRIBUTES``; ``shape``/``ndim``/``size``/``dtype`` are read by the
  interpreter (``Interpreter.shape_of``), the others are ops.
- methods that mirror an op (``x.sum(axis=0)``): ``METHODS``, ``method name -> op name``;
  the receiver is the op's first argument. A method whose op is not registered is the
  usual unknown-op error.
- the module constants after a prefix: ``np.pi``, ``np.e``, ``np.inf``, ``np.nan``,
  ``np.newaxis``, and the dtypes ``np.float32``/``np.float64`` (as ``astype``'s argument).
- which static parameters take a string literal (``string_param``).
"""

from __future__ import annotations

import math
from typing import Any

from engine.registry import STATIC, Op

# Dotted prefixes accepted (and ignored) before an op name. The roots are reserved where
# they are followed by an attribute: ``np.x`` never reads an input called ``np``.
PREFIXES = frozenset(
    {
        "np", "numpy", "onp", "anp", "jnp", "jax.numpy", "autograd.numpy",
        "np.linalg", "numpy.linalg", "jnp.linalg", "jax.numpy.linalg", "anp.linalg",
        "autograd.numpy.linalg", "linalg", "scipy.linalg", "jax.scipy.linalg", "sp.linalg",
        "autograd.scipy.linalg",
        "np.fft", "numpy.fft", "jnp.fft", "jax.numpy.fft", "anp.fft", "autograd.numpy.fft",
        "fft", "scipy.fft",
        "scipy.special", "special", "jax.scipy.special", "autograd.scipy.special", "sp.special",
        "jax.nn",
    }
)  # fmt: skip
PREFIX_ROOTS = frozenset(p.split(".")[0] for p in PREFIXES)

# ``np.<name>`` that is not an op: a constant (static contexts read dtypes and newaxis).
MODULE_CONSTANTS: dict[str, Any] = {
    "pi": math.pi,
    "e": math.e,
    "inf": math.inf,
    "nan": math.nan,
    "newaxis": None,
    "float32": "float32",
    "float64": "float64",
}
DTYPES = frozenset({"float32", "float64"})
# ``x.astype(float)``: Python's float is float64, as in NumPy
DTYPE_NAMES = {"float": "float64", "float32": "float32", "float64": "float64"}

# Read-only attributes of arrays: those read from the shape, and those that are ops.
SHAPE_ATTRIBUTES = frozenset({"shape", "ndim", "size", "dtype"})
OP_ATTRIBUTES = {"T": "transpose", "mT": "matrix_transpose", "real": "real", "imag": "imag"}
ATTRIBUTES = SHAPE_ATTRIBUTES | set(OP_ATTRIBUTES)

# NumPy's ndarray methods that mirror an op: ``x.name(...)`` is ``op(x, ...)``.
METHODS: dict[str, str] = {
    name: name
    for name in (
        "sum", "prod", "mean", "var", "std", "max", "min", "all", "any", "cumsum", "cumprod",
        "argmax", "argmin", "argsort", "sort", "take", "trace", "diagonal", "round", "conj",
        "real", "imag", "repeat", "reshape", "transpose", "swapaxes", "squeeze", "clip",
        "dot", "astype", "nonzero", "searchsorted", "ptp", "compress", "choose",
        "cumulative_sum",
    )
}  # fmt: skip
METHODS["conjugate"] = "conj"
# ``x.flatten()`` and ``x.ravel()`` are ``reshape(x, (-1,))``: the same values and rules
FLAT_METHODS = frozenset({"flatten", "ravel"})
# ``x.item()`` is ``reshape(x, ())``: the one element as a 0-d array (NumPy refuses a
# larger array, and so does reshape)
ITEM_METHODS = frozenset({"item"})
# ``x.reshape(3, 2)`` and ``x.transpose(1, 0)``: NumPy's varargs forms; several positional
# arguments are one shape or axes tuple
VARARG_METHODS = {"reshape": "shape", "transpose": "axes"}
# keywords spelled differently from the op's parameters (NumPy 2's names), in calls and
# methods alike
KEYWORD_ALIASES = {"clip": {"min": "a_min", "max": "a_max"}}

# Static parameters that take a string literal although their default is not a string:
# (op, parameter); a static parameter whose declared default is a string takes one too,
# and so does one with a name below (the options NumPy spells as words).
STRING_PARAMS = frozenset({("einsum", "subscripts"), ("norm", "ord")})
STRING_PARAM_NAMES = frozenset(
    {"ord", "norm", "mode", "side", "indexing", "method", "kind", "order", "interpolation",
     "uplo", "UPLO", "dtype"}
)  # fmt: skip
# einsum's subscripts are text: "inf" there is letters, not a number
TEXT_PARAMS = frozenset({("einsum", "subscripts")})


# NumPy's other names for registered ops, used only when the name itself is not registered
# (an op registered under the name wins)
NAME_ALIASES = {
    "absolute": "abs",
    "amax": "max",
    "amin": "min",
    "around": "round",
    "round_": "round",
    "conjugate": "conj",
    "concat": "concatenate",
    "permute_dims": "transpose",
    "pow": "power",
    "true_divide": "divide",
    "fabs": "abs",
}


def split_prefix(dotted: list[str]) -> tuple[str, str] | None:
    """``(prefix, name)`` if ``dotted`` (``["np", "linalg", "norm"]``) is an allowed prefix
    and a name, else None."""
    if len(dotted) < 2:
        return None
    prefix = ".".join(dotted[:-1])
    return (prefix, dotted[-1]) if prefix in PREFIXES else None


def strip_prefix(name: str) -> str | None:
    """A graph node's op name without an allowed prefix (``"np.sum"`` -> ``"sum"``); None
    when it has dots but no allowed prefix."""
    if "." not in name:
        return name
    found = split_prefix(name.split("."))
    return None if found is None else found[1]


def string_param(op: Op, name: str | None) -> bool | str:
    """Whether parameter ``name`` of ``op`` takes a string literal: False, True, or "text"
    (any text: einsum's subscripts)."""
    if name is None:
        return False
    if (op.name, name) in TEXT_PARAMS:
        return "text"
    param = next((p for p in op.params if p.name == name), None)
    if param is None or param.kind != STATIC:
        return False
    return (
        (op.name, name) in STRING_PARAMS
        or isinstance(param.default, str)
        or name in STRING_PARAM_NAMES
    )
