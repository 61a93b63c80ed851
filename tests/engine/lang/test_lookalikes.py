"""Look-alike names never get past the ASCII check (issue 13, A7).

Python's parser NFKC-folds identifiers (fullwidth ``ｘ`` becomes ``x``), so the check
must see the source as the parser does: every line end Python knows (``\\n``,
``\\r\\n``, a lone ``\\r``), comments and strings by Python's own tokenizer. Characters
that are line breaks to ``str.splitlines`` but not to Python (``\\x85``, ``\\u2028``,
``\\u2029``) end no comment; the control ones (``\\v``, ``\\f``, ``\\x1c``-``\\x1e``) are
refused outright.
"""

from __future__ import annotations

import ast

import pytest

from engine import lang
from engine.errors import LanguageError
from engine.lang.limits import Limits

LOOKALIKES = ["\uff58", "\U0001d431", "\u2093", "\uff41"]  # fullwidth x, bold x, sub x, fw a
PYTHON_LINE_ENDS = ["\n", "\r\n", "\r"]
NOT_PYTHON_LINE_ENDS = ["\x85", "\u2028", "\u2029"]
CONTROL_LINE_BREAKS = ["\v", "\f", "\x1c", "\x1d", "\x1e"]


def compile_text(text: str) -> object:
    return lang.compile_source(text, Limits())


@pytest.mark.parametrize("name", LOOKALIKES)
@pytest.mark.parametrize("end", PYTHON_LINE_ENDS)
@pytest.mark.parametrize(
    "template",
    [
        "# a comment{end}sum({name})",
        "y = x # a comment{end}return sum({name})",
        "y = x{end}return sum({name} * y)",
        "y = x{end}{end}return sum(y + {name})",
        "return sum(x + ({end}{name}))",
        "y = x{end}if sum(x) > 0:{end}    y = {name}{end}return sum(y)",
    ],
)
def test_a_lookalike_after_any_python_line_end_is_refused(
    name: str, end: str, template: str
) -> None:
    text = template.format(end=end, name=name)
    # the premise: Python itself would read the look-alike as a plain name
    assert any(isinstance(n, ast.Name) and n.id.isascii() for n in ast.walk(ast.parse(text)))
    with pytest.raises(LanguageError) as err:
        compile_text(text)
    assert "non-ASCII" in err.value.message
    # the position is the parser's: the last line Python counts
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    line = next(i for i, t in reversed(list(enumerate(lines, 1))) if name in t)
    assert err.value.loc == {"line": line, "column": lines[line - 1].index(name) + 1}


@pytest.mark.parametrize("end", NOT_PYTHON_LINE_ENDS)
def test_breaks_python_does_not_know_keep_a_comment_going(end: str) -> None:
    """In a comment they are comment text, and so is what follows them: Python agrees."""
    text = f"sum(x) # note{end} \uff58 + 1"
    assert compile_text(text) is not None
    assert ast.dump(ast.parse(text)) == ast.dump(ast.parse("sum(x)"))


@pytest.mark.parametrize("end", NOT_PYTHON_LINE_ENDS)
def test_breaks_python_does_not_know_are_refused_outside_comments(end: str) -> None:
    with pytest.raises(LanguageError, match="non-ASCII"):
        compile_text(f"sum(x){end}")


@pytest.mark.parametrize("end", CONTROL_LINE_BREAKS)
def test_control_line_breaks_are_refused(end: str) -> None:
    with pytest.raises(LanguageError, match="control character"):
        compile_text(f"y = x{end}return sum(\uff58)")


def test_strings_and_escapes_do_not_hide_a_comment() -> None:
    """A quote escaped inside a string opens nothing: the ``#`` after it is in the string."""
    with pytest.raises(LanguageError, match="non-ASCII"):
        compile_text('einsum("i\\"#", x) + sum(\uff58)')
    with pytest.raises(LanguageError, match="non-ASCII"):
        compile_text("einsum('i->', x) + sum(\uff58) # done")


def test_non_ascii_in_comments_is_still_fine() -> None:
    assert compile_text("# d\u00e9riv\u00e9e \uff58\rsum(x) # \u00e9") is not None
