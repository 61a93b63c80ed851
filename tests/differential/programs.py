"""The differential tests' own program form: a tiny AST, its text and JSON graph renderings,
and one interpreter that runs it on any backend (NumPy, torch, JAX).

A generated program is data (frozen dataclasses), so the same program is rendered as
the service's text language, as its JSON graph form, and run by the interpreter on the
reference backends. Control flow is define-by-run, like the engine's: the interpreter
asks the backend to ``decide`` each condition; the NumPy run records the decisions and the
reference runs replay them, so torch and JAX follow the path the service takes without a
traced value ever being turned into a Python bool inside their transforms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Name:
    """An input, a local variable, or a ``for`` loop counter."""

    name: str


@dataclass(frozen=True)
class Lit:
    """A number or a nested list of numbers (a constant array)."""

    value: Any


@dataclass(frozen=True)
class Call:
    """An op call. ``style``: "call" (``op(a, b)``), "infix" (``a + b``) or "unary" (``-a``)."""

    op: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()
    style: str = "call"


@dataclass(frozen=True)
class Seq:
    """A list of arrays: a sequence argument (``concatenate``), or an array of traced items."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class Index:
    """``x[entries]``: entries are ints, ``Slice``, None, ``...`` (Ellipsis) or nested int lists."""

    x: Any
    entries: tuple[Any, ...]


Expr = Name | Lit | Call | Seq | Index

# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Assign:
    targets: tuple[str, ...]  # several: tuple unpacking of a tuple value
    value: Any  # an Expr, or a tuple of Exprs for ``a, b = e1, e2``


@dataclass(frozen=True)
class AugAssign:
    target: str
    op: str  # "+", "-", "*"
    value: Any


@dataclass(frozen=True)
class If:
    cond: Any
    body: tuple[Any, ...]
    orelse: tuple[Any, ...]  # may hold one nested If: rendered as elif


@dataclass(frozen=True)
class While:
    cond: Any
    body: tuple[Any, ...]


@dataclass(frozen=True)
class For:
    var: str
    stop: int
    body: tuple[Any, ...]


@dataclass(frozen=True)
class Return:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Program:
    """A function: statements ending in a Return. ``inputs``: name -> shape."""

    body: tuple[Any, ...]
    inputs: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def outputs(self) -> tuple[Any, ...]:
        last = self.body[-1]
        assert isinstance(last, Return)
        return last.values

    @property
    def straight(self) -> bool:
        """No control flow: the program has a JSON graph form."""
        return all(isinstance(s, Assign | Return) for s in self.body)

    @property
    def is_expression(self) -> bool:
        return len(self.body) == 1


INFIX = {
    "add": "+",
    "subtract": "-",
    "multiply": "*",
    "divide": "/",
    "floor_divide": "//",
    "remainder": "%",
    "power": "**",
    "matmul": "@",
    "less": "<",
    "less_equal": "<=",
    "greater": ">",
    "greater_equal": ">=",
    "equal": "==",
    "not_equal": "!=",
    "logical_and": "and",
    "logical_or": "or",
}
SEQUENCE_OPS = ("concatenate", "stack")
AUG_OPS = {"+": "add", "-": "subtract", "*": "multiply"}

# --------------------------------------------------------------------------- walking


def is_expr(v: Any) -> bool:
    return isinstance(v, Name | Lit | Call | Seq | Index)


def children(e: Any) -> tuple[Any, ...]:
    if isinstance(e, Call):
        return e.args + tuple(v for _, v in e.kwargs if is_expr(v))
    if isinstance(e, Seq):
        return e.items
    if isinstance(e, Index):
        return (e.x,)
    return ()


def walk(e: Any) -> list[Any]:
    """Every node of an expression, the root first."""
    out, stack = [], [e]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(children(node)))
    return out


def statements(body: tuple[Any, ...]) -> list[Any]:
    out = []
    for s in body:
        out.append(s)
        if isinstance(s, If):
            out += statements(s.body) + statements(s.orelse)
        elif isinstance(s, While | For):
            out += statements(s.body)
    return out


def expressions(program: Program) -> list[Any]:
    """Every expression node of a program."""
    roots: list[Any] = []
    for s in statements(program.body):
        if isinstance(s, Assign):
            roots += list(s.value) if isinstance(s.value, tuple) else [s.value]
        elif isinstance(s, AugAssign):
            roots.append(s.value)
        elif isinstance(s, If | While):
            roots.append(s.cond)
        elif isinstance(s, Return):
            roots += list(s.values)
    return [n for r in roots for n in walk(r)]


def ops_used(program: Program) -> set[str]:
    found = set()
    for n in expressions(program):
        if isinstance(n, Call):
            found.add(n.op)
        elif isinstance(n, Index):
            found.add("getitem")
        elif isinstance(n, Seq):
            found.add("list")
    for s in statements(program.body):
        if isinstance(s, AugAssign):
            found.add(AUG_OPS[s.op])
    return found


