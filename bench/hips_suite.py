"""HIPS autograd's own test suite run against our engine (issue 15's acceptance).

    .venv/bin/python -m bench.hips_suite [--only test_numpy.py,...] [--timeout 60] [--no-write]

The test files are autograd's, vendored unmodified under ``bench/hips/tests`` (MIT, see
``bench/hips/LICENSE`` and ``bench/hips/README.md``). A shim package ``bench/hips/shim/autograd``
goes first on ``sys.path``, so their ``import autograd...`` reaches our engine: see its
docstrings. Every test is classified:

- passed;
- wrong: an ``AssertionError`` (a value, a gradient check, or "DID NOT RAISE") -- the ones
  that matter;
- unsupported: the engine or the shim says it lacks what the test asks for (an unknown op, an
  autograd API with no counterpart such as containers of boxes or user primitives, a method or
  attribute a traced value does not have, a transform refused by design);
- crashed: any other exception (incl. the engine rejecting valid NumPy input) or a timeout;
- skipped: skipped by the test itself.

Writes the section "HIPS autograd's test suite against the engine" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITE = HERE / "hips"
TESTS = SUITE / "tests"
SHIM = SUITE / "shim"
RESULTS = HERE / "RESULTS.md"
SECTION = "## HIPS autograd's test suite against the engine"
KINDS = ("passed", "wrong", "unsupported", "crashed", "autograd-only", "skipped")

# tests of autograd's own behaviour, not of values: (test name prefix, why it does not apply)
AUTOGRAD_ONLY = {
    "test_rfftn_odd_not_implemented": "expects autograd's NotImplementedError for rfftn over an "
    "odd last axis; the engine differentiates it (test_fft's rfftn tests pass)",
    "test_custom_where_dtypes": "expects autograd's wrapper to give back Python int/float/list "
    "for plain arguments; the engine gives NumPy's 0-d/1-d arrays of the same values",
    "test_wrapped_name_and_docs": "the __name__/__doc__ of autograd's own wrapper functions",
}

# the engine's errors that mean "not supported" (clear refusals, by design or not yet)
UNSUPPORTED_ERRORS = {
    "ShimUnsupported",
    "UnknownOpError",
    "UnknownNameError",
    "NotDifferentiableError",
    "TracedValueError",
    "ComplexDifferentiationError",
    "NonScalarOutputError",
}
BOX_TYPES = ("Box", "Var", "Dual")


class TestTimeout(Exception):
    """A test ran longer than the limit."""


# what a wrong value, once investigated, comes from (test name prefix -> one line)
WRONG_VALUE_CAUSES = {
    "test_eigvalh_": "eigh of a NON-symmetric matrix: the value is NumPy's (it reads the UPLO "
    "triangle) but the engine's gradient is the symmetric one (its documented convention, as "
    "PyTorch's), so it is not the derivative of that value off symmetric matrices: "
    "grad(lambda a: sum(eigvalsh(a) * [1, 2, 3]))(randn(3, 3)) is symmetric, finite "
    "differences are lower-triangular (2x off the diagonal). Symmetric inputs pass (test_eigh)",
}


@dataclass
class Outcome:
    file: str
    test: str
    kind: str
    reason: str = ""


def classify(excinfo: Any) -> tuple[str, str]:
    """(kind, one-line reason) of a failed test's exception."""
    exc = excinfo.value
    name = type(exc).__name__
    message = " ".join(str(exc).split())[:200]
    if isinstance(exc, AssertionError) or name == "Failed":
        return "wrong", f"{name}: {message}"
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & UNSUPPORTED_ERRORS:
        return "unsupported", f"{name}: {message}"
    if isinstance(exc, ImportError) and "autograd" in message:
        return "unsupported", f"an autograd module/API the shim lacks: {message}"
    if isinstance(exc, AttributeError) and re.match(rf"'({'|'.join(BOX_TYPES)})' object", message):
        return "unsupported", f"traced value lacks it: {message}"
    return "crashed", f"{name}: {message}"


