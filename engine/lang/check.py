"""Safety checks on source text: before ``ast.parse`` (size, characters, bracket nesting)
and after it (an allow-list of node types, nesting depth, node count), all iterative.

Python's parser raises RecursionError/MemoryError on deeply nested input, so the
cheap lexical pre-scan refuses the obvious cases first and the parse itself is
guarded; the AST walk uses an explicit stack, never recursion.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from typing import Any

from engine.errors import LanguageError, SizeLimitError
from engine.lang.limits import Limits
from engine.locations import Loc, loc_dict, loc_text

ALLOWED_TEXT = (
    "the language has numbers, names, the operators + - * / // % ** @, comparisons, "
    "and/or/not, a if c else b, indexing x[...], calls to ops (also as np.op or x.op(...)), "
    "the array attributes .T .shape .ndim .size .dtype, list and tuple literals, and the "
    "statements =, +=, -=, *=, /=, if/elif/else, while, for NAME in range(...) and return"
)

_ALLOWED = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.If, ast.While, ast.For, ast.Return,
    ast.Pass, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name,
    ast.Constant, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.keyword, ast.Load,
    ast.Store, ast.operator, ast.cmpop, ast.boolop, ast.unaryop, ast.IfExp, ast.Attribute,
)  # fmt: skip
# attributes are checked here for the name only (never one starting with _); which ones
# mean something (array attributes, methods, module prefixes) parse.py decides, from
# the allow-lists in forms.py
ATTRIBUTE_HINT = "arrays have .T .shape .ndim .size .dtype and methods such as x.sum(axis=0)"

_COMPREHENSION = ("a comprehension", "use a for loop over range(...)")
_FORBIDDEN: dict[type, tuple[str, str]] = {
    ast.Import: ("an import", ""),
    ast.ImportFrom: ("an import", ""),
    ast.Lambda: ("a lambda", ""),
    ast.ListComp: _COMPREHENSION,
    ast.SetComp: _COMPREHENSION,
    ast.DictComp: _COMPREHENSION,
    ast.GeneratorExp: _COMPREHENSION,
    ast.JoinedStr: ("an f-string", ""),
    ast.FormattedValue: ("an f-string", ""),
    ast.Starred: ("a starred expression (*x)", ""),
    ast.NamedExpr: ("the walrus operator (:=)", "assign on a line of its own"),
    ast.FunctionDef: ("def", ""),
    ast.AsyncFunctionDef: ("async def", ""),
    ast.ClassDef: ("class", ""),
    ast.Global: ("global", ""),
    ast.Nonlocal: ("nonlocal", ""),
    ast.With: ("with", ""),
    ast.AsyncWith: ("async with", ""),
    ast.Try: ("try", ""),
    ast.TryStar: ("try", ""),
    ast.Raise: ("raise", ""),
    ast.Assert: ("assert", ""),
    ast.Delete: ("del", ""),
    ast.Yield: ("yield", ""),
    ast.YieldFrom: ("yield from", ""),
    ast.Await: ("await", ""),
    ast.AsyncFor: ("async for", ""),
    ast.Dict: ("a dict literal", ""),
    ast.Set: ("a set literal", ""),
    ast.Match: ("match", "use if/elif/else"),
    ast.AnnAssign: ("an annotated assignment", "write name = value"),
    ast.Break: ("break", "put the stopping test in the while condition"),
    ast.Continue: ("continue", "use if/else inside the loop"),
}
_BAD_OPERATORS: dict[type, str] = {
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
    ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip
_OPENERS, _CLOSERS = "([{", ")]}"
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def node_loc(node: Any, default: Loc = (1, 1)) -> Loc:
    """The 1-based (line, column) of an AST node (source is ASCII, so offsets are characters)."""
    line = getattr(node, "lineno", None)
    if line is None:
        return default
    return (line, getattr(node, "col_offset", 0) + 1)


def rejected(what: str, loc: Loc, hint: str = "") -> LanguageError:
    """The error for a construct outside the language: what, where, and what is allowed."""
    extra = f" ({hint})" if hint else ""
    msg = f"{what} at {loc_text(loc)} is not allowed{extra}; {ALLOWED_TEXT}"
    return LanguageError(msg, loc=loc_dict(loc))


def _position(text: str, index: int) -> tuple[int, int]:
    head = python_lines(text[:index])  # lines as Python counts them (a lone \r ends one)
    line = head.count("\n") + 1
    return (line, len(head) - (head.rfind("\n") + 1) + 1)


def prescan(text: str, limits: Limits) -> None:
    """Refuse text that is too long, not ASCII, holds control bytes, or nests brackets too deep."""
    if len(text) > limits.max_source_chars:
        msg = f"the source has {len(text)} characters, over the limit of {limits.max_source_chars}"
        raise SizeLimitError(msg)
    if not text.strip():
        raise LanguageError("the function is empty: give an expression or a program")
    bad = _CONTROL.search(text)
    if bad:
        loc = _position(text, bad.start())
        msg = f"control character {bad.group()!r} at {loc_text(loc)}; the source must be plain text"
        raise LanguageError(msg, loc=loc_dict(loc))
    if _NON_ASCII.search(text):
        _check_ascii(text)
    if sum(text.count(c) for c in _OPENERS) > limits.max_depth:
        _check_brackets(text, limits.max_depth)


def python_lines(text: str) -> str:
    """``text`` with the line endings Python's parser knows as ``\n``.

    Python ends a line at ``\n``, ``\r\n`` or a lone ``\r`` (the language reference,
    "Physical lines"), and only there: form feed is whitespace, and ``\v``, ``\x1c``-
    ``\x1e``, ``\x85``, ``\u2028``, ``\u2029`` (line breaks to ``str.splitlines``) are not
    line ends to its tokenizer; inside a comment they are comment text. The controls
    among them are refused anyway (``_CONTROL``).
    """
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_ascii(text: str) -> None:
    """Non-ASCII is allowed in comments only: Python's parser NFKC-folds identifiers, so a
    look-alike (fullwidth ``ｘ``) would silently become ``x``.

    The comments are found by Python's own tokenizer (strings, escapes and line ends as
    the parser reads them); source it cannot tokenize may hold no non-ASCII at all.
    """
    source = python_lines(text)
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT and not token.string.isascii():
                _refuse_non_ascii(token.string, (token.start[0], token.start[1] + 1))
    except (tokenize.TokenError, SyntaxError):
        bad = _NON_ASCII.search(source)
        if bad is not None:
            _refuse_non_ascii(bad.group(), _position(source, bad.start()))


def _refuse_non_ascii(token: str, start: tuple[int, int]) -> None:
    """Raise for the first non-ASCII character of ``token``, which starts at the 1-based
    (line, column) ``start``."""
    index = next(i for i, ch in enumerate(token) if ord(ch) > 127)
    before = token[:index]
    line, column = start
    if "\n" in before:  # a string token over several lines
        loc = (line + before.count("\n"), len(before) - before.rfind("\n"))
    else:
        loc = (line, column + index)
    ch = token[index]
    msg = (
        f"non-ASCII character {ch!r} (U+{ord(ch):04X}) at {loc_text(loc)}: names, "
        "numbers and operators must be plain ASCII"
    )
    raise LanguageError(msg, loc=loc_dict(loc))


def _check_brackets(text: str, max_depth: int) -> None:
    depth = 0
    for index, ch in enumerate(text):
        if ch in _OPENERS:
            depth += 1
            if depth > max_depth:
                loc = _position(text, index)
                msg = f"brackets nested deeper than {max_depth} levels at {loc_text(loc)}"
                raise LanguageError(msg, loc=loc_dict(loc))
        elif ch in _CLOSERS:
            depth = max(depth - 1, 0)


def parse(text: str) -> ast.Module:
    """``ast.parse`` with every failure turned into a LanguageError (it never evaluates)."""
    try:
        with warnings.catch_warnings():  # user text must not print SyntaxWarnings in our logs
            warnings.simplefilter("ignore")
            return ast.parse(text, mode="exec")
    except SyntaxError as exc:
        loc = (exc.lineno or 1, exc.offset or 1)
        msg = f"syntax error at {loc_text(loc)}: {exc.msg}"
        raise LanguageError(msg, loc=loc_dict(loc)) from None
    except (RecursionError, MemoryError):
        pass  # raised below, outside this handler: the parser's stack ran out, not memory
    except ValueError as exc:  # e.g. an integer literal with too many digits
        raise LanguageError(f"the source cannot be parsed: {exc}") from None
    # No exception context: a worker retires itself after an error raised while handling
    # a MemoryError (app/worker.py), and a deep source is the user's error, not a full heap.
    msg = "the source is nested too deeply to parse (long chains of operators or brackets)"
    raise LanguageError(msg)


def validate(tree: ast.Module, limits: Limits) -> None:
    """Walk the tree with an explicit stack: allowed node types only, bounded depth and size."""
    # each entry: node, depth, and the nearest node with a position (operators have none)
    stack: list[tuple[ast.AST, int, ast.AST]] = [(tree, 0, tree)]
    count = 0
    while stack:
        node, depth, anchor = stack.pop()
        count += 1
        if count > limits.max_program_nodes:
            msg = f"the program has more than {limits.max_program_nodes} syntax nodes"
            raise SizeLimitError(msg)
        if depth > limits.max_depth:
            loc = node_loc(anchor)
            msg = f"expressions nested deeper than {limits.max_depth} levels at {loc_text(loc)}"
            raise LanguageError(msg, loc=loc_dict(loc))
        kind = type(node)
        if kind not in _FAST_OK:
            _check_node(node, node_loc(node, node_loc(anchor)))
        if kind in _LEAVES:
            continue
        anchor = node if hasattr(node, "lineno") else anchor
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1, anchor))


def _check_node(node: ast.AST, loc: Loc) -> None:
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        raise rejected("a decorator (@...)", node_loc(decorators[0], loc))
    if not isinstance(node, _ALLOWED):
        what, hint = _FORBIDDEN.get(type(node), (f"{type(node).__name__}", ""))
        raise rejected(what, loc, hint)
    symbol = _BAD_OPERATORS.get(type(node))
    if symbol is not None:
        raise rejected(f"the operator {symbol}", loc)
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        raise rejected(f"attribute access (.{node.attr})", loc, ATTRIBUTE_HINT)
    if isinstance(node, ast.Name) and (node.id.startswith("_") or not node.id.isascii()):
        raise rejected(f"the name {node.id!r} (names may not start with _)", loc)
    if isinstance(node, ast.keyword) and node.arg is None:
        raise rejected("**keyword unpacking", loc)
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        raise rejected(f"the literal {node.value!r} (only numbers)", loc)


def _concrete(classes: tuple[type, ...]) -> set[type]:
    """The classes and all their subclasses (``type(node)`` is exact, isinstance is not)."""
    out: set[type] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        out.add(cls)
        todo.extend(cls.__subclasses__())
    return out


# Types that need no per-node check (names, constants and keywords are checked one by one).
_FAST_OK = frozenset(
    _concrete(_ALLOWED) - set(_BAD_OPERATORS) - {ast.Name, ast.Constant, ast.keyword, ast.Attribute}
)
_LEAVES = frozenset({ast.Load, ast.Store, ast.Constant, *_concrete((ast.operator, ast.cmpop))})