# --------------------------------------------------------------------------- text


def number(v: float) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "inf" if v > 0 else "(-inf)"
    text = repr(float(v))
    return text if not text.startswith("-") else f"({text})"


def static_text(v: Any) -> str:
    if v is None:
        return "None"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, tuple | list):
        inner = ", ".join(static_text(x) for x in v)
        return f"({inner},)" if isinstance(v, tuple) and len(v) == 1 else f"({inner})"
    return number(v)


def literal_text(v: Any) -> str:
    if isinstance(v, str):  # einsum's subscripts
        return '"' + v + '"'
    if isinstance(v, list):
        return "[" + ", ".join(literal_text(x) for x in v) + "]"
    return number(v)


def entry_text(entry: Any) -> str:
    if entry is None:
        return "None"
    if entry is Ellipsis:
        return "..."
    if isinstance(entry, Slice):
        parts = ["" if p is None else str(p) for p in (entry.start, entry.stop, entry.step)]
        return ":".join(parts) if entry.step is not None else ":".join(parts[:2])
    if isinstance(entry, list):
        return literal_text(entry)
    return str(entry)


def text(e: Any) -> str:
    """An expression in the service's language."""
    if isinstance(e, Name):
        return e.name
    if isinstance(e, Lit):
        return literal_text(e.value)
    if isinstance(e, Seq):
        return "[" + ", ".join(text(x) for x in e.items) + "]"
    if isinstance(e, Index):
        entries = ", ".join(entry_text(x) for x in e.entries) if e.entries else "()"
        return f"{text(e.x)}[{entries}]"
    assert isinstance(e, Call)
    if e.style == "infix":
        return f"({text(e.args[0])} {INFIX[e.op]} {text(e.args[1])})"
    if e.style == "unary":
        return f"(-{text(e.args[0])})" if e.op == "negative" else f"(not {text(e.args[0])})"
    args = [text(a) for a in e.args]
    args += [f"{k}={text(v) if is_expr(v) else static_text(v)}" for k, v in e.kwargs]
    return f"{e.op}({', '.join(args)})"


def source(program: Program) -> str:
    """The program as text: a bare expression when it is one, else statements."""
    if program.is_expression:
        return ", ".join(text(v) for v in program.outputs)
    return "\n".join(_lines(program.body, 0))


def _lines(body: tuple[Any, ...], depth: int) -> list[str]:
    pad = "    " * depth
    out: list[str] = []
    for s in body:
        if isinstance(s, Assign):
            value = (
                ", ".join(text(v) for v in s.value) if isinstance(s.value, tuple) else text(s.value)
            )
            out.append(f"{pad}{', '.join(s.targets)} = {value}")
        elif isinstance(s, AugAssign):
            out.append(f"{pad}{s.target} {s.op}= {text(s.value)}")
        elif isinstance(s, If):
            out += _if_lines(s, pad, depth, "if")
        elif isinstance(s, While):
            out.append(f"{pad}while {text(s.cond)}:")
            out += _lines(s.body, depth + 1)
        elif isinstance(s, For):
            out.append(f"{pad}for {s.var} in range({s.stop}):")
            out += _lines(s.body, depth + 1)
        elif isinstance(s, Return):
            out.append(f"{pad}return {', '.join(text(v) for v in s.values)}")
    return out


def _if_lines(s: If, pad: str, depth: int, word: str) -> list[str]:
    out = [f"{pad}{word} {text(s.cond)}:", *_lines(s.body, depth + 1)]
    if len(s.orelse) == 1 and isinstance(s.orelse[0], If):
        out += _if_lines(s.orelse[0], pad, depth, "elif")
    elif s.orelse:
        out += [f"{pad}else:", *_lines(s.orelse, depth + 1)]
    return out


# --------------------------------------------------------------------------- JSON graph


def graph(program: Program) -> dict[str, Any]:
    """The JSON graph form of a straight-line program (shared subexpressions: one node)."""
    assert program.straight
    nodes: list[dict[str, Any]] = []
    keep: list[Any] = []
    ids: dict[int, str] = {}  # by object: the generator shares subexpression objects
    env: dict[str, Any] = {}

    def ref(e: Any) -> Any:
        if isinstance(e, Name):
            return env.get(e.name, e.name)
        if isinstance(e, Lit):
            return e.value
        if id(e) in ids:
            return ids[id(e)]
        node = _node(e, ref)
        node_id = f"n{len(nodes)}"
        nodes.append({"id": node_id, **node})
        ids[id(e)] = node_id
        keep.append(e)  # alive while ids holds its id
        return node_id

    for s in program.body:
        if isinstance(s, Assign):
            values = s.value if isinstance(s.value, tuple) else (s.value,)
            refs = [ref(v) for v in values]
            if len(s.targets) == len(refs):
                env.update(zip(s.targets, refs, strict=True))
            else:  # s, l = slogdet(m): one getitem node per target
                for i, t in enumerate(s.targets):
                    env[t] = ref(Index(values[0], (i,)))
    outputs = []
    for v in program.outputs:
        r = ref(v)
        if not isinstance(r, str):  # a literal output: give it a node
            r = ref(Call("add", (v, Lit(0.0))))
        outputs.append(r)
    return {"nodes": nodes, "outputs": outputs}


