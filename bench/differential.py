"""The long differential run: ``python -m bench.differential --programs N --seed S``.

Random programs over every op of the engine (tests/differential/generate.py), each on every
endpoint and Jacobian mode through the app in process (and every ``--http-every``-th one
through a real server over HTTP too) and through the engine's Python transforms, compared
with torch.func on every program and JAX on every ``--jax-every``-th (JAX compiles each
program: 1-3 s here, against 0.05-0.3 s for torch). Prints the figures (programs,
endpoints, comparisons, failures by class, known or new) and the minimal reproduction of
every new class; ``--json FILE`` writes them all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from tests.differential import run as R
from tests.differential import service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="the first program's seed")
    parser.add_argument("--jax-every", type=int, default=10)
    parser.add_argument("--http-every", type=int, default=20)
    parser.add_argument("--no-api", action="store_true", help="skip the Python transforms")
    parser.add_argument("--json", help="write figures and reproductions to this file")
    args = parser.parse_args(argv)
    seeds = range(args.seed, args.seed + args.programs)
    options = R.Options(jax_every=args.jax_every, http_every=args.http_every, api=not args.no_api)

    def progress(message: str) -> None:
        print(message, flush=True)

    with contextlib.ExitStack() as stack:
        callers: list[Any] = [stack.enter_context(service.in_process())]
        if args.http_every:
            callers.append(stack.enter_context(service.real_http()))
        report = R.run(seeds, callers, options, progress)
    figures = report.figures()
    print(json.dumps(figures, indent=1))
    known_examples = {}
    for f in report.tally.failures:
        if f.known and f.known not in known_examples:
            known_examples[f.known] = R.reproduction(f)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "figures": figures,
                    "new": [R.reproduction(report.examples[c]) for c in figures["new_classes"]],
                    "known_examples": known_examples,
                    "reference_errors": report.tally.reference_errors,
                    "reference_disagreements": report.tally.reference_disagreements,
                },
                out,
                indent=1,
            )
    return 1 if report.new else 0


if __name__ == "__main__":
    sys.exit(main())
