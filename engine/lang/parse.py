"""Text to IR: a checked Python AST (see check.py) turned into the language's IR.

Recursion here is safe: ``check.validate`` has already bounded the depth.
Context decides what a construct may be: ``None`` and strings only as static
arguments, slices and ``...`` only in an index.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from engine.errors import LanguageError, SizeLimitError
from engine.lang import bind, check
from engine.lang.check import node_loc, rejected
from engine.lang.ir import (
    Arg,
    Assign,
    BoolOp,
    Call,
    Const,
    Ellip,
    For,
    If,
    Index,
    KwArg,
    Name,
    Not,
    Num,
    Return,
    Seq,
    Slice,
    Str,
    While,
    census,
)
from engine.lang.limits import Limits
from engine.lang.program import Program
from engine.locations import Loc, loc_dict, loc_text
from engine.registry import ARRAY, STATIC

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf}
BINOPS = {
    ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide",
    ast.FloorDiv: "floor_divide", ast.Mod: "remainder", ast.Pow: "power", ast.MatMult: "matmul",
}  # fmt: skip
COMPARES = {
    ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal",
    ast.Gt: "greater", ast.GtE: "greater_equal",
}  # fmt: skip
VALUE, STATIC_CTX, STRING_CTX = 0, 1, 2  # what an expression may be (strings: STRING_OPS)
# the ops whose static arguments may be string literals: einsum's subscripts and norm's ord
# ('fro', 'nuc'), and the options of the building ops (pad's mode, meshgrid's indexing,
# array's dtype, ravel's order); the op itself refuses any other string with a clear error
STRING_OPS = frozenset({"einsum", "norm", "pad", "meshgrid", "array", "asarray", "ravel"})
STRING_HINT = (
    "a string is allowed only as einsum's subscripts or norm's ord ('fro', 'nuc'), or as an "
    "option of pad (mode), meshgrid (indexing), array/asarray (dtype) or ravel (order)"
)
_INT_LIMIT = 2**63


def compile_source(text: str, limits: Limits | None = None) -> Program:
    """Parse and check source text into a Program; raises a LanguageError subclass if refused."""
    limits = limits or Limits()
    if not isinstance(text, str):
        raise LanguageError("the expression must be a string")
    check.prescan(text, limits)
    tree = check.parse(text)
    check.validate(tree, limits)
    builder = _Builder(limits)
    program = builder.module(tree)
    if builder.shares_nodes:
        _check_evaluations(program, limits)
    return program


def _check_evaluations(program: Program, limits: Limits) -> None:
    """Refuse a program whose run would evaluate more op nodes than ``max_program_nodes``.

    A chained comparison ``a < b < c`` reads ``b`` twice, so nesting chains inside the
    middle operand doubles the work per level (19 levels in 276 bytes: 2^19 evaluations)
    while the text, the syntax tree and the IR stay small. ``ir.census`` counts the
    evaluations in time linear in the IR.
    """
    cap = limits.max_program_nodes
    evaluated = census(program.body, cap).evaluated
    if evaluated > cap:
        msg = (
            f"the program would evaluate more than {cap} operations per run (chained "
            "comparisons evaluate their middle operands once per comparison: nested chains "
            "double the work at every level); assign the shared operand to a name first"
        )
        raise SizeLimitError(msg)


class _Builder:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        # inputs: names read before any assignment to them in the text (first read's loc).
        # A name assigned earlier on another path is local, as in Python: reading it
        # unassigned is a runtime error naming it, not a demand for an input.
        self.reads: dict[str, Loc] = {}
        self.defined: set[str] = set()
        self.num_ops = 0
        self.has_loops = False
        self.has_return = False
        self.shares_nodes = False  # a chained comparison reads its middle operands twice

    # --- statements -----------------------------------------------------------------

    def module(self, tree: ast.Module) -> Program:
        body = tree.body
        if not body:
            raise LanguageError("the function is empty (only comments): give an expression")
        if len(body) == 1 and isinstance(body[0], ast.Expr):
            node = body[0]
            out = self.return_values(node.value, node_loc(node))
            return self.program((out,), "expression")
        stmts = self.block(body)
        if not self.has_return:
            last = node_loc(body[-1])
            msg = f"the program never returns a value: end it with `return ...` (line {last[0]})"
            raise LanguageError(msg, loc=loc_dict(last))
        return self.program(stmts, "program")

    def program(self, body: tuple[Any, ...], kind: str) -> Program:
        free = list(self.reads)
        return Program(
            body=body,
            free_names=tuple(free),
            free_locs=tuple(self.reads[n] for n in free),
            has_loops=self.has_loops,
            num_ops=self.num_ops,
            kind=kind,
            limits=self.limits,
        )

    def block(self, stmts: list[ast.stmt]) -> tuple[Any, ...]:
        out = []
        for s in stmts:
            ir = self.stmt(s)
            if ir is not None:
                out.append(ir)
        return tuple(out)

    def stmt(self, node: ast.stmt) -> Any:
        loc = node_loc(node)
        if isinstance(node, ast.Assign):
            value = self.expr(node.value, VALUE)
            return Assign(tuple(self.target(t) for t in node.targets), value, loc)
        if isinstance(node, ast.AugAssign):
            if not isinstance(node.target, ast.Name):
                raise rejected("augmented assignment to anything but a name", loc)
            old = self.expr(node.target, VALUE)
            value = self.op_call(BINOPS[type(node.op)], [old, self.expr(node.value, VALUE)], loc)
            return Assign((self.target(node.target),), value, loc)
        if isinstance(node, ast.If):
            return self.if_else(node, loc)
        if isinstance(node, ast.While):
            self.no_else(node, "while", loc)
            self.has_loops = True
            test = self.expr(node.test, VALUE)
            return While(test, self.block(node.body), loc)
        if isinstance(node, ast.For):
            return self.for_loop(node, loc)
        if isinstance(node, ast.Return):
            if node.value is None:
                raise LanguageError(f"return at {loc_text(loc)} needs a value", loc=loc_dict(loc))
            self.has_return = True
            return self.return_values(node.value, loc)
        if isinstance(node, ast.Pass):
            return None
        if isinstance(node, ast.Expr):
            msg = (
                f"the expression at {loc_text(loc)} stands alone and does nothing: "
                "assign it (y = ...) or return it"
            )
            raise LanguageError(msg, loc=loc_dict(loc))
        raise rejected(type(node).__name__, loc)  # unreachable after check.validate

    def if_else(self, node: ast.If, loc: Loc) -> If:
        test = self.expr(node.test, VALUE)
        return If(test, self.block(node.body), self.block(node.orelse), loc)

    def no_else(self, node: ast.While | ast.For, what: str, loc: Loc) -> None:
        if node.orelse:
            raise rejected(f"{what} ... else", node_loc(node.orelse[0], loc))

    def for_loop(self, node: ast.For, loc: Loc) -> For:
        self.no_else(node, "for", loc)
        if not isinstance(node.target, ast.Name):
            raise rejected("a for loop over anything but one name", node_loc(node.target, loc))
        it = node.iter
        if not (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and not it.keywords
            and 1 <= len(it.args) <= 3
        ):
            raise rejected("a for loop not of the form `for NAME in range(...)`", node_loc(it, loc))
        self.has_loops = True
        args = tuple(self.expr(a, STATIC_CTX) for a in it.args)
        var = self.target(node.target)
        return For(var, args, self.block(node.body), loc)

    def target(self, node: ast.expr) -> Any:
        loc = node_loc(node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                msg = f"cannot assign to the constant {node.id} at {loc_text(loc)}"
                raise LanguageError(msg, loc=loc_dict(loc))
            self.defined.add(node.id)
            return node.id
        if isinstance(node, ast.Tuple | ast.List):
            return tuple(self.target(t) for t in node.elts)
        if isinstance(node, ast.Subscript):
            hint = "build arrays with where/concatenate"
            raise rejected("item assignment x[...] = ...", loc, hint)
        raise rejected(f"assignment to {type(node).__name__}", loc)

    def return_values(self, node: ast.expr, loc: Loc) -> Return:
        if isinstance(node, ast.Tuple):
            return Return(tuple(self.expr(v, VALUE) for v in node.elts), True, loc)
        return Return((self.expr(node, VALUE),), False, loc)

    # --- expressions ----------------------------------------------------------------

    def expr(self, node: ast.expr, ctx: int) -> Any:
        loc = node_loc(node)
        if isinstance(node, ast.Constant):
            return self.constant(node.value, ctx, loc)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return Const(node.id, CONSTANTS[node.id], loc)
            if node.id not in self.defined:
                self.reads.setdefault(node.id, loc)
            return Name(node.id, loc)
        if isinstance(node, ast.BinOp):
            args = [self.expr(node.left, VALUE), self.expr(node.right, VALUE)]
            return self.op_call(BINOPS[type(node.op)], args, loc)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, loc)
        if isinstance(node, ast.BoolOp):
            kind = "and" if isinstance(node.op, ast.And) else "or"
            return BoolOp(kind, tuple(self.expr(v, VALUE) for v in node.values), loc)
        if isinstance(node, ast.Compare):
            return self.compare(node, loc)
        if isinstance(node, ast.Call):
            return self.call(node, loc)
        if isinstance(node, ast.Subscript):
            return Index(self.expr(node.value, VALUE), self.index_items(node.slice), loc)
        if isinstance(node, ast.List | ast.Tuple):
            inner = STATIC_CTX if ctx == STRING_CTX else ctx
            return Seq(tuple(self.expr(e, inner) for e in node.elts), loc)
        if isinstance(node, ast.Slice):
            raise rejected("a slice outside of x[...]", loc)
        raise rejected(type(node).__name__, loc)

    def constant(self, value: Any, ctx: int, loc: Loc) -> Any:
        if isinstance(value, bool):
            return Const(str(value), value, loc)
        if isinstance(value, int):
            exact = value if -_INT_LIMIT < value < _INT_LIMIT else None
            return Num(_to_float(value), exact, loc)
        if isinstance(value, float):
            return Num(value, None, loc)
        if value is None and ctx != VALUE:
            return Const("None", None, loc)
        if value is None:
            raise rejected("None here", loc, "None is allowed as a keyword value such as axis=None")
        if isinstance(value, str) and ctx == STRING_CTX:
            return Str(value, loc)
        if isinstance(value, str):
            raise rejected("a string", loc, STRING_HINT)
        if value is Ellipsis:
            raise rejected("... outside of x[...]", loc)
        raise rejected(f"the literal {value!r}", loc)

    def unary(self, node: ast.UnaryOp, loc: Loc) -> Any:
        if isinstance(node.op, ast.Not):
            return Not(self.expr(node.operand, VALUE), loc)
        operand = self.expr(node.operand, VALUE)
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(operand, Num):  # -1 is a literal, so x[-1] and axis=-1 stay integers
            exact = None if operand.int_value is None else -operand.int_value
            return Num(-operand.value, exact, loc)
        return self.op_call("negative", [operand], loc)

    def compare(self, node: ast.Compare, loc: Loc) -> Any:
        operands = [self.expr(node.left, VALUE)] + [self.expr(c, VALUE) for c in node.comparators]
        tests = [
            self.op_call(COMPARES[type(op)], [operands[i], operands[i + 1]], loc)
            for i, op in enumerate(node.ops)
        ]
        if len(tests) == 1:
            return tests[0]
        self.shares_nodes = True
        return BoolOp("and", tuple(tests), loc)

    def op_call(self, name: str, args: list[Any], loc: Loc) -> Call:
        bind.lookup_op(name, loc)
        self.num_ops += 1
        return Call(name, tuple(Arg(ARRAY, a) for a in args), (), loc)

    def call(self, node: ast.Call, loc: Loc) -> Call:
        if not isinstance(node.func, ast.Name):
            raise rejected("a call of something that is not an op name", loc)
        op = bind.lookup_op(node.func.id, loc)
        filled, extra = bind.fill_positional(op, list(node.args), loc)
        for kw in node.keywords:
            bind.add_keyword(op, filled, kw.arg or "", kw.value, loc)
        args, kwargs = bind.canonical(op, filled, extra, loc)
        ctx = STRING_CTX if op.name in STRING_OPS else STATIC_CTX
        self.num_ops += 1
        return Call(
            op.name,
            tuple(Arg(k, self.expr(a, ctx if k == STATIC else VALUE)) for k, a in args),
            tuple(KwArg(n, k, self.expr(a, ctx if k == STATIC else VALUE)) for n, k, a in kwargs),
            loc,
        )

    def index_items(self, node: ast.expr) -> tuple[Any, ...]:
        elts = node.elts if isinstance(node, ast.Tuple) else [node]
        return tuple(self.index_item(e) for e in elts)

    def index_item(self, node: ast.expr) -> Any:
        loc = node_loc(node)
        if isinstance(node, ast.Slice):
            parts = (node.lower, node.upper, node.step)
            lo, hi, step = (None if p is None else self.expr(p, STATIC_CTX) for p in parts)
            return Slice(lo, hi, step, loc)
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return Ellip(loc)
        return self.expr(node, STATIC_CTX)


def _to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
