"""The ``autodiff`` command: start the service, or compute a derivative from the shell.

    autodiff serve --port 8000
    autodiff grad "2*dot(x,x)" -i x=[0,1,2,3]                 # on this machine, no server
    autodiff grad "2*dot(x,x)" -i x=[0,1,2,3] --url http://127.0.0.1:8000
    autodiff jvp "sin(x)*y" -i x=[1,2] -i y=[3,4] -t x=[1,0] -t y=[0,0] --json
    autodiff grad "sum(w*x)" -i w=[1,2] -i x=[[1,0],[0,1],[2,2]] --batch x   # 3 points
    autodiff jacobian "sin(x)*x" -i x=@x.npy --url http://127.0.0.1:8000 --background
    autodiff jobs get ID --url http://127.0.0.1:8000       # or: jobs cancel ID
    autodiff functions store "sum(w*x**2)" -c w=[1,2] --url http://127.0.0.1:8000

Locally the request goes through the same validation and ``app.compute`` path as
the service (without the worker pool's time limit); with ``--url`` it goes over
HTTP through ``autodiff_client`` (the client distribution). Errors print one line on
stderr (a problem+json object with ``--json``) and exit 1 for a service or computation
error, 2 for a usage error (as argparse does); ``autodiff --version`` prints the version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx
import numpy as np
import orjson

from app.compute.endpoints import ENDPOINTS
from autodiff_client import AutodiffHTTPError, Client, Result, __version__, parse_result
from autodiff_client.codec import function_fields
from autodiff_client.jobs import job_result

COMMANDS = tuple(ENDPOINTS)
# Server processes by default: one per core of a 2-core machine, as `make serve` and the image.
DEFAULT_SERVER_PROCESSES = 2
EXIT_ERROR = 1
EXIT_USAGE = 2


def _int_env(name: str) -> int:
    # app.settings has the same helper, but importing it (pydantic-settings) would add
    # about 0.3 s to every command of the CLI
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return 0


USAGE_PROBLEM = "urn:autodiff:problem:usage"


class CLIError(Exception):
    """A problem to report as one line (or one problem+json object) and a non-zero exit.

    By default a usage error (exit 2: the command line is wrong); ``problem`` carries the
    service's problem details for a computation error (exit 1).
    """

    def __init__(
        self, message: str, problem: dict[str, Any] | None = None, status: int = EXIT_USAGE
    ) -> None:
        super().__init__(message)
        self.problem = problem or {"type": USAGE_PROBLEM, "title": "Usage error", "detail": message}
        self.status = status


# ------------------------------------------------------------------- arguments


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=JSON`` (``x=[0,1,2]``, ``c=2.5``, ``w=@weights.npy``) as a name and a value."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise CLIError(f"expected NAME=VALUE, got {text!r}")
    raw = raw.strip()
    if raw.startswith("@"):
        return name, _load_array(Path(raw[1:]))
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CLIError(f"value of {name} is not JSON ({exc.msg}): {raw!r}") from None
    return name, value


def _load_array(path: Path) -> Any:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).tolist()
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None


def assignments(items: Sequence[str] | None) -> dict[str, Any]:
    """Several ``name=JSON`` arguments as a dict (a repeated name is an error)."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, value = parse_assignment(item)
        if name in out:
            raise CLIError(f"{name} is given twice")
        out[name] = value
    return out


def batch_names(items: Sequence[str]) -> list[str]:
    """``--batch x,y`` (or ``--batch x --batch y``) as the request's ``batch`` list."""
    names = [name.strip() for item in items for name in item.split(",")]
    for name in names:
        if not name.isidentifier():
            raise CLIError(f"--batch takes input names separated by commas, got {name!r}")
    if len(set(names)) != len(names):
        raise CLIError(f"--batch names an input twice: {','.join(names)}")
    return names


