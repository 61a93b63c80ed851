"""Differential: B points in one request (``batch``) on random programs against torch.func's
``vmap`` of grad, vjp, jvp, jacrev, jacfwd, hessian and the HVP, float64 references, through
the whole app in process. A random non-empty subset of the inputs is batched (the others
shared, ``in_dims=None``); the points are the program's inputs and two small perturbations
of them that take the same branches (torch replays the recorded decisions)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.differential import harness as H
from tests.differential import programs as P
from tests.differential import service
from tests.differential.backends import NumpyModel, Reject, TorchBackend, torch_module
from tests.differential.generate import Spec, program
from tests.differential.references import _np

SEEDS = range(30_000, 30_050)
B = 3


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with service.in_process() as c:
        yield c


def _points(spec: Spec, batched: list[str]) -> dict[str, np.ndarray] | None:
    """(B, *shape) values for the batched inputs, taking the original's branches; None if
    a perturbation changes a decision or meets a kink."""
    rng = np.random.default_rng(spec.seed)
    values = {n: np.stack([spec.inputs[n]] * B) for n in batched}
    for n in batched:
        scale = 1 + 0.003 * rng.uniform(-1, 1, size=values[n][1:].shape)
        values[n][1:] = values[n][1:] * scale
        if spec.dtype == "float32":
            values[n] = values[n].astype(np.float32).astype(np.float64)
    for b in range(1, B):
        model = NumpyModel()
        env = {**spec.inputs, **{n: v[b] for n, v in values.items()}}
        try:
            P.run(spec.program, model, env)
        except (Reject, FloatingPointError, ValueError, P.LoopLimit):
            return None
        if model.decisions != spec.decisions:
            return None
    return values


def _references(
    spec: Spec, points: dict[str, np.ndarray], ct: list[np.ndarray], t: dict[str, np.ndarray]
) -> dict[str, Any]:
    torch = torch_module()
    from torch import func

    names = list(spec.inputs)
    argnums = tuple(names.index(n) for n in spec.diff)
    in_dims = tuple(0 if n in points else None for n in names)
    args = tuple(
        torch.as_tensor(points[n] if n in points else spec.inputs[n].copy()) for n in names
    )

    def f(*xs: Any) -> tuple[Any, ...]:
        outs = P.run(spec.program, TorchBackend(spec.decisions), dict(zip(names, xs, strict=True)))
        return tuple(o if isinstance(o, torch.Tensor) else torch.as_tensor(o * 1.0) for o in outs)

    def diff_only(fn: Any) -> Any:
        """``fn`` of the differentiated inputs, the others bound from ``full``."""

        def of(*full: Any) -> Any:
            def g(*d: Any) -> Any:
                xs = list(full)
                for i, v in zip(argnums, d, strict=True):
                    xs[i] = v
                return f(*xs)

            return fn(g, tuple(full[i] for i in argnums))

        return of

    cts = tuple(torch.as_tensor(c) for c in ct)
    ts = tuple(torch.as_tensor(t[n]) for n in spec.diff)
    multi = len(spec.outputs) > 1

    def vjp(g: Any, d: Any, c: Any) -> Any:
        return func.vjp(g, *d)[1](c)

    def vjp_at(*full_and_cts: Any) -> Any:
        full, c = full_and_cts[: len(names)], full_and_cts[len(names) :]
        return diff_only(lambda g, d: vjp(g, d, tuple(c)))(*full)

    def jvp_at(*full_and_ts: Any) -> Any:
        full, tt = full_and_ts[: len(names)], full_and_ts[len(names) :]
        return diff_only(lambda g, d: func.jvp(g, d, tuple(tt))[1])(*full)

    out: dict[str, Any] = {
        "vjp": func.vmap(vjp_at, in_dims=(*in_dims, *([0] * len(cts))))(*args, *cts),
        "jvp": func.vmap(jvp_at, in_dims=(*in_dims, *([0] * len(ts))))(*args, *ts),
        "jacrev": func.vmap(
            diff_only(lambda g, d: func.jacrev(g, argnums=tuple(range(len(d))))(*d)),
            in_dims=in_dims,
        )(*args),
        "jacfwd": func.vmap(
            diff_only(lambda g, d: func.jacfwd(g, argnums=tuple(range(len(d))))(*d)),
            in_dims=in_dims,
        )(*args),
    }
    if spec.scalar:

        def scalar(g: Any) -> Any:
            return lambda *d: g(*d)[0].reshape(())

        nums = tuple(range(len(argnums)))
        out["grad"] = func.vmap(
            diff_only(lambda g, d: func.grad(scalar(g), argnums=nums)(*d)), in_dims=in_dims
        )(*args)
        out["hessian"] = func.vmap(
            diff_only(lambda g, d: func.hessian(scalar(g), argnums=nums)(*d)), in_dims=in_dims
        )(*args)

        def hvp_at(*full_and_ts: Any) -> Any:
            full, tt = full_and_ts[: len(names)], full_and_ts[len(names) :]
            return diff_only(
                lambda g, d: func.jvp(func.grad(scalar(g), argnums=nums), d, tuple(tt))[1]
            )(*full)

        out["hvp"] = func.vmap(hvp_at, in_dims=(*in_dims, *([0] * len(ts))))(*args, *ts)
    del multi
    return out


def _compare(
    spec: Spec, endpoint: str, ours: dict[str, Any], ref: Any, failures: list[str]
) -> None:
    multi = len(spec.outputs) > 1
    pairs: list[tuple[Any, Any]] = []
    if endpoint in ("grad", "vjp", "hvp"):
        key = {"grad": "gradients"}.get(endpoint, endpoint)
        pairs = [(ours[key][n], ref[i]) for i, n in enumerate(spec.diff)]
    elif endpoint == "jvp":
        got = ours["jvp"] if multi else [ours["jvp"]]
        pairs = list(zip(got, ref, strict=True))
    elif endpoint in ("jacrev", "jacfwd"):
        for k in range(len(spec.outputs)):
            for i, n in enumerate(spec.diff):
                got = ours["jacobian"][n][k] if multi else ours["jacobian"][n]
                pairs.append((got, ref[k][i]))
    elif endpoint == "hessian":
        for i, a in enumerate(spec.diff):
            for j, b in enumerate(spec.diff):
                pairs.append((ours["hessian"][a][b], ref[i][j]))
    for a, b in pairs:
        a, b = H.decode(a), _np(b)
        if np.all(np.isfinite(a)) and not np.all(np.isfinite(b)):
            continue  # torch's own NaN (see test_directions.py)
        if not H.close(spec, a, b):
            failures.append(
                f"seed {spec.seed} {endpoint}: ours {H.summary(a)}; torch {H.summary(b)}\n"
                + P.source(spec.program)
            )


def _agree(spec: Spec, a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list):
        return all(_agree(spec, x, y) for x, y in zip(a, b, strict=True))
    return H.close(spec, _np(a), _np(b))


def test_batches_match_torch_func_vmap(client: Any) -> None:
    compared, skipped, failures = 0, [], []
    for spec in (program(seed) for seed in SEEDS):
        if not spec.diff:
            continue
        chooser = random.Random(spec.seed)
        names = list(spec.inputs)
        batched = sorted(chooser.sample(names, chooser.randint(1, len(names))))
        points = _points(spec, batched)
        if points is None:
            skipped.append(f"seed {spec.seed}: a perturbed point takes another branch")
            continue
        rng = np.random.default_rng(spec.seed + 1)
        cts = [np.round(rng.uniform(-1, 1, size=(B, *np.shape(o))), 3) for o in spec.outputs]
        ts = {
            n: np.round(rng.uniform(-1, 1, size=(B, *spec.inputs[n].shape)), 3) for n in spec.diff
        }
        if spec.dtype == "float32":
            cts = [c.astype(np.float32).astype(np.float64) for c in cts]
            ts = {n: v.astype(np.float32).astype(np.float64) for n, v in ts.items()}
        try:
            refs = _references(spec, points, cts, ts)
        except Exception as err:  # a program torch's vmap cannot run: not compared
            skipped.append(f"seed {spec.seed}: {type(err).__name__}: {str(err)[:80]}")
            continue
        base = H.body(spec, "text", encoding="b64" if spec.seed % 2 else "json")
        for n in batched:
            base["inputs"][n]["data"] = points[n].tolist()
        base["batch"] = batched
        multi = len(spec.outputs) > 1
        cot: Any = [c.tolist() for c in cts] if multi else cts[0].tolist()
        requests = {
            "vjp": ("vjp", {"cotangent": cot}),
            "jvp": ("jvp", {"tangents": {n: v.tolist() for n, v in ts.items()}}),
            "jacrev": ("jacobian", {"mode": "reverse"}),
            "jacfwd": ("jacobian", {"mode": "forward"}),
            "grad": ("grad", {}),
            "hessian": ("hessian", {}),
            "hvp": ("hvp", {"vectors": {n: v.tolist() for n, v in ts.items()}}),
        }
        if "jacfwd" in refs and not _agree(spec, refs["jacfwd"], refs["jacrev"]):
            # torch disagrees with itself (its forward mode of det under vmap, seen on
            # seed 30028, is off by 0.17 where jacrev and finite differences agree)
            skipped.append(f"seed {spec.seed}: torch's jacfwd and jacrev disagree")
            del refs["jacfwd"]
        for label, ref in refs.items():
            path, extra = requests[label]
            r = client.post(f"/{path}", json={**base, **extra})
            if r.status_code != 200:
                failures.append(
                    f"seed {spec.seed} {label}: {r.status_code} {r.text[:300]}\n"
                    + P.source(spec.program)
                )
                continue
            compared += 1
            _compare(spec, label, r.json(), ref, failures)
    print(f"batch differential: {compared} answers compared; skipped: {skipped}")
    assert not failures, "\n".join(failures[:8])
    assert compared >= 200, (compared, skipped)
