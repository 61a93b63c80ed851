# Type stub: the ops are registered at import time under NumPy's names.
from collections.abc import Callable
from typing import Any

from engine.registry import OPS as OPS

OPERATORS: dict[str, tuple[str, bool]]

def operator_method(call: Any, reflected: bool) -> Any: ...
def __getattr__(name: str) -> Callable[..., Any]: ...
