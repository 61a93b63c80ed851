"""The agreement check: every framework's answer against ours, before any time is reported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RTOL = 1e-8


class DisagreementError(AssertionError):
    """A framework's answer differs from the reference beyond the tolerance."""


@dataclass(frozen=True)
class Agreement:
    """How far one answer is from the reference: the worst part's normwise relative error."""

    case: str
    entry: str
    max_rel_error: float


def rel_error(ref: np.ndarray, got: np.ndarray) -> float:
    """max|got - ref| / max|ref| (floored at 1e-300): normwise, so zeros in ref are fine."""
    if ref.shape != got.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(got))):
        return 0.0 if np.array_equal(ref, got, equal_nan=True) else float("inf")
    scale = max(float(np.max(np.abs(ref))), 1e-300)
    return float(np.max(np.abs(got - ref))) / scale


def compare(
    case: str, entry: str, ref: Sequence[np.ndarray], got: Sequence[np.ndarray], rtol: float = RTOL
) -> Agreement:
    """Check each part of ``got`` against ``ref``; raise DisagreementError past ``rtol``."""
    if len(ref) != len(got):
        raise DisagreementError(
            f"{case}: {entry} answered {len(got)} arrays, the reference {len(ref)}"
        )
    worst = 0.0
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        err = rel_error(r, g)
        if not err <= rtol:
            raise DisagreementError(
                f"{case}: {entry} disagrees with the reference in part {i}: "
                f"relative error {err:.3g} > {rtol:g} (shapes {r.shape} vs {g.shape})"
            )
        worst = max(worst, err)
    return Agreement(case, entry, worst)
