"""Run a generated program on every endpoint (and the engine's Python transforms) and compare
with the torch and JAX references: values, derivatives, shapes and dtypes.

A comparison fails when our answer is far from a reference that the other reference agrees
with (or from both); a status other than 200 on a valid program fails too. Each failure is
reduced to the smallest subexpression of the program that still fails the same way (the
minimal reproduction), and classified: known (an issue item another helper is fixing, see
``known.py``) or new.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from tests.differential import programs as P
from tests.differential.backends import NumpyModel, Reject
from tests.differential.generate import Spec
from tests.differential.references import (
    Directions,
    Reference,
    directions,
    jax_reference,
    torch_reference,
)

MODES = ("auto", "forward", "reverse")


class Caller(Protocol):
    def post(self, path: str, json: Any) -> Any: ...


@dataclass
class Failure:
    """One failed comparison, with what is needed to reproduce it."""

    endpoint: str  # "jacobian/forward", "api:hessian", ...
    kind: str  # value, derivative, shape, dtype, status-500, status-422, error...
    form: str  # text or graph
    spec: Spec
    detail: str
    request: dict[str, Any] | None = None
    known: str | None = None
    minimal: Failure | None = None

    @property
    def cls(self) -> str:
        """The class: endpoint, kind and the ops of the minimal reproduction."""
        m = self.minimal or self
        ops = "+".join(sorted(P.ops_used(m.spec.program)))
        return f"{self.endpoint}:{self.kind}:{self.form}:[{ops}]"


@dataclass
class Tally:
    programs: int = 0
    requests: int = 0
    comparisons: int = 0
    endpoints: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    reference_disagreements: list[str] = field(default_factory=list)
    reference_errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- answers


def decode(x: Any) -> Any:
    """An answer's array: b64 objects and JSON lists with "nan"/"inf" words to NumPy."""
    if isinstance(x, dict) and "b64" in x:
        raw = base64.b64decode(x["b64"])
        return np.frombuffer(raw, dtype=np.dtype(x["dtype"]).newbyteorder("<")).reshape(x["shape"])
    words = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

    def num(v: Any) -> Any:
        if isinstance(v, list):
            return [num(i) for i in v]
        return words.get(v, v) if isinstance(v, str) else v

    return np.asarray(num(x), dtype=np.float64)


def tolerance(spec: Spec) -> tuple[float, float]:
    return (2e-3, 2e-3) if spec.dtype == "float32" else (1e-6, 1e-8)


def close(spec: Spec, ours: np.ndarray, ref: np.ndarray) -> bool:
    rtol, atol = tolerance(spec)
    ours = np.asarray(ours, dtype=np.float64)
    if ours.shape != ref.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    return bool(np.allclose(ours, ref, rtol=rtol, atol=atol * scale, equal_nan=True))


def summary(a: Any) -> str:
    a = np.asarray(a)
    text = np.array2string(a.ravel()[:8], precision=6, separator=", ")
    return f"shape {a.shape} {a.dtype}: {text}{' ...' if a.size > 8 else ''}"


# --------------------------------------------------------------------------- requests


def body(spec: Spec, form: str, encoding: str = "b64") -> dict[str, Any]:
    inputs = {}
    for name, value in spec.inputs.items():
        entry: dict[str, Any] = {"data": value.tolist(), "dtype": spec.dtype}
        if name in spec.constants:
            entry["requires_grad"] = False
        inputs[name] = entry
    out: dict[str, Any] = {"inputs": inputs, "include_graph": False, "encoding": encoding}
    if form == "graph":
        out["graph"] = P.graph(spec.program)
    else:
        out["expression"] = P.source(spec.program)
    if spec.wrt is not None:
        out["wrt"] = list(spec.wrt)
    return out


def _array(values: np.ndarray, spec: Spec) -> Any:
    return {"data": np.asarray(values).tolist(), "dtype": spec.dtype}