class Collector:
    """A pytest plugin: one Outcome per test, a time limit per test."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self.collection_errors: dict[str, str] = {}

    def pytest_runtest_setup(self, item: Any) -> None:
        signal.signal(signal.SIGALRM, self._alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def pytest_runtest_teardown(self, item: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _alarm(self, signum: int, frame: Any) -> None:
        raise TestTimeout(f"longer than {self.timeout:g} s")

    def pytest_runtest_logreport(self, report: Any) -> None:
        file, _, test = report.nodeid.partition("::")
        file = Path(file).name
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                self.outcomes.append(Outcome(file, test, "passed"))
            elif report.skipped:
                self.outcomes.append(Outcome(file, test, "skipped"))
            elif test.split("[")[0] in AUTOGRAD_ONLY:
                self.outcomes.append(
                    Outcome(file, test, "autograd-only", AUTOGRAD_ONLY[test.split("[")[0]])
                )
            else:
                kind, reason = self._reason(report)
                self.outcomes.append(Outcome(file, test, kind, reason))

    def _reason(self, report: Any) -> tuple[str, str]:
        excinfo = getattr(report, "_excinfo", None)
        if excinfo is not None:
            return classify(excinfo)
        return "crashed", str(report.longrepr).splitlines()[-1][:200]

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self.collection_errors[Path(report.nodeid).name] = text[-1][:200] if text else "?"

    # keep the exception object for classify()
    import pytest as _pytest

    @_pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is not None:
            report._excinfo = call.excinfo


def run(files: list[str] | None, timeout: float) -> Collector:
    import pytest

    sys.path.insert(0, str(SHIM))
    sys.path.insert(1, str(TESTS))
    for name in [m for m in sys.modules if m == "autograd" or m.startswith("autograd.")]:
        del sys.modules[name]  # the real autograd (bench extra) must not answer
    collector = Collector(timeout)
    targets = [str(TESTS / f) for f in files] if files else [str(TESTS)]
    args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(SUITE / "pytest.ini"),
        "--rootdir",
        str(SUITE),
    ]
    args += [
        "--continue-on-collection-errors",
        "-W",
        "ignore",
        "--tb=no",
        "--no-header",
        "-o",
        "console_output_style=classic",
    ]
    pytest.main(args + targets, plugins=[collector])
    return collector


def table(collector: Collector) -> list[str]:
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    for o in collector.outcomes:
        per_file[o.file][o.kind] += 1
    total: Counter[str] = Counter()
    lines = [
        "| file | tests | passed | wrong value | unsupported | crashed | autograd-only | skipped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for file in sorted(set(per_file) | set(collector.collection_errors)):
        counts = per_file[file]
        total.update(counts)
        note = " (not collected)" if file in collector.collection_errors else ""
        n = sum(counts.values())
        lines.append(f"| {file}{note} | {n} | " + " | ".join(str(counts[k]) for k in KINDS) + " |")
    n = sum(total.values())
    lines.append(f"| **all** | **{n}** | " + " | ".join(f"**{total[k]}**" for k in KINDS) + " |")
    share = 100 * total["passed"] / max(1, n - total["skipped"] - total["autograd-only"])
    lines += ["", f"Passed: {share:.0f}% of the tests that ran."]
    return lines


def listing(collector: Collector, kind: str) -> list[str]:
    return [
        f"- `{o.file}::{o.test}`: {_cause(o) if kind == 'wrong' else o.reason}"
        for o in collector.outcomes
        if o.kind == kind
    ] or ["- none"]


def _cause(o: Outcome) -> str:
    causes = [c for prefix, c in WRONG_VALUE_CAUSES.items() if o.test.startswith(prefix)]
    return f"{causes[0]}. ({o.reason[:100]})" if causes else o.reason


def reasons(collector: Collector, kind: str) -> list[str]:
    """The commonest reasons of one kind, with how many tests each."""
    counts = Counter(_gist(o.reason) for o in collector.outcomes if o.kind == kind)
    return [f"- {n} x {r}" for r, n in counts.most_common(25)] or ["- none"]


def _gist(reason: str) -> str:
    return reason[:140]


def report(collector: Collector, seconds: float, command: str) -> str:
    lines = [
        SECTION,
        "",
        "HIPS autograd's own tests (1.9.1, vendored unmodified in `bench/hips/tests`), every test "
        "function run against our engine through a shim (`bench/hips/shim/autograd`): "
        "`autograd.numpy` is `engine.numpy` (NumPy's names the engine lacks refuse traced values), "
        "`grad`/`jacobian`/`hessian`/`make_vjp`/`make_jvp`/... are the engine's transforms, and "
        "`check_grads` is our own central-difference check in both modes to the order asked, with "
        "autograd's step and tolerances (complex values in the engine's JAX convention). "
        "Not part of the project's pytest suite.",
        "",
        f"Command: `{command}` ({seconds:.0f} s on this machine).",
        "",
        "'wrong value' is an AssertionError (a value, a gradient check, or a DID NOT RAISE); "
        "'unsupported' is a clear refusal (unknown op, an autograd API with no counterpart such "
        "as containers of boxes or user-defined primitives, an attribute a traced value lacks); "
        "'crashed' is any other exception (incl. the engine rejecting valid NumPy input with a "
        "clear error), or a test over the time limit.",
        "",
        *table(collector),
        "",
        "Found by this suite and fixed (tests in tests/engine): the singular values of a complex "
        "matrix (`svd(..., compute_uv=False)`, `norm(..., 'nuc')`) and eigh's eigenvalues of a "
        "complex Hermitian one had the real rules, transposed without conjugation (wrong in both "
        "modes); the singular vectors and eigenvectors of a complex matrix, whose rules are still "
        "the real ones, are now refused in reverse mode and nan in forward mode (as eig's), so "
        "test_svd_*_complex and test_eigvalh_*_complex count as unsupported, not wrong; "
        "arcsinh of a complex value crashed (its rule used hypot).",
        "",
        "### Wrong values",
        "",
        *listing(collector, "wrong"),
        "",
        "### Autograd-only (tests of autograd's own behaviour, not counted in the share)",
        "",
        *listing(collector, "autograd-only"),
        "",
        "### Crashes",
        "",
        *listing(collector, "crashed"),
        "",
        "### Unsupported: the commonest reasons",
        "",
        *reasons(collector, "unsupported"),
    ]
    if collector.collection_errors:
        lines += ["", "### Files not collected", ""]
        lines += [f"- `{f}`: {r}" for f, r in sorted(collector.collection_errors.items())]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated test files (e.g. test_numpy.py)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per test")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    ns = parser.parse_args(argv)
    files = ns.only.split(",") if ns.only else None
    start = time.perf_counter()
    collector = run(files, ns.timeout)
    command = "python -m bench.hips_suite" + (f" --only {ns.only}" if ns.only else "")
    text = report(collector, time.perf_counter() - start, command)
    print(text)
    if not ns.no_write and not files:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
