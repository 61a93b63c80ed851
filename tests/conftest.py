"""Fixtures for every test: seeded randomness that can be replayed, and the app.

The seed is fixed (``DEFAULT_SEED``), printed in the report's header, and can be changed
with ``--seed N`` or ``AUTODIFF_TEST_SEED``. Each test's generator is seeded from the
seed and the test's id with a CRC (``hash()`` of a string changes with every process,
so a failure seeded by it could not be replayed).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

DEFAULT_SEED = 20261206


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seed",
        type=int,
        default=int(os.environ.get("AUTODIFF_TEST_SEED", DEFAULT_SEED)),
        help=f"seed of the rng fixture (default {DEFAULT_SEED}, or $AUTODIFF_TEST_SEED)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"rng seed: {config.getoption('--seed')} (replay with --seed N)"


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This test's seed: the session's seed and the test's id, mixed by CRC-32."""
    base: int = request.config.getoption("--seed")
    return (base + zlib.crc32(request.node.nodeid.encode())) % 2**32


@pytest.fixture
def rng(seed: int, record_property: pytest.RecordProperty) -> np.random.Generator:
    """A NumPy generator seeded by ``seed`` (shown with the failure, so it can be replayed)."""
    record_property("seed", seed)
    print(f"rng seed of this test: {seed}")  # in the captured output of a failure
    return np.random.default_rng(seed)


@pytest.fixture
def app_client() -> Iterator[TestClient]:
    """The service with a one-worker pool, started (lifespan run) and stopped around the test."""
    from app.main import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings(workers=1))) as client:
        yield client
