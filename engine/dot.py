"""The traced graph as Graphviz DOT text, built from the graph metadata (``Recorder.metadata``).

``include_graph: "dot"`` answers this text instead of the JSON graph. It has the same nodes and
edges as the JSON node list (so the same truncation: past ``max_graph_nodes_returned`` the
nodes are cut, the counts stay exact, and the graph's label says it was cut):

- one DOT node per JSON node, named by its id and labelled with its op, id, shape and dtype;
- inputs that require grad are blue boxes, constants (``requires_grad: false`` inputs and
  constant arrays) grey dashed boxes, ops ellipses (grey when no gradient flows through them);
- outputs have a double border and say ``output``; the node where a non-finite value first
  arose is red and says ``non-finite``;
- one DOT edge per entry of a node's ``inputs`` (``dot(x, x)`` has two edges from ``x``), drawn
  from the operand to the op. An edge the backward pass follows (a gradient flows from the op
  back into the operand: both require grad) is solid; an edge no gradient crosses is dashed grey.

Every node carries a ``class`` (``input``, ``constant``, ``op``, plus ``output``/``nonfinite``)
so an SVG rendering can be styled and queried. Everything user-controlled is quoted and escaped:
a name cannot end a string, start a statement or inject a Graphviz escape (``\\N``, ``\\l``).

Pure: no web imports, only the metadata dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_LABEL_CHARS = 48  # a longer name is shortened in the label (the node id stays whole)

INPUT_STYLE = 'shape=box, style="rounded,filled", fillcolor="#cfe3ff", color="#1f5fbf"'
CONSTANT_STYLE = 'shape=box, style="dashed,filled", fillcolor="#eeeeee", color="#777777"'
OP_STYLE = 'shape=ellipse, style=filled, fillcolor="#fff6d8", color="#8a6d00"'
NO_GRAD_OP_STYLE = 'shape=ellipse, style=filled, fillcolor="#f2f2f2", color="#777777"'
OUTPUT_STYLE = "peripheries=2, penwidth=2"
NONFINITE_STYLE = 'fillcolor="#ffd0d0", color="#c00000", fontcolor="#900000", penwidth=2'
GRAD_EDGE_STYLE = 'color="#333333"'
NO_GRAD_EDGE_STYLE = 'style=dashed, color="#999999"'


def quote(text: str) -> str:
    """``text`` as a DOT quoted string that shows exactly these characters in a label.

    Backslashes are doubled (so a name ending in one cannot escape the closing quote, and
    ``\\N``-style label escapes do not fire), quotes escaped, and characters that do not print
    (newlines, NUL, other controls) written as ``\\xNN`` text.
    """
    shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "\u2026"


def _shape_text(shape: Sequence[int]) -> str:
    """The shape as NumPy prints ``.shape``: ``()``, ``(3,)``, ``(2, 3)``."""
    return str(tuple(int(n) for n in shape))


def _is_constant(node: Mapping[str, Any]) -> bool:
    return bool(node.get("is_leaf")) and not node.get("requires_grad")


def _kind(node: Mapping[str, Any]) -> str:
    if _is_constant(node):
        return "constant"
    return "input" if node.get("is_leaf") else "op"


def _node_line(node: Mapping[str, Any], output_positions: list[int], nonfinite: bool) -> str:
    kind = _kind(node)
    op, node_id = str(node.get("op", "")), str(node.get("id", ""))
    lines = [_clip(op) if kind == "op" else f"{kind} {_clip(node_id)}"]
    if kind == "op":
        lines.append(_clip(node_id))
    lines.append(f"{_shape_text(node.get('shape') or [])} {node.get('dtype', '')}")
    style = {"input": INPUT_STYLE, "constant": CONSTANT_STYLE}.get(
        kind, OP_STYLE if node.get("requires_grad") else NO_GRAD_OP_STYLE
    )
    classes = [kind]
    if output_positions:
        which = ", ".join(str(i) for i in output_positions)
        lines.append("output" if output_positions == [0] else f"output {which}")
        style += ", " + OUTPUT_STYLE
        classes.append("output")
    if nonfinite:
        lines.append("non-finite")
        style += ", " + NONFINITE_STYLE
        classes.append("nonfinite")
    # Each line is escaped on its own; "\n" between them is Graphviz's centred line break.
    label = "\\n".join(quote(line)[1:-1] for line in lines)
    return f'  {quote(node_id)} [label="{label}", class="{" ".join(classes)}", {style}];'


def _cut_note(graph: Mapping[str, Any], shown: int, missing_outputs: list[str]) -> str:
    note = (
        f"graph cut: {shown} of {graph.get('num_nodes', shown)} nodes shown "
        f"({graph.get('num_edges', '?')} edges in all)"
    )
    if missing_outputs:
        note += "; outputs not shown: " + ", ".join(_clip(o) for o in missing_outputs)
    return note


def to_dot(graph: Mapping[str, Any], nonfinite: Iterable[str] = (), name: str = "autodiff") -> str:
    """The graph metadata ``graph`` as DOT text; nodes named in ``nonfinite`` are marked."""
    nodes: list[Mapping[str, Any]] = list(graph.get("nodes") or [])
    outputs = [str(o) for o in graph.get("outputs") or []]
    bad = set(nonfinite)
    listed = {str(n.get("id")) for n in nodes}
    requires = {str(n.get("id")): bool(n.get("requires_grad")) for n in nodes}
    lines = [
        f"digraph {quote(name)} {{",
        "  // Built from the answer's JSON graph metadata: one node per node, one edge per",
        "  // operand. Solid edges carry gradients back (the backward pass follows them).",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.35];',
        '  node [fontname="Helvetica", fontsize=10];',
        "  edge [arrowsize=0.7];",
    ]
    if graph.get("truncated"):
        missing = [o for o in outputs if o not in listed]
        lines.append(f"  graph [label={quote(_cut_note(graph, len(nodes), missing))}, labelloc=t];")
        lines.append('  graph [class="truncated"];')
    for node in nodes:
        node_id = str(node.get("id"))
        positions = [i for i, o in enumerate(outputs) if o == node_id]
        lines.append(_node_line(node, positions, node_id in bad))
    for node in nodes:
        target = str(node.get("id"))
        for source in node.get("inputs") or []:
            follows = requires.get(str(source), False) and requires[target]
            style = GRAD_EDGE_STYLE if follows else NO_GRAD_EDGE_STYLE
            kind = "grad" if follows else "nograd"
            lines.append(f'  {quote(str(source))} -> {quote(target)} [class="{kind}", {style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
