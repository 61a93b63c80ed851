"""A remote scalar function as a ``scipy.optimize.minimize`` objective
(``pip install autodiff-client[scipy]``).

    from autodiff_client import Client
    from autodiff_client.scipy import objective

    obj = objective(Client(url), "sum((x - c) ** 2) + sum(x ** 4)", wrt="x", c=[1.0, 2.0])
    scipy.optimize.minimize(obj.fun, x0, jac=obj.jac, hess=obj.hess, method="trust-exact")
    scipy.optimize.minimize(obj.fun, x0, jac=obj.jac, hessp=obj.hessp, method="trust-krylov")

The variable is one free input (``wrt``; by default the only one not given as a
constant), flat as SciPy wants it and reshaped to ``shape`` for the service (by
default the first point's shape: 1-D, as SciPy gives it; pass ``shape`` for a
matrix); every other input is a constant given by keyword.

SciPy asks for ``fun``, ``jac`` and ``hess`` separately at the same point; the object
keeps the last point's answer, so they share one request: ``/grad`` answers the value
and the gradient; once ``hess`` has been asked for (or from the start, with
``hessian=True``), every new point asks ``/hessian``, which answers all three.
``hessp(x, p)`` is ``/hvp`` (or the kept Hessian times ``p``).
``obj.requests`` counts the requests made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from autodiff_client.client import Client
from autodiff_client.codec import Function
from autodiff_client.remote import RemoteFunction, as_float_array, single

__all__ = ["Objective", "objective"]

Vector = npt.NDArray[np.float64]


def objective(
    client: Client,
    function: Function,
    *,
    wrt: str | None = None,
    shape: Sequence[int] | None = None,
    hessian: bool = False,
    **constants: Any,
) -> Objective:
    """``function`` as an objective of one input, the others held at ``constants``.

    ``hessian=True`` asks ``/hessian`` from the first point on (for methods that use
    ``hess``); otherwise the first ``hess`` call switches to it.
    """
    if wrt is None:
        names = RemoteFunction(client, function).names
        free = [name for name in names if name not in constants]
        if len(free) != 1:
            raise ValueError(
                f"say which input is the variable (wrt=...): the function's inputs are "
                f"{list(names)}, of which {free} are not given as constants"
            )
        wrt = free[0]
    return Objective(client, function, wrt, shape, constants, hessian)


class _Point:
    """What the service answered at one point (filled as the answers come)."""

    def __init__(self, x: Vector) -> None:
        self.x = x
        self.value: float | None = None
        self.grad: Vector | None = None
        self.hess: npt.NDArray[np.float64] | None = None


class Objective:
    """``fun``, ``jac``, ``hess`` and ``hessp`` of a remote scalar function, for SciPy."""

    def __init__(
        self,
        client: Client,
        function: Function,
        wrt: str,
        shape: Sequence[int] | None,
        constants: dict[str, Any],
        hessian: bool = False,
    ) -> None:
        self.wrt = wrt
        self.shape = None if shape is None else tuple(shape)
        self.requests = 0
        self._rf = RemoteFunction(client, function)
        self._constants = {name: as_float_array(v) for name, v in constants.items()}
        self._point: _Point | None = None
        self._want_hessian = hessian

    # -------------------------------------------------------- what SciPy calls

    def fun(self, x: npt.ArrayLike, *args: Any) -> float:
        """The value at ``x``."""
        point = self._at(x)
        if point.value is None:
            self._answer(point)
        assert point.value is not None
        return point.value

    def jac(self, x: npt.ArrayLike, *args: Any) -> Vector:
        """The gradient at ``x``, flat."""
        point = self._at(x)
        if point.grad is None:
            self._answer(point)
        assert point.grad is not None
        return point.grad.copy()

    def hess(self, x: npt.ArrayLike, *args: Any) -> npt.NDArray[np.float64]:
        """The Hessian at ``x``, as an (n, n) matrix."""
        self._want_hessian = True
        point = self._at(x)
        if point.hess is None:
            self._answer(point)
        assert point.hess is not None
        return point.hess.copy()

    def hessp(self, x: npt.ArrayLike, p: npt.ArrayLike, *args: Any) -> Vector:
        """The Hessian at ``x`` times ``p``, flat (without forming the Hessian)."""
        point = self._at(x)
        direction = np.asarray(p, dtype=np.float64).reshape(-1)
        if point.hess is not None:
            return np.asarray(point.hess @ direction, dtype=np.float64)
        self.requests += 1
        hvp = self._rf.hvp(
            self._inputs(point.x), {self.wrt: direction.reshape(self._shape(point.x))}, [self.wrt]
        )
        return np.asarray(hvp[self.wrt], dtype=np.float64).reshape(-1)

    # ------------------------------------------------------------------ kept

    def _at(self, x: npt.ArrayLike) -> _Point:
        flat = np.array(x, dtype=np.float64).reshape(-1)
        if self._point is None or not np.array_equal(self._point.x, flat):
            if self.shape is None:
                self.shape = np.shape(x) if np.ndim(x) > 1 else (flat.size,)
            self._point = _Point(flat)
        return self._point

    def _shape(self, flat: Vector) -> tuple[int, ...]:
        return self.shape if self.shape is not None else (flat.size,)

    def _inputs(self, flat: Vector) -> dict[str, Any]:
        return {**self._constants, self.wrt: flat.reshape(self._shape(flat))}

    def _answer(self, point: _Point) -> None:
        self.requests += 1
        inputs = self._inputs(point.x)
        if self._want_hessian:
            res = self._rf.hessian(inputs, [self.wrt])
            n = point.x.size
            point.hess = np.asarray(res.hessian[self.wrt][self.wrt], dtype=np.float64).reshape(n, n)
            point.grad = np.asarray(res.gradients[self.wrt], dtype=np.float64).reshape(-1)
            value = single(res.value)
        else:
            value, grads = self._rf.grad(inputs, [self.wrt])
            point.grad = np.asarray(grads[self.wrt], dtype=np.float64).reshape(-1)
        point.value = _scalar(value)


def _scalar(value: Any) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"an objective must have a scalar output, got shape {list(arr.shape)}")
    return float(arr.reshape(()))