def endpoint_requests(spec: Spec, d: Directions) -> list[tuple[str, str, dict[str, Any]]]:
    """(endpoint label, path, extra body fields) for every endpoint that fits the program."""
    multi = len(spec.outputs) > 1
    cot: Any = [_array(c, spec) for c in d.cotangents] if multi else _array(d.cotangents[0], spec)
    tangents = {n: _array(t, spec) for n, t in d.tangents.items()}
    vectors = {n: _array(v, spec) for n, v in d.vectors.items()}
    if spec.constants and spec.seed % 2 == 0:
        # a direction for a requires_grad-false input too: it must be ignored (issue B8)
        shapes = dict(spec.program.inputs)
        extra = {n: _array(np.full(shapes[n], 0.5), spec) for n in spec.constants}
        tangents, vectors = {**tangents, **extra}, {**vectors, **extra}
    out = [
        ("vjp", "/vjp", {"cotangent": cot}),
        ("jvp", "/jvp", {"tangents": tangents}),
    ]
    all_scalar = all(np.size(o) == 1 for o in spec.outputs)
    out.append(("grad", "/grad", {} if all_scalar else {"cotangent": cot}))
    out += [(f"jacobian/{m}", "/jacobian", {"mode": m}) for m in MODES]
    if spec.scalar:
        out += [("hessian", "/hessian", {}), ("hvp", "/hvp", {"vectors": vectors})]
    return out


def expected(spec: Spec, ref: Reference, endpoint: str) -> dict[str, Any]:
    """What the endpoint should answer, from one reference: {"value": [...], key: {...}}."""
    names = spec.diff
    exp: dict[str, Any] = {"value": ref.value}
    if endpoint == "grad" and all(np.size(o) == 1 for o in spec.outputs):
        # several scalar outputs and no cotangent: the sum of their gradients
        shapes = dict(spec.program.inputs)
        exp["gradients"] = {
            n: sum(ref.jac[o][i].reshape(shapes[n]) for o in range(len(spec.outputs)))
            for i, n in enumerate(names)
        }
    elif endpoint == "grad":
        exp["gradients"] = dict(zip(names, ref.vjp, strict=True))
    elif endpoint == "vjp":
        exp["vjp"] = dict(zip(names, ref.vjp, strict=True))
    elif endpoint == "jvp":
        exp["jvp"] = ref.jvp
    elif endpoint.startswith("jacobian"):
        exp["jacobian"] = {n: [row[i] for row in ref.jac] for i, n in enumerate(names)}
    elif endpoint == "hessian":
        assert ref.hess is not None and ref.grad is not None
        exp["gradients"] = dict(zip(names, ref.grad, strict=True))
        exp["hessian"] = {
            a: dict(zip(names, ref.hess[i], strict=True)) for i, a in enumerate(names)
        }
    elif endpoint == "hvp":
        assert ref.hvp is not None
        exp["hvp"] = dict(zip(names, ref.hvp, strict=True))
    return exp


def value_dtypes(spec: Spec) -> list[str]:
    """The dtypes NumPy gives the outputs with the inputs in their declared dtype."""
    dtype = np.float32 if spec.dtype == "float32" else np.float64
    inputs = {n: v.astype(dtype) for n, v in spec.inputs.items()}
    with np.errstate(all="ignore"):
        outs = P.run(spec.program, NumpyModel(checked=False), inputs)
    return [np.result_type(o).name if np.result_type(o).kind == "f" else "float64" for o in outs]


# --------------------------------------------------------------------------- comparing


def flatten(answer: dict[str, Any], exp: dict[str, Any], multi: bool) -> list[tuple[str, Any, Any]]:
    """(path, ours, reference) leaves of an answer and its expectation."""
    pairs: list[tuple[str, Any, Any]] = []
    for key, want in exp.items():
        got = answer.get(key)
        if key in ("value", "jvp"):
            if not multi:
                got, want = [got], want[:1]
            pairs += [
                (f"{key}[{i}]", g, w) for i, (g, w) in enumerate(zip(got or [], want, strict=False))
            ]
            if got is None or len(got) != len(want):
                pairs.append((key, None, want))
            continue
        if not isinstance(got, dict) or set(got) != set(want):
            pairs.append((f"{key} names", sorted(got or {}), sorted(want)))
            continue
        for name, w in want.items():
            g = got[name]
            if key == "hessian":
                if not isinstance(g, dict) or set(g) != set(w):
                    pairs.append((f"hessian[{name}] names", sorted(g or {}), sorted(w)))
                    continue
                pairs += [(f"hessian[{name}][{b}]", g[b], w[b]) for b in w]
            elif key == "jacobian" and multi:
                pairs += [
                    (f"jacobian[{name}][{i}]", gi, wi)
                    for i, (gi, wi) in enumerate(zip(g, w, strict=False))
                ]
            else:
                pairs.append((f"{key}[{name}]", g, w[0] if key == "jacobian" else w))
    return pairs