def function_of(text: str) -> str | dict[str, Any]:
    """The function argument: source text, or ``@file`` (``.json`` files hold a graph)."""
    if not text.startswith("@"):
        return text
    path = Path(text[1:])
    try:
        content = path.read_text()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            graph = json.loads(content)
        except json.JSONDecodeError as exc:
            raise CLIError(f"{path} is not JSON: {exc.msg}") from None
        return graph.get("graph", graph) if isinstance(graph, dict) else graph
    return content


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON request for a compute command, exactly as the service takes it."""
    fields: dict[str, Any] = {"wrt": args.wrt or None, "check": args.check or None}
    if args.command in ("grad", "vjp") and args.cotangent is not None:
        fields["cotangent"] = parse_assignment(f"cotangent={args.cotangent}")[1]
    if args.command == "vjp" and "cotangent" not in fields:
        raise CLIError("vjp needs --cotangent")
    if args.command == "jvp":
        fields["tangents"] = assignments(args.tangent)
    if args.command == "hvp":
        fields["vectors"] = assignments(args.vector)
    if args.command == "jacobian":
        fields["mode"] = args.mode
    if args.batch:
        fields["batch"] = batch_names(args.batch)
    # the function: text, a graph, or a stored function's id ("sha256:...", with --url)
    body: dict[str, Any] = function_fields(function_of(args.function))
    if "function" in body and not args.url:
        raise CLIError("a stored function's id needs --url: it is stored in the service")
    # Values go as the user wrote them: the service validates them and says what is wrong.
    body["inputs"] = assignments(args.input)
    for name in args.const or ():
        if name not in body["inputs"]:
            raise CLIError(f"--const {name}: there is no input {name}")
        body["inputs"][name] = {"data": body["inputs"][name], "requires_grad": False}
    body.update({k: v for k, v in fields.items() if v is not None})
    body["include_graph"] = "dot" if args.graph == "dot" else bool(args.graph)
    return body


# ------------------------------------------------------------------- computing


def compute_local(endpoint: str, body: dict[str, Any]) -> bytes:
    """Answer the request on this machine, through the service's own validation and engine."""
    from pydantic import ValidationError  # deferred: `--url` and `serve` do not need them

    from app.api import errors
    from app.api.routes.derivatives import MODELS
    from app.api.tasks import build_task
    from app.scheduling.runner import run_in_process
    from app.settings import get_settings
    from engine.errors import AutodiffError

    try:
        request = MODELS[endpoint].model_validate(body)
        task = build_task(endpoint, request, get_settings())
        answer, _, _ = run_in_process(task)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"invalid request: {where}: {first['msg']}"
        problem = _problem_of(errors.problem(422, "invalid-request", "Invalid request", message))
        raise CLIError(message, problem, EXIT_ERROR) from None
    except AutodiffError as exc:
        message = f"{exc.title}: {exc.message}{_where(exc.loc, exc.message)}"
        raise CLIError(message, _problem_of(errors.autodiff_problem(exc)), EXIT_ERROR) from None
    return answer


def _problem_of(response: Any) -> dict[str, Any]:
    """The problem details of a problem+json response, as the service would answer them."""
    problem: dict[str, Any] = orjson.loads(response.body)
    return problem


def _where(loc: Any, message: str = "") -> str:
    if isinstance(loc, dict) and "line" in loc:
        where = f"line {loc['line']}, column {loc.get('column', '?')}"
        return "" if where in message else f" ({where})"
    if isinstance(loc, dict) and "node" in loc:
        return f" (node {loc['node']})"
    if isinstance(loc, str):
        return f" (node {loc})"
    if isinstance(loc, list | tuple) and list(loc) != ["body"] and loc:
        return " (at " + ".".join(str(p) for p in loc) + ")"
    return ""


def compute_remote(endpoint: str, body: dict[str, Any], url: str, api_key: str | None) -> bytes:
    """Answer the request with the service at ``url``."""
    with Client(url, api_key=api_key) as client:
        return client.send(f"/{endpoint}", body).content


def compute_background(
    endpoint: str, body: dict[str, Any], url: str, api_key: str | None, progress: bool = True
) -> bytes:
    """Answer the request as a job of the service at ``url`` (``POST /jobs``), with a
    progress bar on stderr while it runs. Ctrl-C cancels the job before leaving."""
    with Client(url, api_key=api_key) as client:
        accepted = client.send("/jobs", {"endpoint": endpoint, "request": body}).json()
        job = client.job(str(accepted["id"]))
        job.endpoint = endpoint
        try:
            status = job.wait_status(progress=progress)
        except KeyboardInterrupt:
            job.cancel()
            raise
        job_result(status)  # a failed or cancelled job raises its problem here
        return orjson.dumps(status["result"])


