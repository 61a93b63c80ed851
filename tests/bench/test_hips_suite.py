"""A smoke test of bench/hips_suite.py (HIPS autograd's tests against the engine): the shim's
``check_grads`` catches a derivative the engine misses, and two small vendored files run and
are classified. In subprocesses: the shim's ``autograd`` package must not leak into this one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_shims_check_grads_fails_on_a_derivative_the_engine_does_not_see() -> None:
    done = _python(
        """
        import sys; sys.path.insert(0, "bench/hips/shim")
        import autograd.numpy as np
        import engine.numpy as anp
        from autograd.test_util import check_grads
        check_grads(lambda x: np.sum(np.sin(x) * x))(np.linspace(0.1, 1.0, 3))  # right: passes
        for modes in (["fwd"], ["rev"]):
            try:  # stop_gradient hides part of the derivative from both modes
                check_grads(lambda x: np.sum(x ** 3 + anp.stop_gradient(x)), modes=modes)(
                    np.linspace(0.1, 1.0, 3))
            except AssertionError:
                print("caught", modes[0])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["caught", "fwd", "caught", "rev"]


def test_two_vendored_files_run_and_are_classified() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.hips_suite", "--only", "test_truediv.py,test_core.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| test_core.py | 12 | 12 | 0 | 0 | 0 | 0 | 0 |" in done.stdout
    assert "| test_truediv.py | 1 | 1 | 0 |" in done.stdout