def compare_answer(
    spec: Spec,
    endpoint: str,
    answer: dict[str, Any],
    refs: list[Reference],
    dtypes: list[str],
    tally: Tally,
) -> tuple[str, str] | None:
    """The first (kind, detail) that fails, or None; counts comparisons."""
    multi = len(spec.outputs) > 1
    base = endpoint.split("/")[0]
    per_ref = [flatten(answer, expected(spec, r, base), multi) for r in refs]
    for leaves in zip(*per_ref, strict=True):
        path = leaves[0][0]
        raw = leaves[0][1]
        if path.endswith("names") or raw is None:
            return "names", f"{path}: ours {leaves[0][1]} vs {leaves[0][2]}"
        ours = decode(raw)
        wants = [np.asarray(w, dtype=np.float64) for _, _, w in leaves]
        tally.comparisons += len(wants)
        if ours.shape != wants[0].shape:
            return "shape", f"{path}: ours shape {ours.shape} vs reference {wants[0].shape}"
        if isinstance(raw, dict):  # b64: the dtype is said
            want_dtype = spec.dtype  # a derivative has its input's dtype (torch and JAX)
            if path.startswith("value["):
                want_dtype = dtypes[int(path[6:-1])]
            elif path.startswith("jvp["):  # a tangent of an output has the output's dtype
                want_dtype = dtypes[int(path[4:-1])]
            if ours.dtype.name != want_dtype:
                return "dtype", f"{path}: ours {ours.dtype.name} vs {want_dtype}"
        finite = [bool(np.all(np.isfinite(w))) for w in wants]
        if np.all(np.isfinite(ours)) and not all(finite):
            # a reference's own NaN (torch's second derivative of det at repeated singular
            # values): not compared, counted with the reference errors
            tally.reference_errors.append(f"seed {spec.seed} {endpoint} {path}: NaN")
            wants = [w for w, ok in zip(wants, finite, strict=True) if ok]
            if not wants:
                continue
        oks = [close(spec, ours, w) for w in wants]
        if all(oks):
            continue
        if len(wants) == 2 and not close(spec, wants[0], wants[1]) and any(oks):
            tally.reference_disagreements.append(f"seed {spec.seed} {endpoint} {path}")
            continue
        kind = "value" if path.startswith("value") else "derivative"
        ref = wants[oks.index(False)]
        return kind, f"{path}: ours {summary(ours)} vs reference {summary(ref)}"
    return None


# --------------------------------------------------------------------------- one program


def references(spec: Spec, with_jax: bool) -> tuple[Directions, list[Reference], list[str]]:
    d = directions(spec)
    refs = [torch_reference(spec, d)]
    if with_jax:
        refs.append(jax_reference(spec, d))
    errors = [f"seed {spec.seed} {r.library}: {r.error}" for r in refs if r.error]
    return d, [r for r in refs if not r.error], errors


def forms(spec: Spec) -> list[str]:
    out = ["text"]
    if spec.program.straight:
        try:
            P.graph(spec.program)
            out.append("graph")
        except P.NotGraphable:
            pass
    return out


def check_service(
    spec: Spec,
    caller: Caller,
    tally: Tally,
    refs: list[Reference],
    d: Directions,
    only: set[str] | None = None,
    form_list: list[str] | None = None,
) -> list[Failure]:
    """Every endpoint and mode, in every form the program has, against the references."""
    failures = []
    dtypes = value_dtypes(spec)
    previous = 0  # the status of the previous request on this caller
    for form in form_list or forms(spec):
        base = body(spec, form, encoding="b64" if spec.seed % 4 else "json")
        for endpoint, path, extra in endpoint_requests(spec, d):
            if only is not None and endpoint not in only:
                continue
            request = {**base, **extra}
            tally.requests += 1
            tally.endpoints[endpoint] += 1
            try:
                r = caller.post(path, json=request)
            except Exception as err:  # a dropped connection: the client reconnects next time
                detail = f"{type(err).__name__}: {err}; the previous answer was {previous}"
                failures.append(Failure(endpoint, "connection", form, spec, detail, request))
                previous = 0
                continue
            previous = r.status_code
            if r.status_code != 200:
                detail = r.text[:400]
                failures.append(
                    Failure(endpoint, f"status-{r.status_code}", form, spec, detail, request)
                )
                continue
            answer = r.json()
            summed = endpoint == "grad" and len(spec.outputs) > 1 and "cotangent" not in extra
            if summed and not any("sum" in w for w in answer.get("warnings", [])):
                failures.append(
                    Failure(
                        endpoint,
                        "no-warning",
                        form,
                        spec,
                        "several scalar outputs summed without a warning",
                        request,
                    )
                )
            bad = compare_answer(spec, endpoint, answer, refs, dtypes, tally)
            if bad is not None:
                failures.append(Failure(endpoint, bad[0], form, spec, bad[1], request))
    return failures