# --------------------------------------------------------------------- output


def show(result: Result) -> str:
    """A result as readable text: the value, then each derivative by input name."""
    lines = [f"value: {_fmt(result.value)}"]
    for label in ("gradients", "vjp", "jvp", "jacobian", "hessian", "hvp"):
        part = getattr(result, label)
        if part is None or (isinstance(part, dict) and not part):  # not in this answer
            continue
        if isinstance(part, dict):
            lines.append(f"{label}:")
            lines.extend(_named(part, "  "))
        else:
            lines.append(f"{label}: {_fmt(part)}")
    if result.mode:
        lines.append(f"mode: {result.mode}")
    if result.check:
        lines.append("check: " + ", ".join(f"{k}={v}" for k, v in result.check.items()))
    lines.extend(f"warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def _named(part: dict[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for name, value in part.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{name}:")
            lines.extend(_named(value, indent + "  "))
        else:
            lines.append(f"{indent}{name}: {_fmt(value, len(indent) + len(name) + 2)}")
    return lines


def _fmt(value: Any, indent: int = 7) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_fmt(v, indent) for v in value) + ")"
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(float(arr))
    text = np.array2string(arr, separator=", ", max_line_width=100 - indent)
    return text.replace("\n", "\n" + " " * indent)


# ------------------------------------------------------------------------ main


def _parser_class(json_errors: bool) -> type[argparse.ArgumentParser]:
    """An ArgumentParser whose usage errors are problem+json when ``--json`` was given."""

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            if not json_errors:
                super().error(message)
            _print_problem({"type": USAGE_PROBLEM, "title": "Usage error", "detail": message})
            sys.exit(EXIT_USAGE)

    return Parser


