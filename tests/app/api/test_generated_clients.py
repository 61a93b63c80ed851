"""Clients generated from /openapi.json call a real server (issue 19 item 3).

- Python: openapi-python-client (the test extra) generates a package from the served
  document; a script using it calls ``grad`` with and without the API key (the document's
  ``securitySchemes``) and reads the typed answer.
- TypeScript: openapi-typescript and TypeScript (npm, pinned below) are installed into a
  temporary directory; a small file using the generated types must pass ``tsc --strict``
  and then calls /grad with Node's fetch. This part needs the npm registry at test time:
  it is skipped only when ``npm ping`` cannot reach the registry (CI machines can).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, start_uvicorn, stop, wait_ready

pytestmark = pytest.mark.server

KEY = "generated-client-key"
ENV = {"AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning", "AUTODIFF_API_KEYS": KEY}
OPENAPI_TYPESCRIPT = "openapi-typescript@7.13.0"
TYPESCRIPT = "typescript@5.9.3"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    proc = start_uvicorn(port, {**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/healthz", proc)
        wait_ready(url + "/readyz", proc)
        yield url
    finally:
        stop(proc, timeout=10)


@pytest.fixture(scope="module")
def document(server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(httpx.get(server + "/openapi.json", timeout=30).text)
    return path


def run(args: list[str], cwd: Path, timeout: float = 300, **kw: object) -> str:
    """Run a command; fail the test with its output if it fails."""
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


# --------------------------------------------------------------------------- Python

PYTHON_USE = """
import json, sys
from autodiff_generated import AuthenticatedClient, Client
from autodiff_generated.api.derivatives import grad
from autodiff_generated.models import GradRequest, GradResponse, Problem

url, key = sys.argv[1], sys.argv[2]
body = GradRequest.from_dict({"expression": "2 * dot(x, x)", "inputs": {"x": [0, 1, 2, 3]}})
with AuthenticatedClient(base_url=url, token=key) as client:
    answer = grad.sync(client=client, body=body)
assert isinstance(answer, GradResponse), answer
with Client(base_url=url) as anonymous:
    refused = grad.sync_detailed(client=anonymous, body=body)
problem = refused.parsed
assert isinstance(problem, Problem), problem
print(json.dumps({
    "value": answer.value,
    "gradients": answer.gradients.to_dict(),
    "nodes": answer.graph.num_nodes,
    "timing_keys": sorted(answer.timing_ms.to_dict()),
    "refused": [refused.status_code, problem.status, problem.type_],
}))
"""


def test_python_client_from_the_document_calls_grad(server: str, document: Path) -> None:
    work = document.parent
    generator = BIN / "openapi-python-client"
    if not generator.exists():
        pytest.fail("openapi-python-client is in the test extra: pip install -e '.[test]'")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = work / "autodiff_generated"
    shutil.rmtree(out, ignore_errors=True)
    log = run(
        [str(generator), "generate", "--path", str(document), "--output-path", str(out)]
        + ["--meta", "none"],
        cwd=work,
        env=env,
    )
    # Every operation is generated, none skipped for a schema the generator cannot read.
    assert "Warning" not in log and "will not be generated" not in log, log
    generated = {p.stem for p in (out / "api").rglob("*.py") if p.stem != "__init__"}
    expected = {"grad", "vjp", "jvp", "jacobian", "hessian", "hvp", "list_ops", "healthz"}
    assert expected | {"readyz", "metrics"} <= generated
    script = work / "use_client.py"
    script.write_text(PYTHON_USE)
    answer = json.loads(
        run([sys.executable, str(script), server, KEY], cwd=work, env={**env, "PYTHONPATH": ""})
    )
    assert answer["value"] == 28.0
    assert answer["gradients"] == {"x": [0.0, 4.0, 8.0, 12.0]}
    assert answer["nodes"] == 3 and "total" in answer["timing_keys"]
    assert answer["refused"] == [401, 401, "urn:autodiff:problem:unauthorized"]


# --------------------------------------------------------------------------- TypeScript

TS_USE = """
import type { components, paths } from "./schema";

type GradBody = paths["/grad"]["post"]["requestBody"]["content"]["application/json"];
type GradAnswer = paths["/grad"]["post"]["responses"][200]["content"]["application/json"];
type Problem = paths["/grad"]["post"]["responses"][401]["content"]["application/problem+json"];
type OutputArray = components["schemas"]["OutputArray"];

async function main(url: string, key: string): Promise<void> {
  const body: GradBody = { expression: "2 * dot(x, x)", inputs: { x: [0, 1, 2, 3] } };
  const init = { method: "POST", body: JSON.stringify(body) };
  const json = { "Content-Type": "application/json" };
  const ok = await fetch(`${url}/grad`, { ...init, headers: { ...json, "X-API-Key": key } });
  const answer = (await ok.json()) as GradAnswer;
  const x: OutputArray | undefined = answer.gradients["x"];
  const refused = await fetch(`${url}/grad`, { ...init, headers: json });
  const problem = (await refused.json()) as Problem;
  // `graph` is the JSON metadata, or DOT text with include_graph: "dot"
  const graph = answer.graph;
  const nodes: number | undefined = typeof graph === "object" ? graph?.num_nodes : undefined;
  console.log(JSON.stringify({
    status: ok.status, value: answer.value, x, nodes, refused: [refused.status, problem.type],
  }));
}

main(process.argv[2] ?? "", process.argv[3] ?? "").catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
"""
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "target": "ES2022",
        "module": "commonjs",
        "lib": ["ES2022", "DOM"],
        "types": [],
        "noUncheckedIndexedAccess": True,
        "outDir": "out",
        "skipLibCheck": False,
    },
    "files": ["use_client.ts", "schema.d.ts", "node.d.ts"],
}
# The two Node globals the file uses, so no @types/node is needed.
NODE_GLOBALS = "declare const process: { argv: string[]; exit(code: number): never };\n"


def npm_install(work: Path) -> None:
    """Install the pinned generator and compiler into ``work``; skip if npm is unreachable."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.fail("Node.js 20 and npm are needed for the TypeScript client test")
    args = [npm, "install", "--no-audit", "--no-fund", "--silent", OPENAPI_TYPESCRIPT, TYPESCRIPT]
    done = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=600)
    if done.returncode == 0:
        return
    ping = subprocess.run([npm, "ping"], cwd=work, capture_output=True, text=True, timeout=120)
    if ping.returncode != 0:
        pytest.skip(f"the npm registry is unreachable (npm ping: {ping.stderr.strip()[:200]})")
    pytest.fail(f"npm install failed:\n{done.stdout}\n{done.stderr}")


def test_typescript_types_from_the_document_pass_strict_and_call_grad(
    server: str, document: Path
) -> None:
    work = document.parent / "ts"
    work.mkdir(exist_ok=True)
    npm_install(work)
    (work / "package.json").write_text('{"private": true}')
    bin_dir = work / "node_modules" / ".bin"
    run([str(bin_dir / "openapi-typescript"), str(document), "-o", "schema.d.ts"], cwd=work)
    (work / "use_client.ts").write_text(textwrap.dedent(TS_USE))
    (work / "node.d.ts").write_text(NODE_GLOBALS)
    (work / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    run([str(bin_dir / "tsc"), "-p", "tsconfig.json"], cwd=work)
    answer = json.loads(run(["node", "out/use_client.js", server, KEY], cwd=work))
    assert answer["status"] == 200 and answer["value"] == 28.0
    assert answer["x"] == [0.0, 4.0, 8.0, 12.0] and answer["nodes"] == 3
    assert answer["refused"] == [401, "urn:autodiff:problem:unauthorized"]
