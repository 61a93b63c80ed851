"""Text to IR: a checked Python AST (see check.py) turned into the language's IR.

Recursion here is safe: ``check.validate`` has already bounded the depth.
Context decides what a construct may be: ``None`` and strings only as static
arguments, slices and ``...`` only in an index.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from engine import registry
from engine.errors import LanguageError, SizeLimitError
from engine.lang import bind, check, forms
from engine.lang.check import ATTRIBUTE_HINT, node_loc, rejected
from engine.lang.ir import (
    Arg,
    Assign,
    Attr,
    BoolOp,
    Builtin,
    Call,
    Const,
    Ellip,
    For,
    If,
    IfExp,
    Index,
    KwArg,
    Name,
    Not,
    Num,
    Receiver,
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
VALUE, STATIC_CTX, STRING_CTX = 0, 1, 2  # what an expression may be (strings: forms)
STRING_HINT = (
    "a string is allowed only as a static option an op declares as words (einsum's "
    "subscripts, norm's ord='fro', pad's mode='reflect', astype's dtype...)"
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
        if isinstance(node, ast.Attribute):
            return self.attribute(node, ctx, loc)
        if isinstance(node, ast.IfExp):
            test = self.expr(node.test, VALUE)
            return IfExp(test, self.expr(node.body, ctx), self.expr(node.orelse, ctx), loc)
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
        if isinstance(value, complex):  # an imaginary literal, 1j or 2.5j: a complex128 value
            return Num(value, None, loc)  # type: ignore[arg-type]
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

    # --- calls: ops by name, prefixed names, methods, builtins ---------------------------

    def call(self, node: ast.Call, loc: Loc) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            dotted = _dotted(func)
            if dotted is not None and dotted[0] in forms.PREFIX_ROOTS:
                return self.named_call(self.prefixed(dotted, func, loc), node, loc, False)
            return self.method_call(func, node, loc)
        if not isinstance(func, ast.Name):
            raise rejected("a call of something that is not an op name", loc)
        return self.named_call(func.id, node, loc, True)

    def prefixed(self, dotted: list[str], node: ast.Attribute, loc: Loc) -> str:
        """The name after an allowed module prefix (``np.linalg.norm`` -> ``norm``)."""
        found = forms.split_prefix(dotted)
        if found is None:
            prefix = ".".join(dotted[:-1])
            hint = f"{prefix} is not a module prefix the language knows (np., scipy.special., ...)"
            raise rejected(f"attribute access (.{node.attr})", loc, hint)
        return found[1]

    def named_call(self, name: str, node: ast.Call, loc: Loc, bare: bool) -> Any:
        """A call of ``name``; ``bare``: written without a prefix, so Python's builtins
        ``len``, ``min`` and ``max`` of several values apply (``np.max`` is always NumPy's)."""
        args, keywords = list(node.args), node.keywords
        if bare and name == "len":
            if len(args) != 1 or keywords:
                raise rejected("len() with other than one argument", loc)
            return Builtin("len", (self.expr(args[0], VALUE),), loc)
        if bare and name in ("min", "max") and len(args) >= 2 and not keywords:
            # decided when it runs (Interpreter.minmax): with a 0-d first argument it is
            # Python's max(a, b, ...) of scalars; otherwise NumPy's max(x, axis)
            self.num_ops += 1
            items = (self.expr(args[0], VALUE), *(self.expr(a, STATIC_CTX) for a in args[1:]))
            return Builtin(name, items, loc)
        if bare and name == "sum" and len(args) == 1 and not keywords and _nonempty_list(args[0]):
            # Python's sum of a list literal: its items added (``sum([x, y])`` is ``x + y``,
            # as in Python); ``np.sum([x, y])`` is NumPy's total
            self.num_ops += 1
            elts = getattr(args[0], "elts", [])
            return Builtin("sum", tuple(self.expr(e, VALUE) for e in elts), loc)
        if name == "where" and len(args) == 1 and not keywords:
            name = "nonzero"  # NumPy: where(condition) is nonzero(condition)
        return self.bound_call(name, args, keywords, loc)

    def method_call(self, func: ast.Attribute, node: ast.Call, loc: Loc) -> Any:
        """``x.name(...)``: the op ``METHODS[name]`` with ``x`` as its first argument."""
        method = func.attr
        receiver = self.receiver(func.value, method, loc)
        args, keywords = list(node.args), list(node.keywords)
        if method in forms.FLAT_METHODS or method in forms.ITEM_METHODS:
            if args or keywords:
                raise rejected(f".{method}() with arguments", loc)
            ones: list[ast.expr] = [ast.Constant(-1)] if method in forms.FLAT_METHODS else []
            shape = ast.Tuple(elts=ones, ctx=ast.Load())
            return self.bound_call("reshape", [_Built(receiver), shape], [], loc)
        if method not in forms.METHODS:
            raise rejected(f"the method .{method}()", loc, ATTRIBUTE_HINT)
        if method in forms.VARARG_METHODS and len(args) > 1:  # x.reshape(3, 2)
            args = [ast.Tuple(elts=args, ctx=ast.Load())]
        return self.bound_call(forms.METHODS[method], [_Built(receiver), *args], keywords, loc)

    def receiver(self, node: ast.expr, what: str, loc: Loc) -> Receiver:
        if isinstance(node, ast.Constant | ast.List | ast.Tuple):
            raise rejected(f"the attribute .{what} of a literal", loc, ATTRIBUTE_HINT)
        return Receiver(self.expr(node, VALUE), what, loc)

    def bound_call(self, name: str, pos: list[Any], keywords: list[ast.keyword], loc: Loc) -> Call:
        """A call of op ``name`` bound against its signature; ``pos`` items are AST nodes
        or ``_Built`` IR (a method's receiver)."""
        op = bind.lookup_op(name, loc)
        filled, extra = bind.fill_positional(op, pos, loc)
        renames = forms.KEYWORD_ALIASES.get(op.name, {})  # clip(x, min=0): NumPy 2's names
        for kw in keywords:
            bind.add_keyword(op, filled, renames.get(kw.arg or "", kw.arg or ""), kw.value, loc)
        args, kwargs = bind.canonical(op, filled, extra, loc)
        names = {id(a): n for n, a in filled.items()}
        self.num_ops += 1
        return Call(
            op.name,
            tuple(Arg(k, self.argument(op, names.get(id(a)), k, a)) for k, a in args),
            tuple(KwArg(n, k, self.argument(op, n, k, a)) for n, k, a in kwargs),
            loc,
        )

    def argument(self, op: registry.Op, param: str | None, kind: str, node: Any) -> Any:
        if isinstance(node, _Built):
            return node.ir
        if kind != STATIC:
            return self.expr(node, VALUE)
        if param == "dtype" and isinstance(node, ast.Name) and node.id in forms.DTYPE_NAMES:
            return Str(forms.DTYPE_NAMES[node.id], node_loc(node))  # astype(float32)
        return self.expr(node, STRING_CTX if forms.string_param(op, param) else STATIC_CTX)

    # --- attributes ------------------------------------------------------------------

    def attribute(self, node: ast.Attribute, ctx: int, loc: Loc) -> Any:
        """``np.pi``-style module constants, and the read-only attributes of arrays."""
        dotted = _dotted(node)
        if dotted is not None and dotted[0] in forms.PREFIX_ROOTS:
            return self.module_constant(self.prefixed(dotted, node, loc), ctx, loc)
        name = node.attr
        if name in forms.SHAPE_ATTRIBUTES:
            return Attr(self.receiver(node.value, name, loc).value, name, loc)
        if name in forms.OP_ATTRIBUTES:
            return self.op_call(
                forms.OP_ATTRIBUTES[name], [self.receiver(node.value, name, loc)], loc
            )
        if name in forms.METHODS or name in forms.FLAT_METHODS or name in forms.ITEM_METHODS:
            raise rejected(f"the method .{name} without a call", loc, f"call it: x.{name}(...)")
        raise rejected(f"attribute access (.{name})", loc, ATTRIBUTE_HINT)

    def module_constant(self, name: str, ctx: int, loc: Loc) -> Any:
        if name not in forms.MODULE_CONSTANTS:
            if name in registry.OPS and not name.startswith("_"):
                msg = f"the op {name} at {loc_text(loc)} is not a value: call it, {name}(...)"
                raise LanguageError(msg, loc=loc_dict(loc))
            bind.lookup_op(name, loc)  # the unknown-op error, with its suggestions
        value = forms.MODULE_CONSTANTS[name]
        if isinstance(value, float):
            return Const(name, value, loc)
        if ctx == VALUE:
            what = "np.newaxis" if value is None else f"the dtype {name}"
            hint = "np.newaxis goes in an index" if value is None else "dtypes go to astype"
            raise rejected(f"{what} here", loc, hint)
        return Const("None", None, loc) if value is None else Str(value, loc)

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


class _Built:
    """An argument already compiled to IR (a method's receiver) among AST arguments."""

    __slots__ = ("ir",)

    def __init__(self, ir: Any) -> None:
        self.ir = ir


def _nonempty_list(node: ast.expr) -> bool:
    return isinstance(node, ast.List | ast.Tuple) and bool(node.elts)


def _dotted(node: ast.expr) -> list[str] | None:
    """``["np", "linalg", "norm"]`` for ``np.linalg.norm``; None unless names and dots only."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
