"""``include_graph: "dot"``: Graphviz DOT text with the JSON graph's nodes and edges.

Every DOT answer is parsed twice, by pydot (a maintained DOT parser, in the test extra) and by
Graphviz's own ``dot`` (Debian's graphviz, installed here like chromium when missing), and its
node and edge counts compared with the JSON graph of the same request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydot
import pytest
from fastapi.testclient import TestClient

from app.cli import main as cli_main
from app.main import create_app
from app.settings import Settings
from engine.dot import quote, to_dot

WORKED = json.loads((Path(__file__).parents[1] / "worked_examples.json").read_text())
SETTINGS = Settings(workers=1, max_graph_nodes_returned=6, worker_memory_mb=0)
DEFAULT_STATEMENTS = {"node", "edge", "graph"}


def ensure_graphviz() -> str:
    """Graphviz's ``dot`` (Debian's graphviz package, installed if absent: CI starts bare)."""
    found = shutil.which("dot")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("graphviz is missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "graphviz"],
        check=True,
        env=env,
        capture_output=True,
    )
    return shutil.which("dot") or pytest.fail("apt-get installed graphviz but there is no dot")


def unquote(name: str) -> str:
    """A DOT ID as pydot gives it, back to the text (quotes off, escapes undone)."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        out, chars = [], iter(name[1:-1])
        for ch in chars:
            out.append(next(chars, "") if ch == "\\" else ch)
        return "".join(out)
    return name


def parsed(text: str) -> pydot.Dot:
    """The one graph pydot parses from ``text``."""
    graphs = pydot.graph_from_dot_data(text)
    assert graphs and len(graphs) == 1, text
    return graphs[0]


def pydot_counts(text: str) -> tuple[list[str], int]:
    """Node names and the edge count, as pydot parses ``text``."""
    graph = parsed(text)
    names = [unquote(n.get_name()) for n in graph.get_nodes()]
    return [n for n in names if n not in DEFAULT_STATEMENTS], len(graph.get_edges())


def graphviz_plain(text: str) -> list[str]:
    """Graphviz's own layout of ``text`` in its plain format (fails on a syntax error)."""
    done = subprocess.run(
        [ensure_graphviz(), "-Tplain"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout.splitlines()


def shown(name: str) -> str:
    """A name as the DOT text writes it: characters that do not print as ``\\xNN``."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in name)


def assert_same_graph(text: str, graph: dict[str, Any]) -> None:
    """``text`` parses (pydot and Graphviz) to the JSON graph's listed nodes and edges."""
    assert text.startswith("digraph")
    ids = [shown(n["id"]) for n in graph["nodes"]]
    edges = sum(len(n["inputs"]) for n in graph["nodes"])
    names, pydot_edges = pydot_counts(text)
    assert names == ids and pydot_edges == edges
    plain = graphviz_plain(text)
    assert sum(line.startswith("node ") for line in plain) == len(ids)
    assert sum(line.startswith("edge ") for line in plain) == edges


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS)) as c:
        yield c


def both_graphs(client: TestClient, endpoint: str, body: dict[str, Any]) -> tuple[str, dict]:
    """The DOT answer and the JSON graph answer of the same request."""
    dot_answer = client.post(endpoint, json={**body, "include_graph": "dot"})
    json_answer = client.post(endpoint, json={**body, "include_graph": True})
    assert dot_answer.status_code == json_answer.status_code == 200, dot_answer.text
    assert dot_answer.json()["value"] == json_answer.json()["value"]
    return dot_answer.json()["graph"], json_answer.json()["graph"]


@pytest.mark.parametrize("example", WORKED, ids=[e["name"] for e in WORKED])
def test_every_worked_example_as_dot(client: TestClient, example: dict[str, Any]) -> None:
    endpoint = example["endpoint"].split()[1]
    text, graph = both_graphs(client, endpoint, example["request"])
    assert_same_graph(text, graph)
    for node in graph["nodes"]:  # labelled with op, shape and dtype
        assert node["op"] in text and node["dtype"] in text
    if graph["truncated"]:
        assert f"graph cut: {len(graph['nodes'])} of {graph['num_nodes']} nodes" in text


@pytest.mark.parametrize("endpoint", ["/jvp", "/jacobian", "/hessian", "/hvp"])
def test_every_endpoint_answers_dot(client: TestClient, endpoint: str) -> None:
    body: dict[str, Any] = {"expression": "sum(sin(x) * x)", "inputs": {"x": [1.0, 2.0]}}
    if endpoint == "/jvp":
        body["tangents"] = {"x": [1.0, 0.0]}
    if endpoint == "/hvp":
        body["vectors"] = {"x": [1.0, 0.0]}
    text, graph = both_graphs(client, endpoint, body)
    assert_same_graph(text, graph)


def test_kinds_outputs_and_gradient_edges(client: TestClient) -> None:
    body = {
        "expression": "u = detach(x)\nreturn sum(u * x * c), x",
        "inputs": {"x": [1.0, 2.0], "c": {"data": [3.0, 4.0], "requires_grad": False}},
        "cotangent": [1.0, [1.0, 1.0]],
    }
    text, graph = both_graphs(client, "/grad", body)
    assert_same_graph(text, graph)
    g = parsed(text)
    classes = {unquote(n.get_name()): unquote(str(n.get("class"))) for n in g.get_nodes()}
    assert classes["x"] == "input output" and classes["c"] == "constant"
    assert "output" in classes[graph["outputs"][0]].split()
    edge_class = {
        (unquote(str(e.get_source())), unquote(str(e.get_destination()))): unquote(
            str(e.get("class"))
        )
        for e in g.get_edges()
    }
    detach = next(n["id"] for n in graph["nodes"] if n["op"] == "detach")
    # no gradient crosses detach, nor reaches the constant; x's own path carries one
    into_detach = [k for k in edge_class if k[1] == detach]
    assert into_detach and all(edge_class[k] == "nograd" for k in into_detach)
    assert all(v == "nograd" for (s, _), v in edge_class.items() if s == "c")
    assert any(v == "grad" for (s, _), v in edge_class.items() if s == "x")