def build_parser(json_errors: bool = False) -> argparse.ArgumentParser:
    """The argument parser: ``serve``, ``ops`` and one subcommand per derivative."""
    parser = _parser_class(json_errors)(
        prog="autodiff", description="Derivatives of NumPy-style functions, here or over HTTP."
    )
    parser.add_argument("--version", action="version", version=f"autodiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="start the HTTP service (uvicorn)")
    serve.add_argument("--host", default=os.environ.get("UVICORN_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("UVICORN_PORT", "8000")))
    serve.add_argument(
        "--workers",
        type=int,
        default=_int_env("UVICORN_WORKERS") or DEFAULT_SERVER_PROCESSES,
        help="server (uvicorn) processes; default $UVICORN_WORKERS, else "
        f"{DEFAULT_SERVER_PROCESSES} as `make serve` and the image. Each starts its own compute "
        "pool, of AUTODIFF_WORKERS processes (default: the cores divided among the server "
        "processes); with more than one, /metrics sums over them all",
    )
    serve.add_argument("--log-level", default="info")
    ops = sub.add_parser("ops", help="list the ops (locally, or from --url)")
    _add_remote(ops)
    ops.add_argument("--json", action="store_true", help="print JSON")
    for name in COMMANDS:
        _add_compute(sub, name)
    _add_jobs(sub)
    _add_functions(sub)
    return parser


def _add_remote(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="use the service at this URL instead of computing here")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("AUTODIFF_API_KEY"),
        help="API key for --url (default: $AUTODIFF_API_KEY)",
    )


def _add_compute(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help=ENDPOINTS[name].help)
    p.add_argument(
        "function",
        help="expression or program text, @file (@graph.json), or a stored function's id "
        "(sha256:..., with --url)",
    )
    p.add_argument(
        "-i",
        "--input",
        action="append",
        metavar="NAME=JSON",
        help="an input, e.g. x=[0,1,2,3] or x=@x.npy (repeat for several)",
    )
    p.add_argument(
        "--const",
        action="append",
        metavar="NAME",
        help="an input that gets no gradient (requires_grad false)",
    )
    p.add_argument(
        "--wrt",
        action="append",
        metavar="NAME",
        help="differentiate with respect to this input only (repeatable)",
    )
    p.add_argument(
        "--batch",
        action="append",
        metavar="NAMES",
        help="these inputs (x,y) carry a leading axis of B points, the others are shared: "
        "one answer per point, every array with a leading axis B (JAX's vmap)",
    )
    if name in ("grad", "vjp"):
        p.add_argument("--cotangent", metavar="JSON", help="cotangent of the output")
    if name == "jvp":
        p.add_argument(
            "-t", "--tangent", action="append", metavar="NAME=JSON", help="tangent for one input"
        )
    if name == "hvp":
        p.add_argument(
            "-v", "--vector", action="append", metavar="NAME=JSON", help="vector for one input"
        )
    if name == "jacobian":
        p.add_argument("--mode", choices=("auto", "reverse", "forward"), default="auto")
    p.add_argument("--check", action="store_true", help="also compare with finite differences")
    p.add_argument(
        "--graph",
        nargs="?",
        const="json",
        choices=("json", "dot"),
        help="include graph metadata (shown with --json); --graph dot prints the graph as "
        "Graphviz DOT text (pipe it to `dot -Tsvg`), or puts the DOT text in the --json answer",
    )
    p.add_argument("--json", action="store_true", help="print the JSON answer, for scripts")
    p.add_argument(
        "--background",
        action="store_true",
        help="with --url: run it as a job (POST /jobs, the service's longer job time limit), "
        "with a progress bar on stderr; Ctrl-C cancels the job",
    )
    _add_remote(p)


def _add_jobs(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="a job of the service at --url: get or cancel it")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("get", "its status, progress and answer"), ("cancel", "cancel it")):
        p = actions.add_parser(action, help=text)
        p.add_argument("id", help="the job's id (POST /jobs answered it)")
        p.add_argument("--json", action="store_true", help="print the JSON answer, for scripts")
        _add_remote(p)


def _add_functions(sub: Any) -> None:
    functions = sub.add_parser("functions", help="stored functions of the service at --url")
    actions = functions.add_subparsers(dest="action", required=True, metavar="ACTION")
    store = actions.add_parser("store", help="store a function; prints its id")
    store.add_argument("function", help="expression or program text, or @file (@graph.json)")
    store.add_argument(
        "-c",
        "--constant",
        action="append",
        metavar="NAME=JSON",
        help="a constant bound to the stored function (repeat for several)",
    )
    for action, text in (("get", "its metadata"), ("delete", "delete it")):
        p = actions.add_parser(action, help=text)
        p.add_argument("id", help="the stored function's id (sha256:...)")
    for p in (store, *(actions.choices[a] for a in ("get", "delete"))):
        p.add_argument("--json", action="store_true", help="print the JSON answer, for scripts")
        _add_remote(p)


def _needs_url(args: argparse.Namespace, what: str) -> str:
    if not args.url:
        raise CLIError(f"{what} needs --url: it is the service's, not this machine's")
    return str(args.url)


def run_jobs(args: argparse.Namespace) -> str:
    """``autodiff jobs get|cancel ID``: the job's status (JSON with --json)."""
    url = _needs_url(args, f"jobs {args.action}")
    with Client(url, api_key=args.api_key) as client:
        get = client.job_status if args.action == "get" else client.job_cancel
        status = get(args.id)
    if args.json:
        return json.dumps(status)
    return show_job(status)


def show_job(status: dict[str, Any]) -> str:
    """A job's status as readable text, and its answer (or its problem) when it ended."""
    progress = status.get("progress") or {}
    lines = [
        f"id: {status.get('id')}",
        f"endpoint: {status.get('endpoint')}",
        f"status: {status.get('status')}",
        f"progress: {progress.get('done')}/{progress.get('total')} {progress.get('unit', '')}",
    ]
    if status.get("status") == "done":
        lines.append(show(parse_result(status.get("result") or {}, None)))
    elif status.get("error"):
        error = status["error"]
        lines.append(f"error: {error.get('title')}: {error.get('detail', '')}")
    return "\n".join(lines)


def run_functions(args: argparse.Namespace) -> str:
    """``autodiff functions store|get|delete``: stored functions of the service at --url."""
    url = _needs_url(args, f"functions {args.action}")
    with Client(url, api_key=args.api_key) as client:
        if args.action == "store":
            constants = assignments(args.constant)
            try:
                body = client._store_body(function_of(args.function), constants)
            except ValueError as exc:  # a constant that is no rectangular array of numbers
                raise CLIError(str(exc)) from None
            answer: dict[str, Any] = client.send("/functions", body).json()
        elif args.action == "get":
            answer = client.function_get(args.id)
        else:
            client.function_delete(args.id)
            answer = {"id": args.id, "deleted": True}
    if args.json:
        return json.dumps(answer)
    return str(answer["id"]) if args.action != "get" else json.dumps(answer, indent=2)


def run_compute(args: argparse.Namespace) -> str:
    """Run one compute command and return what to print."""
    body = request_body(args)
    if args.background:
        # with --json, stderr holds only a problem+json object: no bar
        url = _needs_url(args, "--background")
        raw = compute_background(args.command, body, url, args.api_key, progress=not args.json)
    elif args.url:
        raw = compute_remote(args.command, body, args.url, args.api_key)
    else:
        raw = compute_local(args.command, body)
    if args.json:
        return raw.decode()
    answer = orjson.loads(raw)
    if args.graph == "dot":
        return str(answer["graph"]).rstrip("\n")
    return show(parse_result(answer, None))


def run_ops(args: argparse.Namespace) -> str:
    """The op catalogue, as JSON or one op per line."""
    if args.url:
        with Client(args.url, api_key=args.api_key) as client:
            catalogue = client.ops()
    else:
        from app.api.routes.ops import ops_body

        catalogue = orjson.loads(ops_body())
    if args.json:
        return json.dumps(catalogue)
    ops = catalogue.get("ops", catalogue) if isinstance(catalogue, dict) else catalogue
    return "\n".join(f"{op['signature']:<48} {op['doc']}" for op in ops)


def serve(args: argparse.Namespace) -> str:
    """Start uvicorn with the service (blocks until stopped)."""
    import uvicorn

    if args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")  # usage: exit 2
    # The app reads the number of server processes from the environment (its pool size and
    # its metrics mode follow it), as under `make serve`; uvicorn's processes inherit it.
    os.environ["UVICORN_WORKERS"] = str(args.workers)
    # The service writes one JSON line per request itself: uvicorn's access log would double it.
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
    )
    return ""