def check_api(spec: Spec, tally: Tally, refs: list[Reference], d: Directions) -> list[Failure]:
    """The engine's Python transforms on the compiled program, against the references."""
    import engine as ad
    from engine.lang import compile_cached

    names = spec.diff
    if not names:
        return []
    program = compile_cached(expression=P.source(spec.program))
    dtype = np.float32 if spec.dtype == "float32" else np.float64
    consts = {n: v.astype(dtype) for n, v in spec.inputs.items() if n not in names}
    xs = tuple(spec.inputs[n].astype(dtype) for n in names)
    dtypes = value_dtypes(spec)
    argnums = tuple(range(len(names)))
    multi = len(spec.outputs) > 1

    def f(*args: Any) -> Any:
        return program.run({**consts, **dict(zip(names, args, strict=True))})

    checks: list[tuple[str, Callable[[], Any], Callable[[Reference], Any]]] = []
    for mode in ("forward", "reverse"):
        checks.append(
            (
                f"api:jacobian/{mode}",
                lambda mode=mode: _rows(ad.jacobian(f, argnums, mode=mode)(*xs), multi),
                lambda r: r.jac,
            )
        )
    cts_typed = [c.astype(t) for c, t in zip(d.cotangents, dtypes, strict=True)]
    cts = tuple(cts_typed) if multi else cts_typed[0]
    checks.append(("api:vjp", lambda: list(ad.vjp(f, *xs)[1](cts)), lambda r: r.vjp))
    ts = tuple(d.tangents[n].astype(dtype) for n in names)
    checks.append(
        (
            "api:jvp",
            lambda: list(ad.jvp(f, xs, ts)[1]) if multi else [ad.jvp(f, xs, ts)[1]],
            lambda r: r.jvp,
        )
    )
    if spec.scalar:
        vs = tuple(d.vectors[n].astype(dtype) for n in names)
        checks += [
            ("api:grad", lambda: list(ad.grad(f, argnums)(*xs)), lambda r: r.grad),
            (
                "api:hessian",
                lambda: [list(row) for row in ad.hessian(f, argnums)(*xs)],
                lambda r: r.hess,
            ),
            ("api:hvp", lambda: list(ad.hvp(f, xs, vs)), lambda r: r.hvp),
        ]
        if len(names) == 1:
            checks += [
                ("api:jacobian(grad)", lambda: [[ad.jacobian(ad.grad(f))(*xs)]], lambda r: r.hess),
                (
                    "api:jacobian(jacobian)",
                    lambda: [[ad.jacobian(ad.jacobian(f))(*xs).reshape(xs[0].shape * 2)]],
                    lambda r: r.hess,
                ),
            ]
    failures = []
    for endpoint, ours_fn, ref_fn in checks:
        tally.endpoints[endpoint] += 1
        try:
            with np.errstate(all="ignore"):
                ours = ours_fn()
        except Exception as err:
            failures.append(
                Failure(endpoint, "error", "api", spec, f"{type(err).__name__}: {err}"[:300])
            )
            continue
        want_dtype = dtypes if endpoint == "api:jvp" else None
        bad = _compare_nested(spec, ours, [ref_fn(r) for r in refs], tally, want_dtype)
        if bad is not None:
            failures.append(Failure(endpoint, bad[0], "api", spec, bad[1]))
    return failures


def _rows(jac: Any, multi: bool) -> list[list[Any]]:
    return [list(row) for row in jac] if multi else [list(jac)]