def test_a_cut_graph_says_so_and_keeps_the_listed_nodes(client: TestClient) -> None:
    body = {"expression": "sum(exp(sin(cos(tanh(x * x + 1)))))", "inputs": {"x": [1.0]}}
    text, graph = both_graphs(client, "/grad", body)
    assert graph["truncated"] and len(graph["nodes"]) == SETTINGS.max_graph_nodes_returned
    assert_same_graph(text, graph)
    assert f"graph cut: 6 of {graph['num_nodes']} nodes shown" in text
    assert "outputs not shown: " + graph["outputs"][0] in text


def test_the_node_where_a_non_finite_value_arose_is_marked(client: TestClient) -> None:
    body = {"expression": "sum(log(x) * 2)", "inputs": {"x": [0.0, 1.0]}}
    text, graph = both_graphs(client, "/grad", body)
    assert_same_graph(text, graph)
    g = parsed(text)
    marked = [unquote(n.get_name()) for n in g.get_nodes() if "nonfinite" in str(n.get("class"))]
    assert [graph["nodes"][i]["op"] for i, n in enumerate(graph["nodes"]) if n["id"] in marked] == [
        "log"
    ]


def test_include_graph_takes_only_true_false_and_dot(client: TestClient) -> None:
    body = {"expression": "sum(x)", "inputs": {"x": [1.0]}}
    for bad in ("svg", "DOT", 1, None):
        r = client.post("/grad", json={**body, "include_graph": bad})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert [e["loc"] for e in r.json()["errors"]] == [["body", "include_graph"]]
        assert 'include_graph is true, false or "dot"' in r.json()["detail"]
    assert "graph" not in client.post("/grad", json={**body, "include_graph": False}).json()


def test_openapi_documents_the_dot_option(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    options = schemas["GradRequest"]["properties"]["include_graph"]["anyOf"]
    assert {"type": "boolean"} in options and {"type": "string", "const": "dot"} in options


# ---------------------------------------------------------------- hostile names (pure)

HOSTILE = [
    'a"b',
    "ends\\",
    "\\N\\G\\l",
    "line\nbreak",
    "nul\x00here",
    '"; digraph evil { x -> y } //',
    "<b>html</b> & &amp;",
    "\u03b1\u2032 \U0001f600",
    "-> z",
    "[label=oops]",
    "",
    "x" * 300,
]


def hostile_graph() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for i, name in enumerate(HOSTILE):
        nodes.append(
            {"id": name, "op": "input", "inputs": [], "shape": [2], "dtype": "float64",
             "requires_grad": i % 2 == 0, "is_leaf": True, "grad_fn": None}
        )  # fmt: skip
    nodes.append(
        {"id": 'sum"}', "op": 'op"\\', "inputs": list(HOSTILE) + [HOSTILE[0]], "shape": [],
         "dtype": "float64", "requires_grad": True, "is_leaf": False, "grad_fn": "sum_backward"}
    )  # fmt: skip
    return {"nodes": nodes, "outputs": ['sum"}'], "num_nodes": 13, "num_edges": 13, "depth": 1}


def test_hostile_names_cannot_break_the_dot() -> None:
    graph = hostile_graph()
    text = to_dot(graph, nonfinite=[HOSTILE[1]], name='evil"name\\')
    assert_same_graph(text, graph)
    # Graphviz shows each label's text as given (non-printing characters as \xNN).
    plain = "\n".join(graphviz_plain(text))
    for name in ['a"b', "ends\\", "\\N\\G\\l", "line\\x0abreak", "<b>html</b> & &amp;"]:
        assert name.replace("\\", "\\\\").replace('"', '\\"') in plain
    assert "evil {" not in [line.split()[0] for line in text.splitlines() if line.strip()]


def test_hostile_names_in_a_cut_graph_note() -> None:
    graph = {**hostile_graph(), "truncated": True, "outputs": ['gone"\\']}
    text = to_dot(graph)
    assert_same_graph(text, graph)
    assert "outputs not shown" in text


@pytest.mark.parametrize("name", HOSTILE)
def test_quote_round_trips_through_pydot(name: str) -> None:
    assert unquote(quote(name)) == shown(name)


# ---------------------------------------------------------------- the CLI's --graph dot


def test_cli_graph_dot_prints_dot_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["grad", "sum(sin(x))", "-i", "x=[1, 2]", "--graph", "dot"]) == 0
    text = capsys.readouterr().out
    assert cli_main(["grad", "sum(sin(x))", "-i", "x=[1, 2]", "--graph", "--json"]) == 0
    graph = json.loads(capsys.readouterr().out)["graph"]
    assert_same_graph(text, graph)
    assert cli_main(["grad", "sum(sin(x))", "-i", "x=[1, 2]", "--graph", "dot", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["graph"] == text