HANDLERS: dict[str, Callable[[argparse.Namespace], str]] = {
    "serve": serve,
    "ops": run_ops,
    "jobs": run_jobs,
    "functions": run_functions,
    **dict.fromkeys(COMMANDS, run_compute),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autodiff`` console script; returns the exit status.

    0: done; 1: the service or the computation refused (a problem, an unreachable server);
    2: the command line is wrong (argparse's own status for usage errors).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    args = build_parser(json_errors=as_json).parse_args(argv)
    try:
        out = HANDLERS[args.command](args)
    except CLIError as exc:
        return _fail(str(exc), exc.problem, exc.status, as_json)
    except AutodiffHTTPError as exc:
        where = _where(exc.errors[0].get("loc"), exc.detail) if exc.errors else ""
        message = f"{exc.status} {exc.title}: {exc.detail}{where}"
        return _fail(message, {"status": exc.status, **exc.problem}, EXIT_ERROR, as_json)
    except httpx.HTTPError as exc:
        message = f"cannot reach {getattr(args, 'url', '')}: {exc}"
        problem = {"type": "urn:autodiff:problem:unreachable", "title": "Cannot reach the service"}
        return _fail(message, {**problem, "detail": message}, EXIT_ERROR, as_json)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("AUTODIFF_DEBUG"):
            raise
        message = f"unexpected {type(exc).__name__}: {exc} (AUTODIFF_DEBUG=1 shows more)"
        problem = {"type": "about:blank", "title": "Internal error", "detail": message}
        return _fail(message, problem, EXIT_ERROR, as_json)
    if out:
        try:
            print(out)
        except BrokenPipeError:  # `autodiff ops | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fail(message: str, problem: dict[str, Any], status: int, as_json: bool) -> int:
    """Report an error on stderr: one line, or with ``--json`` one problem+json object."""
    if as_json:
        _print_problem(problem)
    else:
        print(f"autodiff: error: {message}", file=sys.stderr)
    return status


def _print_problem(problem: dict[str, Any]) -> None:
    # One line of strictly valid JSON (RFC 9457 fields; the problems here hold no NaN).
    print(json.dumps(problem, default=str, allow_nan=False, separators=(",", ":")), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
