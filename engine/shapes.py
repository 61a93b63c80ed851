"""Size checks from shapes alone: refuse a result before any memory is taken."""

from __future__ import annotations

import math
from typing import Any

from engine.errors import SizeLimitError
from engine.registry import Op


def check_size(
    op: Op, args: tuple[Any, ...], kwargs: dict[str, Any], max_elements: int
) -> tuple[int, ...]:
    """The output shape of ``op(*args, **kwargs)``; SizeLimitError past ``max_elements``."""
    shape = op.shape(*args, **kwargs)
    size = math.prod(shape)
    if size > max_elements:
        raise SizeLimitError(
            f"{op.name}: the result would have shape {shape} ({size:,} elements), over the "
            f"limit of {max_elements:,} elements",
            op=op.name,
            shapes=[shape],
        )
    return shape