def _compare_nested(
    spec: Spec, ours: Any, wants: list[Any], tally: Tally, dtypes: list[str] | None
) -> tuple[str, str] | None:
    """Nested lists of blocks; ``dtypes``: per top-level block (else the inputs' dtype)."""
    if isinstance(wants[0], list):
        if not isinstance(ours, list | tuple) or len(ours) != len(wants[0]):
            return "structure", f"ours {type(ours).__name__} vs {len(wants[0])} blocks"
        for i in range(len(wants[0])):
            sub = [dtypes[i]] if dtypes else None
            bad = _compare_nested(spec, ours[i], [w[i] for w in wants], tally, sub)
            if bad is not None:
                return bad
        return None
    o = np.asarray(ours)
    tally.comparisons += len(wants)
    if np.all(np.isfinite(o)):  # a reference's own NaN is not compared (see compare_answer)
        wants = [w for w in wants if np.all(np.isfinite(w))]
        if not wants:
            tally.reference_errors.append(f"seed {spec.seed}: a reference's NaN")
            return None
    if o.shape != np.shape(wants[0]):
        return "shape", f"ours shape {o.shape} vs {np.shape(wants[0])}"
    want_dtype = dtypes[0] if dtypes else spec.dtype
    if o.dtype.name != want_dtype:
        return "dtype", f"ours {o.dtype.name} vs {want_dtype}"
    oks = [close(spec, o, w) for w in wants]
    if all(oks) or (len(wants) == 2 and any(oks) and not close(spec, wants[0], wants[1])):
        return None
    return "derivative", f"ours {summary(o)} vs reference {summary(wants[oks.index(False)])}"


# --------------------------------------------------------------------------- minimising


def candidates(spec: Spec) -> list[P.Program]:
    """Smaller programs made of one subexpression each, smallest first."""
    body = spec.program.body
    subst: dict[str, Any] = {}
    exprs: list[Any] = []
    for s in body:
        if isinstance(s, P.Assign) and spec.program.straight:
            values = s.value if isinstance(s.value, tuple) else (s.value,)
            values = tuple(_inline(v, subst) for v in values)
            if len(values) == len(s.targets):
                subst.update(zip(s.targets, values, strict=True))
            exprs += [n for v in values for n in P.walk(v)]
        elif isinstance(s, P.Return):
            exprs += [n for v in s.values for n in P.walk(_inline(v, subst))]
    if not spec.program.straight:
        exprs = P.expressions(spec.program)
    inputs = {n for n, _ in spec.program.inputs}
    seen, out = set(), []
    for e in sorted(exprs, key=lambda e: len(P.text(e))):
        names = {n.name for n in P.walk(e) if isinstance(n, P.Name)}
        key = P.text(e)
        if not isinstance(e, P.Call | P.Index) or not names <= inputs or key in seen:
            continue
        seen.add(key)
        out.append(P.Program((P.Return((e,)),), spec.program.inputs))
    return out


def _inline(e: Any, subst: dict[str, Any]) -> Any:
    if isinstance(e, P.Name):
        return subst.get(e.name, e)
    if isinstance(e, P.Call):
        args = tuple(_inline(a, subst) for a in e.args)
        kwargs = tuple((k, _inline(v, subst) if P.is_expr(v) else v) for k, v in e.kwargs)
        return replace(e, args=args, kwargs=kwargs)
    if isinstance(e, P.Seq):
        return P.Seq(tuple(_inline(x, subst) for x in e.items))
    if isinstance(e, P.Index):
        return P.Index(_inline(e.x, subst), e.entries)
    return e


def respec(spec: Spec, program: P.Program, scalar: bool) -> Spec | None:
    """The same inputs with another program (reduced to a scalar if asked); None if invalid."""
    if scalar:
        program = P.Program((P.Return((P.Call("sum", program.outputs),)),), program.inputs)
    model = NumpyModel()
    try:
        outs = P.run(program, model, dict(spec.inputs))
    except (Reject, P.LoopLimit, IndexError, ValueError, TypeError):
        return None
    if any(isinstance(o, tuple) for o in outs):
        return None
    return replace(spec, program=program, decisions=model.decisions, outputs=outs)


def minimise(
    failure: Failure, run_one: Callable[[Spec, str, str], Failure | None], limit: int = 40
) -> Failure:
    """The smallest subexpression program that fails at the same endpoint the same way."""
    scalar_only = failure.endpoint.split("/")[0] in ("hessian", "hvp") or failure.endpoint in (
        "api:grad",
        "api:hessian",
        "api:hvp",
        "api:jacobian(grad)",
        "api:jacobian(jacobian)",
    )
    for program in candidates(failure.spec)[:limit]:
        small = respec(failure.spec, program, scalar_only)
        if small is None or len(P.source(small.program)) >= len(P.source(failure.spec.program)):
            continue
        got = run_one(small, failure.endpoint, failure.form)
        if got is not None and got.kind == failure.kind:
            return got
    return failure
