"""A remote function bound to a client: what the JAX, PyTorch and SciPy adapters share.

Arguments are the function's free inputs, by name (keywords) or by position in the order
the service reports them: sorted by name, as its ``unknown-name`` problem lists the free
names of a function sent with no inputs (one request, made once, on the first positional
call). Pass ``names=`` to choose another order (or to skip that request).

Every call asks for the b64 encoding, so float32 stays float32 and a function with
several outputs is told apart from one stacked output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autodiff_client.client import Client
from autodiff_client.codec import Array, Function, Result, Value
from autodiff_client.errors import AutodiffHTTPError

__all__ = ["RemoteFunction", "free_inputs"]

_NUMBER_WORDS = frozenset({"nan", "inf", "-inf"})
_QUOTED = re.compile(r"'([^']*)'")


def free_inputs(client: Client, function: Function) -> tuple[str, ...]:
    """The function's free input names, sorted, as the service reports them."""
    if isinstance(function, Mapping):
        return _graph_inputs(function)
    try:
        client.send("/grad", {"expression": function, "inputs": {}, "include_graph": False})
    except AutodiffHTTPError as err:
        names = _missing_names(err)
        if names is None:
            raise
        return names
    return ()  # it answered with no inputs: a function of nothing


def _missing_names(err: AutodiffHTTPError) -> tuple[str, ...] | None:
    # "the function uses 'x', 'y' but 'inputs' has no value for them"
    if err.status != 422 or not err.type.endswith("unknown-name") or " but " not in err.detail:
        return None
    used = err.detail.split(" but ", 1)[0]
    names = _QUOTED.findall(used)
    return tuple(sorted(names)) if names else None


def _graph_inputs(graph: Mapping[str, Any]) -> tuple[str, ...]:
    nodes = list(graph.get("nodes") or [])
    ids = {str(node.get("id")) for node in nodes}
    names = {
        ref
        for node in nodes
        for ref in node.get("inputs") or []
        if isinstance(ref, str) and ref not in ids and ref not in _NUMBER_WORDS
    }
    return tuple(sorted(names))


def as_float_array(value: Any) -> Array:
    """A NumPy float array (float32 stays float32, anything else becomes float64)."""
    arr = np.asarray(value)
    if arr.dtype in (np.float32, np.float64):
        return arr
    return arr.astype(np.float64)


def single(value: Value, what: str = "the function") -> Array:
    """The one output's array; several outputs are refused with a clear error."""
    if isinstance(value, list):
        raise ValueError(
            f"{what} has {len(value)} outputs; the adapters take functions of one output "
            "(return one array, e.g. stack or concatenate the outputs)"
        )
    return value


class RemoteFunction:
    """``function`` at the service behind ``client``, called with NumPy arrays by name."""

    def __init__(
        self, client: Client, function: Function, names: Sequence[str] | None = None
    ) -> None:
        self.client = client
        self.function = function
        self._names = tuple(names) if names is not None else None

    @property
    def names(self) -> tuple[str, ...]:
        """The free inputs, in positional order (asked of the service once)."""
        if self._names is None:
            self._names = free_inputs(self.client, self.function)
        return self._names

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments as inputs by name, as Python binds a call."""
        if not args:
            return dict(kwargs)  # by name only: no need to know the order
        names = self.names
        if len(args) > len(names):
            raise TypeError(
                f"the function takes {len(names)} positional inputs {list(names)}, got {len(args)}"
            )
        bound = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name in bound:
                raise TypeError(f"input {name!r} is given by position and by name")
            bound[name] = value
        missing = [name for name in names if name not in bound]
        if missing:
            raise TypeError(f"missing inputs {missing} (the function's inputs: {list(names)})")
        return bound

    # ------------------------------------------------------------- the calls

    def _constants(self, inputs: Mapping[str, Any], differentiated: Sequence[str]) -> list[str]:
        return [name for name in inputs if name not in differentiated]

    def value(self, inputs: Mapping[str, Any]) -> Array:
        """The function's value (``/jvp`` with every input constant: no derivative)."""
        res = self.client.jvp(self.function, inputs, {}, constants=list(inputs), encoding="b64")
        return single(res.value)

    def vjp(
        self, inputs: Mapping[str, Any], cotangent: Any, wrt: Sequence[str]
    ) -> tuple[Array, dict[str, Array]]:
        """Value and cotangent times the Jacobian, by name, for the inputs in ``wrt``."""
        res = self.client.vjp(
            self.function,
            inputs,
            cotangent,
            constants=self._constants(inputs, wrt),
            encoding="b64",
        )
        return single(res.value), _filled(res.vjp, inputs, wrt)

    def jvp(self, inputs: Mapping[str, Any], tangents: Mapping[str, Any]) -> tuple[Array, Array]:
        """Value and the Jacobian times the tangents (forward mode)."""
        res = self.client.jvp(
            self.function,
            inputs,
            tangents,
            constants=self._constants(inputs, list(tangents)),
            encoding="b64",
        )
        assert res.jvp is not None  # /jvp always answers one
        return single(res.value), single(res.jvp, "the JVP")

    def grad(self, inputs: Mapping[str, Any], wrt: Sequence[str]) -> tuple[Array, dict[str, Array]]:
        """Value and gradient (scalar output), by name, for the inputs in ``wrt``."""
        res = self.client.grad(
            self.function, inputs, constants=self._constants(inputs, wrt), encoding="b64"
        )
        return single(res.value), _filled(res.gradients, inputs, wrt)

    def hvp(
        self, inputs: Mapping[str, Any], vectors: Mapping[str, Any], wrt: Sequence[str]
    ) -> dict[str, Array]:
        """The Hessian (scalar output) times ``vectors``, by name, for the inputs in ``wrt``."""
        res = self.client.hvp(
            self.function,
            inputs,
            vectors,
            constants=self._constants(inputs, wrt),
            encoding="b64",
        )
        return _filled(res.hvp, inputs, wrt)

    def hessian(self, inputs: Mapping[str, Any], wrt: Sequence[str]) -> Result:
        """Value, gradient and Hessian (scalar output) in one call."""
        return self.client.hessian(
            self.function, inputs, constants=self._constants(inputs, wrt), encoding="b64"
        )


def _filled(
    part: Mapping[str, Array], inputs: Mapping[str, Any], wrt: Sequence[str]
) -> dict[str, Array]:
    # The service leaves out an input that gets no derivative: its derivative is zero.
    return {
        name: part[name] if name in part else np.zeros_like(as_float_array(inputs[name]))
        for name in wrt
    }