def _node(e: Any, ref: Any) -> dict[str, Any]:
    """One graph node (without its id) for a Call, Index or Seq; ``ref`` names its inputs."""
    if isinstance(e, Index):
        node = {"op": "getitem", "inputs": [ref(e.x)], "attrs": {"index": _entries(e)}}
    elif isinstance(e, Seq):
        node = {"op": "stack", "inputs": [ref(x) for x in e.items]}
    elif e.op == "einsum":
        node = {
            "op": "einsum",
            "inputs": [ref(a) for a in e.args[1:]],
            "attrs": {"subscripts": e.args[0].value},
        }
    else:
        if any(is_expr(v) for _, v in e.kwargs):
            raise NotGraphable(f"{e.op} with a traced keyword argument")
        args = e.args[0].items if e.op in SEQUENCE_OPS else e.args
        inputs = [ref(a) for a in args]
        node = {"op": e.op, "inputs": inputs, "attrs": {k: _attr(v) for k, v in e.kwargs}}
    return node


class NotGraphable(Exception):
    """The graph form cannot say this (a traced value given to a static parameter)."""


def _attr(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_attr(x) for x in v]
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _entries(e: Index) -> list[Any]:
    out: list[Any] = []
    for entry in e.entries:
        if isinstance(entry, Slice):
            out.append({"slice": [entry.start, entry.stop, entry.step]})
        elif entry is Ellipsis:
            out.append("...")
        else:
            out.append(entry)
    return out


# --------------------------------------------------------------------------- interpreter


class Backend(Protocol):
    def call(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any: ...
    def literal(self, value: Any) -> Any: ...
    def index(self, x: Any, entries: tuple[Any, ...]) -> Any: ...
    def stack(self, items: list[Any]) -> Any: ...
    def decide(self, cond: Any) -> bool: ...


class LoopLimit(Exception):
    """A generated while loop ran past its bound (the generator rejects the program)."""


MAX_WHILE = 8


def run(program: Program, backend: Backend, inputs: dict[str, Any]) -> tuple[Any, ...]:
    """The program's outputs (always a tuple) on ``backend``."""
    env = dict(inputs)
    out = _block(program.body, env, backend)
    assert out is not None, "the program did not return"
    return out


def _block(body: tuple[Any, ...], env: dict[str, Any], b: Backend) -> tuple[Any, ...] | None:
    for s in body:
        if isinstance(s, Assign):
            if isinstance(s.value, tuple):
                values = [evaluate(v, env, b) for v in s.value]
            else:
                one = evaluate(s.value, env, b)
                values = [one] if len(s.targets) == 1 else list(one)
            env.update(zip(s.targets, values, strict=True))
        elif isinstance(s, AugAssign):
            env[s.target] = b.call(AUG_OPS[s.op], [env[s.target], evaluate(s.value, env, b)], {})
        elif isinstance(s, If):
            branch = s.body if b.decide(evaluate(s.cond, env, b)) else s.orelse
            out = _block(branch, env, b)
            if out is not None:
                return out
        elif isinstance(s, While):
            turns = 0
            while b.decide(evaluate(s.cond, env, b)):
                turns += 1
                if turns > MAX_WHILE:
                    raise LoopLimit
                _block(s.body, env, b)
        elif isinstance(s, For):
            for i in range(s.stop):
                env[s.var] = i
                _block(s.body, env, b)
        elif isinstance(s, Return):
            return tuple(evaluate(v, env, b) for v in s.values)
    return None


def evaluate(e: Any, env: dict[str, Any], b: Backend) -> Any:
    if isinstance(e, Name):
        return env[e.name]
    if isinstance(e, Lit):
        return b.literal(e.value)
    if isinstance(e, Index):
        return b.index(evaluate(e.x, env, b), e.entries)
    if isinstance(e, Seq):
        return b.stack([evaluate(x, env, b) for x in e.items])
    assert isinstance(e, Call)
    if e.op == "einsum":
        args = [e.args[0].value] + [evaluate(a, env, b) for a in e.args[1:]]
    elif e.op in SEQUENCE_OPS:
        args = [[evaluate(x, env, b) for x in e.args[0].items]]
    else:
        args = [evaluate(a, env, b) for a in e.args]
    kwargs = {k: evaluate(v, env, b) if is_expr(v) else v for k, v in e.kwargs}
    return b.call(e.op, args, kwargs)
