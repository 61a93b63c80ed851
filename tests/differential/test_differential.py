"""Differential tests: random programs on every endpoint against torch.func and JAX.

A bounded, fixed-seed run (the long run is ``python -m bench.differential``): every program
goes through the whole app in process, some through a real server over HTTP, and through
the engine's Python transforms; values, derivatives, shapes and dtypes are compared with
float64 references. Any failure whose minimal reproduction is not in
``known.KNOWN_BEING_FIXED`` fails the test, with the reproductions in the message.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine.numpy  # noqa: F401  (registers every op)
from engine.registry import OPS
from tests.differential import harness as H
from tests.differential import programs as P
from tests.differential import run as R
from tests.differential import service
from tests.differential.generate import COVERED, program

# Fixed seeds: the same programs on every run. The module takes 26-52 s here (2 shared
# cores), of which importing torch and JAX is about 5 s and JAX's compiles about 8 s.
IN_PROCESS_SEEDS = R.covering_seeds(range(0, 40), start=10_000)
HTTP_SEEDS = range(1000, 1008)
OPTIONS = R.Options(jax_every=12)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with service.in_process() as c:
        yield c


def new_failures_message(report: R.Report) -> str:
    lines = [f"{len(report.new)} failures of classes not in KNOWN_BEING_FIXED:"]
    shown = set()
    for f in report.new:
        if f.cls in shown:
            continue
        shown.add(f.cls)
        lines.append(json.dumps(R.reproduction(f), indent=1)[:2500])
    return "\n".join(lines)


def family_covered() -> set[str]:
    """Ops that a family's own differential file checks (``COVERS`` in
    tests/differential/test_ops_<family>.py) rather than the random-program generator."""
    covered: set[str] = set()
    for path in sorted(Path(__file__).parent.glob("test_ops_*.py")):
        module = importlib.import_module(f"tests.differential.{path.stem}")
        covered |= set(getattr(module, "COVERS", ()))
    return covered


def test_the_generator_covers_every_op_the_registry_lists() -> None:
    listed = {op.name for op in OPS.values() if not op.name.startswith("_")}
    missing = listed - COVERED - family_covered()
    assert missing == set(), "ops that no differential test makes"


def test_the_references_are_in_the_test_extra() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    test_extra = " ".join(pyproject["project"]["optional-dependencies"]["test"])
    assert "torch==" in test_extra and "jax[cpu]==" in test_extra


def test_a_seed_always_gives_the_same_program() -> None:
    a, b = program(7), program(7)
    assert P.source(a.program) == P.source(b.program)
    assert all(np.array_equal(a.inputs[n], b.inputs[n]) for n in a.inputs)


def test_the_run_reaches_every_op_and_program_form() -> None:
    specs = [program(s) for s in IN_PROCESS_SEEDS]
    seen = set().union(*(P.ops_used(s.program) for s in specs))
    assert COVERED - seen == set()
    assert len(specs) < 60  # the CI run stays short
    assert any(s.program.is_expression for s in specs)
    assert any(not s.program.straight for s in specs)  # control flow
    assert any("graph" in H.forms(s) for s in specs)
    assert any(len(s.outputs) > 1 for s in specs)
    assert any(s.dtype == "float32" for s in specs)


class WrongJacobian:
    """A caller that answers one Jacobian entry wrong: the run must see it."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, path: str, json: Any) -> Any:
        response = self.client.post(path, json=json)
        if path != "/jacobian" or response.status_code != 200:
            return response
        answer = response.json()
        name = next(iter(answer["jacobian"]))
        block = H.decode(answer["jacobian"][name])
        if isinstance(block, np.ndarray) and block.size:
            block = np.array(block, dtype=np.float64)
            block.flat[0] += 0.5
            answer["jacobian"][name] = block.tolist()
        return _Answer(answer)


class _Answer:
    status_code = 200

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.text = ""

    def json(self) -> dict[str, Any]:
        return self.answer


def test_a_wrong_derivative_is_caught(client: Any) -> None:
    spec = program(3)
    d, refs, _ = H.references(spec, with_jax=False)
    failures = H.check_service(spec, WrongJacobian(client), H.Tally(), refs, d, {"jacobian/auto"})
    assert [f.kind for f in failures] == ["derivative"]


def test_differential_in_process(client: Any) -> None:
    report = R.run(IN_PROCESS_SEEDS, [client], OPTIONS)
    figures = report.figures()
    assert figures["programs"] == len(IN_PROCESS_SEEDS)
    assert figures["comparisons"] > 1000
    assert not report.tally.reference_disagreements, report.tally.reference_disagreements
    if report.new:
        pytest.fail(new_failures_message(report))


@pytest.mark.server
def test_differential_over_real_http(client: Any) -> None:
    with service.real_http() as http:
        report = R.run(HTTP_SEEDS, [http], R.Options(jax_every=0, api=False))
    assert report.tally.requests > 40
    if report.new:
        pytest.fail(new_failures_message(report))
