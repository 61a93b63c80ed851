"""One differential run: programs by seed, every endpoint, references, minimal reproductions,
classification, and the figures. Shared by the CI test and ``python -m bench.differential``."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.differential import harness as H
from tests.differential import programs as P
from tests.differential.generate import COVERED, Spec, program
from tests.differential.known import classify


@dataclass
class Options:
    jax_every: int = 10  # JAX (jit-compiled, 1-3 s a program here) on every n-th program
    http_every: int = 0  # every n-th program also through the real HTTP server (0: never)
    api: bool = True  # the engine's Python transforms as well
    minimise: bool = True


@dataclass
class Report:
    tally: H.Tally = field(default_factory=H.Tally)
    seconds: float = 0.0
    by_class: Counter[str] = field(default_factory=Counter)
    examples: dict[str, H.Failure] = field(default_factory=dict)

    @property
    def new(self) -> list[H.Failure]:
        return [f for f in self.tally.failures if f.known is None]

    def figures(self) -> dict[str, Any]:
        t = self.tally
        known = Counter(f.known for f in t.failures if f.known)
        new = Counter(f.cls for f in self.new)
        return {
            "programs": t.programs,
            "requests": t.requests,
            "endpoints": dict(sorted(t.endpoints.items())),
            "comparisons": t.comparisons,
            "failures": len(t.failures),
            "known_being_fixed": dict(known),
            "new_classes": dict(new),
            "reference_disagreements": len(t.reference_disagreements),
            "reference_errors": len(t.reference_errors),
            "seconds": round(self.seconds, 1),
        }


def covering_seeds(base: Iterable[int], start: int, limit: int = 5000) -> list[int]:
    """``base`` plus, for every op the base programs never use, the first seed from ``start``
    whose program uses it: a short run that still reaches every op of the registry."""
    seeds = list(base)
    seen = set().union(*(P.ops_used(program(s).program) for s in seeds))
    for seed in range(start, start + limit):
        missing = COVERED - seen
        if not missing:
            break
        used = P.ops_used(program(seed).program)
        if used & missing:
            seeds.append(seed)
            seen |= used
    return seeds


def reproduction(f: H.Failure) -> dict[str, Any]:
    """A failure's minimal reproduction as something to paste: endpoint, request, answers."""
    m = f.minimal or f
    out: dict[str, Any] = {
        "class": f.cls,
        "endpoint": m.endpoint,
        "kind": m.kind,
        "seed": f.spec.seed,
        "detail": m.detail,
        "source": P.source(m.spec.program),
    }
    if m.request is not None:
        out["request"] = m.request
    else:
        out["inputs"] = {n: v.tolist() for n, v in m.spec.inputs.items()}
        out["dtype"] = m.spec.dtype
    return out


def check_program(
    spec: Spec, callers: list[H.Caller], options: Options, tally: H.Tally, index: int
) -> list[H.Failure]:
    with_jax = options.jax_every > 0 and index % options.jax_every == 0
    d, refs, errors = H.references(spec, with_jax)
    tally.reference_errors += errors
    if not refs:
        return []
    failures: list[H.Failure] = []
    for caller in callers:
        failures += H.check_service(spec, caller, tally, refs, d)
    if options.api:
        failures += H.check_api(spec, tally, refs, d)
    return failures


def one_endpoint(caller: H.Caller) -> Callable[[Spec, str, str], H.Failure | None]:
    """Run one endpoint of one (smaller) program against torch: for the minimiser."""

    def run(spec: Spec, endpoint: str, form: str) -> H.Failure | None:
        d, refs, _ = H.references(spec, with_jax=False)
        if not refs:
            return None
        if form == "graph" and "graph" not in H.forms(spec):
            return None
        scratch = H.Tally()
        if endpoint.startswith("api:"):
            found = H.check_api(spec, scratch, refs, d)
        else:
            found = H.check_service(spec, caller, scratch, refs, d, {endpoint}, [form])
        found = [f for f in found if f.endpoint == endpoint]
        return found[0] if found else None

    return run


def run(
    seeds: Iterable[int],
    callers: list[H.Caller],
    options: Options,
    progress: Callable[[str], None] | None = None,
) -> Report:
    report = Report()
    start = time.perf_counter()
    for index, seed in enumerate(seeds):
        spec = program(seed)
        use = callers[:1]
        if options.http_every and len(callers) > 1 and index % options.http_every == 0:
            use = callers
        failures = check_program(spec, use, options, report.tally, index)
        report.tally.programs += 1
        # one minimisation per (endpoint, kind) per program: the other forms share it
        if progress and index and index % 100 == 0:
            progress(f"# {index} programs: {json.dumps(report.figures())}")
        minimised: dict[tuple[str, str], H.Failure | None] = {}
        for f in failures:
            key = (f.endpoint, f.kind)
            if options.minimise and key not in minimised and f.kind != "connection":
                minimised[key] = H.minimise(f, one_endpoint(callers[0]))
            f.minimal = minimised.get(key)
            f.known = classify(f)
            report.tally.failures.append(f)
            report.by_class[f.cls] += 1
            report.examples.setdefault(f.cls, f)
            if progress and f.known is None:
                progress(f"NEW {f.cls}\n{json.dumps(reproduction(f), indent=1)[:3000]}")
    report.seconds = time.perf_counter() - start
    return report
