"""Fixtures for the engine's tests: a fixed, printed seed for the op table.

The op table's random inputs and directions come from ``case_rng(case_id)``, seeded by
``ENGINE_TEST_SEED`` (printed in pytest's header) and a stable hash of the row's id,
so a failing row is replayed with the same numbers by re-running it with that seed:
``ENGINE_TEST_SEED=<seed> pytest "tests/engine/test_ops.py::...[row]"``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import numpy as np
import pytest

DEFAULT_SEED = 20261206
SEED = int(os.environ.get("ENGINE_TEST_SEED", DEFAULT_SEED))


def case_rng(case_id: str) -> np.random.Generator:
    """The generator of one table row: the session's seed and a stable hash of ``case_id``
    (``hash()`` of a string changes with every interpreter, so it could not be replayed)."""
    return np.random.default_rng([SEED, zlib.crc32(case_id.encode())])


@pytest.fixture
def fast_on() -> Iterator[None]:
    """The fast layer on for one test that looks at a shortcut itself."""
    from engine.fast import fast_mode

    with fast_mode(True):
        yield


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def fast_switch(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run a test with the fast layer on and off (same answers expected)."""
    from engine.fast import fast_mode

    with fast_mode(request.param):
        yield request.param


def pytest_report_header(config: pytest.Config) -> str:
    from engine.fast import enabled

    fast = "on" if enabled() else "off (AUTODIFF_ENGINE_FAST=0)"
    return (
        f"engine op table: ENGINE_TEST_SEED={SEED} (set it to replay a failure); "
        f"engine fast layer {fast}"
    )
