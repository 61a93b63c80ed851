"""A remote function inside PyTorch code (``pip install autodiff-client[torch]``).

    from autodiff_client import Client
    from autodiff_client.torch import remote

    f = remote(Client(url), "sum(sin(x) * y)")
    loss = f(x, y)                 # tensors in, a tensor out
    loss.backward()                # x.grad, y.grad: the service's /vjp (or /grad)

``remote`` returns a callable on tensors built on ``torch.autograd.Function``. Its
backward asks the service for the vector-Jacobian product of the inputs that require
grad (the others are sent as constants). For a scalar output the backward is itself
differentiable: ``torch.autograd.grad(..., create_graph=True)`` and a second backward
work, through the service's ``/hvp`` (Hessian-vector products), so
``torch.autograd.functional.hessian`` works too. A third derivative, or a second one of
a non-scalar output, raises a ``RuntimeError`` that says so. Tensors go to the service
from the CPU and come back on the input's device, in the input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from autodiff_client.client import Client
from autodiff_client.codec import Function
from autodiff_client.remote import RemoteFunction

__all__ = ["remote"]


def remote(
    client: Client, function: Function, *, names: Sequence[str] | None = None
) -> Callable[..., torch.Tensor]:
    """``function`` at the service as a differentiable function of tensors."""
    rf = RemoteFunction(client, function, names)

    def call(*args: Any, **kwargs: Any) -> torch.Tensor:
        bound = rf.bind(args, kwargs)
        order = tuple(bound)
        tensors = [_as_tensor(bound[name]) for name in order]
        out: torch.Tensor = _apply(_Value, _Call(rf, order), *tensors)
        return out

    return call


def _as_tensor(value: Any) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def _numpy(tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    return tensor.detach().cpu().numpy()


def _like(array: Any, tensor: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=tensor.dtype, device=tensor.device)


def _apply(function: type[torch.autograd.Function], *args: Any) -> Any:
    """``function.apply(*args)`` (torch leaves ``apply`` unannotated)."""
    apply: Callable[..., Any] = function.apply
    return apply(*args)


class _Call:
    """One call's function and positional order (what the autograd Functions carry)."""

    def __init__(self, rf: RemoteFunction, order: tuple[str, ...]) -> None:
        self.rf = rf
        self.order = order

    def inputs(self, xs: Sequence[torch.Tensor]) -> dict[str, np.ndarray[Any, Any]]:
        return {name: _numpy(x) for name, x in zip(self.order, xs, strict=True)}

    def wrt(self, needs: Sequence[bool]) -> list[str]:
        return [name for name, need in zip(self.order, needs, strict=True) if need]

    def as_tensors(
        self, by_name: dict[str, Any], xs: Sequence[torch.Tensor], needs: Sequence[bool]
    ) -> tuple[torch.Tensor | None, ...]:
        return tuple(
            _like(by_name[name], x) if need else None
            for name, x, need in zip(self.order, xs, needs, strict=True)
        )


class _Value(torch.autograd.Function):
    """The function's value; backward: ``g * grad`` (scalar) or the service's VJP."""

    @staticmethod
    def forward(ctx: Any, call: _Call, *xs: torch.Tensor) -> torch.Tensor:
        ctx.call = call
        ctx.save_for_backward(*xs)
        value = call.rf.value(call.inputs(xs))
        dtype = reduce(torch.promote_types, (x.dtype for x in xs), torch.float32)
        device = xs[0].device if xs else None
        return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        call: _Call = ctx.call
        xs = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        if not any(needs):
            return (None, *([None] * len(xs)))
        if g.dim() == 0:
            # A scalar output: the gradient is itself differentiable (through /hvp),
            # and g stays in torch's graph, so a second backward sees both.
            grads = _apply(_Grad, call, tuple(needs), *xs)
            return (None, *(None if gr is None else g * gr for gr in grads))
        vjps = _apply(_Vjp, call, tuple(needs), g, *xs)
        return (None, *vjps)


class _Grad(torch.autograd.Function):
    """The gradient of a scalar output; backward: Hessian-vector products (``/hvp``)."""

    @staticmethod
    def forward(
        ctx: Any, call: _Call, needs: tuple[bool, ...], *xs: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        ctx.call, ctx.needs = call, needs
        ctx.save_for_backward(*xs)
        _, grads = call.rf.grad(call.inputs(xs), call.wrt(needs))
        return call.as_tensors(grads, xs, needs)

    @staticmethod
    @once_differentiable  # a third derivative: torch says it cannot differentiate twice
    def backward(ctx: Any, *vs: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        call: _Call = ctx.call
        xs = ctx.saved_tensors
        wrt = call.wrt(ctx.needs)
        vectors = {
            name: _numpy(v) if v is not None else np.zeros(tuple(x.shape))
            for name, v, x in zip(call.order, vs, xs, strict=True)
            if name in wrt
        }
        if not any(np.any(v) for v in vectors.values()):
            return (None, None, *([None] * len(xs)))
        hvp = call.rf.hvp(call.inputs(xs), vectors, wrt)
        needs = ctx.needs_input_grad[2:]
        grads = tuple(
            _like(hvp[name], x) if need and name in hvp else None
            for name, x, need in zip(call.order, xs, needs, strict=True)
        )
        return (None, None, *grads)


class _Vjp(torch.autograd.Function):
    """Cotangent times the Jacobian of a non-scalar output (once differentiable)."""

    @staticmethod
    def forward(
        ctx: Any, call: _Call, needs: tuple[bool, ...], g: torch.Tensor, *xs: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        _, vjp = call.rf.vjp(call.inputs(xs), _numpy(g), call.wrt(needs))
        return call.as_tensors(vjp, xs, needs)

    @staticmethod
    def backward(ctx: Any, *vs: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        raise RuntimeError(
            "autodiff_client.torch: a second derivative of a function with a non-scalar "
            "output is not supported (the service's /hvp needs a scalar output); reduce the "
            "output to a scalar in the function, or ask Client.hessian / Client.hvp"
        )
