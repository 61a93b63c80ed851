"""Binding a call's arguments against an op's parameters, shared by text and graphs.

Both front ends hand over a map ``param name -> argument`` plus extra
positional operands (einsum's); ``canonical`` checks it against the op and
orders it one way (a leading run of parameters positionally, the rest by
keyword), so equal calls compile to equal IR whichever form they came in.
"""

from __future__ import annotations

import difflib
from typing import Any

from engine import registry
from engine.errors import LanguageError, UnknownOpError
from engine.lang import forms
from engine.locations import Loc, loc_dict, loc_text
from engine.registry import ARRAY, VARARGS, Op

# Python builtins people try; they get a pointed message rather than a bare "unknown op".
NOT_OPS = {
    "open", "exec", "eval", "compile", "print", "input", "getattr", "setattr", "globals",
    "locals", "vars", "dir", "type", "object", "breakpoint", "help", "len", "int", "float",
    "list", "tuple", "dict", "set", "str", "map", "filter", "zip", "enumerate", "iter", "next",
    "isinstance", "super", "format", "repr", "chr", "ord", "hash", "id", "delattr", "memoryview",
    "bytes", "bytearray", "classmethod", "staticmethod", "property", "callable", "exit", "quit",
}  # fmt: skip


def lookup_op(name: str, loc: Loc) -> Op:
    """The registry op called ``name``, or an UnknownOpError saying what can be called."""
    if name.startswith("_"):  # _names are internal
        op = None
    else:
        op = registry.OPS.get(name) or registry.OPS.get(forms.NAME_ALIASES.get(name, ""))
    if op is not None:
        return op
    where = loc_text(loc)
    if name == "range":
        msg = f"range(...) at {where} is allowed only as the iterable of `for NAME in range(...)`"
        raise LanguageError(msg, loc=loc_dict(loc))
    if name == "getitem":
        raise LanguageError(f"call getitem by indexing, x[...], at {where}", loc=loc_dict(loc))
    if name in NOT_OPS:
        msg = (
            f"{name!r} at {where} is not an op: calls go only to the engine's ops "
            "(GET /ops lists them)"
        )
        raise UnknownOpError(msg, op=name, loc=loc_dict(loc))
    public = [n for n in registry.OPS if not n.startswith("_")]
    close = difflib.get_close_matches(name, public, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (GET /ops lists the ops)"
    raise UnknownOpError(f"unknown op {name!r} at {where}{hint}", op=name, loc=loc_dict(loc))


def _fail(op: Op, text: str, loc: Loc) -> LanguageError:
    msg = f"{op.name}() at {loc_text(loc)}: {text}; signature: {op.signature}"
    return LanguageError(msg, op=op.name, loc=loc_dict(loc))


def fill_positional(op: Op, pos: list[Any], loc: Loc) -> tuple[dict[str, Any], list[Any]]:
    """Positional arguments as ``(filled params, extra operands for *varargs)``."""
    filled: dict[str, Any] = {}
    extra: list[Any] = []
    names = [p for p in op.params if p.kind != VARARGS]
    var_at = next((i for i, p in enumerate(op.params) if p.kind == VARARGS), None)
    for i, arg in enumerate(pos):
        if var_at is not None and i >= var_at:
            extra.append(arg)
        elif i < len(names):
            filled[names[i].name] = arg
        else:
            raise _fail(op, f"takes {len(names)} positional arguments but got {len(pos)}", loc)
    return filled, extra


def add_keyword(op: Op, filled: dict[str, Any], name: str, arg: Any, loc: Loc) -> None:
    """Bind ``name=arg``; an unknown or repeated keyword is an error naming the signature."""
    if not any(p.name == name and p.kind != VARARGS for p in op.params):
        raise _fail(op, f"unexpected keyword {name!r}", loc)
    if name in filled:
        raise _fail(op, f"got two values for {name!r}", loc)
    filled[name] = arg


def canonical(
    op: Op, filled: dict[str, Any], extra: list[Any], loc: Loc
) -> tuple[list[tuple[str, Any]], list[tuple[str, str, Any]]]:
    """Check ``filled`` against ``op`` and order it: ``([(kind, arg)], [(name, kind, arg)])``."""
    needed = [p.name for p in op.params if p.required and p.kind != VARARGS]
    missing = [name for name in needed if name not in filled]
    if missing:
        raise _fail(op, f"missing argument {', '.join(repr(m) for m in missing)}", loc)
    args: list[tuple[str, Any]] = []
    kwargs: list[tuple[str, str, Any]] = []
    positional = True
    for p in op.params:
        if p.kind == VARARGS:
            if extra and not positional:
                raise _fail(op, "operands given after a parameter that was left out", loc)
            args.extend((ARRAY, a) for a in extra)
        elif p.name in filled and positional:
            args.append((p.kind, filled[p.name]))
        elif p.name in filled:
            kwargs.append((p.name, p.kind, filled[p.name]))
        else:
            positional = False
    return args, kwargs
