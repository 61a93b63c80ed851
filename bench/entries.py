"""What a framework module hands the harness: named callables for one case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The frameworks, in report order; each is a module ``bench.fw_<name>``.
FRAMEWORKS = ("numpy", "ours", "autograd", "torch", "jax")


@dataclass(frozen=True)
class Entry:
    """One row of a case: a forward and a gradient callable (no arguments), either may be None."""

    name: str  # row label, e.g. "torch.func.jacfwd"
    framework: str  # one of FRAMEWORKS
    forward: Callable[[], Any] | None
    gradient: Callable[[], Any] | None
    note: str = ""


def flat_numpy(result: Any) -> list[np.ndarray]:
    """A result (array, tensor, scalar, nested tuples/lists of them) as flat float64 arrays."""
    if isinstance(result, tuple | list):
        out: list[np.ndarray] = []
        for item in result:
            out.extend(flat_numpy(item))
        return out
    if hasattr(result, "detach"):  # a torch tensor
        result = result.detach().cpu().numpy()
    return [np.asarray(result, dtype=np.float64)]
