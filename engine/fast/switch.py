"""The fast layer's switch, read once from ``AUTODIFF_ENGINE_FAST`` at import ("0" is off).

A module of its own so that rules can read ``switch.ON`` without importing the layer.
Flip it with ``engine.fast.set_enabled`` or ``engine.fast.fast_mode`` (process-wide: not
meant to be flipped while another thread computes).
"""

from __future__ import annotations

import os

ON: bool = os.environ.get("AUTODIFF_ENGINE_FAST", "1").strip() != "0"
