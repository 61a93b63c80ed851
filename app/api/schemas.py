"""Request and response models of the HTTP contract (see API.md), with OpenAPI examples.

Array-valued fields are typed ``Any`` with a declared JSON schema: pydantic then
passes a million-element list through by reference instead of validating each
number in Python; ``app.compute.wire`` turns it into one NumPy array in one call.

Fields that hold arrays (``ARRAY``) or one entry per input name (``NAMED``) say so in
their annotation; the service's field lists (what a spilled body supplies, what the b64
cut looks at, what ``max_inputs`` caps) are read from these markers (``fields_with``).
They are plain ``Annotated`` metadata, which pydantic keeps on the field and leaves out
of the JSON schema: the OpenAPI document does not show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from fastapi.openapi.models import Example
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.api.errors import MEDIA_TYPE


@dataclass(frozen=True)
class FieldRole:
    """A marker in a request field's ``Annotated`` metadata: what the field holds."""

    name: str


# A stored function's id: a content hash (POST /functions).
FUNCTION_ID_PATTERN = r"^sha256:[0-9a-f]{64}$"

ARRAY = FieldRole("array")  # array values: decoded by the wire format, may be b64
NAMED = FieldRole("named")  # one entry per input name: capped by max_inputs

# The array forms (and the dtype, encoding and timing) are named components of the OpenAPI
# document (``NAMED_SCHEMAS``), referenced from every field that holds one, so a generated
# client has one type per form instead of an inlined copy per field. A field's schema
# carries only a marker naming its component; ``AutodiffAPI.openapi()`` turns the marker
# into a ``$ref`` (``ref_named_schemas``).
COMPONENT_REF = "x-autodiff-component"
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


_SCALAR = {"anyOf": [{"type": "number"}, _ref("NonFiniteNumber")]}
_DTYPE = _ref("Dtype")
NAMED_SCHEMAS: dict[str, dict[str, Any]] = {
    "Dtype": {
        "type": "string",
        "enum": ["float64", "float32", "complex128", "complex64"],
        "description": "An array's dtype.",
    },
    "ComplexArray": {
        "type": "object",
        "description": "A complex array in JSON: `re` and `im`, the real and imaginary parts "
        "(numbers or nested lists of one shape); `dtype` complex128 (default) or complex64. In "
        "b64 a complex array is its interleaved little-endian bytes (`B64Array`).",
        "properties": {
            "re": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "im": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "dtype": {"type": "string", "enum": ["complex128", "complex64"]},
        },
        "required": ["re", "im"],
    },
    "Encoding": {
        "type": "string",
        "enum": ["json", "b64"],
        "description": 'How the answer writes arrays: "json" (numbers and nested lists) or '
        '"b64" (B64Array objects).',
    },
    "TimingMs": {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "Milliseconds per phase: parse, decode, forward, backward (or the pass "
        "that ran: jacobian mode, hessian, hvp), check, encode, queue (time waiting for a "
        "worker; absent when the request ran in the server process) and total.",
    },
    "NonFiniteNumber": {
        "type": "string",
        "enum": ["nan", "inf", "-inf"],
        "description": "A number JSON cannot write: NaN, +infinity or -infinity.",
    },
    "Number": {
        "anyOf": _SCALAR["anyOf"],
        "description": "A number, or one of the strings nan, inf and -inf.",
    },
    # Not recursive (items would be Number or NestedList): openapi-python-client refuses a
    # recursive reference in an array's items and then drops every endpoint using it.
    "NestedList": {
        "type": "array",
        "items": {},
        "description": "A rectangular nested list of numbers (row-major, as numpy.array); "
        "its leaves are Numbers.",
    },
    "B64Array": {
        "type": "object",
        "description": "An array as raw little-endian bytes in base64, with its shape and "
        'dtype (what encoding="b64" answers).',
        "properties": {
            "dtype": _DTYPE,
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "b64": {"type": "string", "contentEncoding": "base64"},
        },
        "required": ["dtype", "shape", "b64"],
        "additionalProperties": False,
    },
    "ArrayObject": {
        "type": "object",
        "description": "An array as an object: `data` (a number or nested list) or `b64` "
        "(raw little-endian bytes, base64, with `shape`); `dtype` float64 (default) or float32; "
        "or a complex array: `re` and `im` (complex128 by default, or complex64), or `b64` of "
        "its interleaved bytes with a complex `dtype`.",
        "properties": {
            "data": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "re": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "im": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "b64": {"type": "string", "contentEncoding": "base64"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "dtype": {**_DTYPE, "default": "float64"},
        },
        "additionalProperties": False,
    },
    "InputObject": {
        "type": "object",
        "description": "An input as an object: an `ArrayObject` that may also say "
        "`requires_grad` (default true; false makes it a constant, with no gradient).",
        "properties": {
            "data": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "re": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "im": {"anyOf": [*_SCALAR["anyOf"], _ref("NestedList")]},
            "b64": {"type": "string", "contentEncoding": "base64"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "dtype": {**_DTYPE, "default": "float64"},
            "requires_grad": {"type": "boolean", "default": True},
        },
        "additionalProperties": False,
    },
    "InputArray": {
        "anyOf": [*_SCALAR["anyOf"], _ref("NestedList"), _ref("InputObject")],
        "description": "An input's value: a number, a nested list, or an InputObject.",
    },
    "Array": {
        "anyOf": [*_SCALAR["anyOf"], _ref("NestedList"), _ref("ArrayObject")],
        "description": "A cotangent, tangent or vector: a number, a nested list, or an "
        "ArrayObject.",
    },
    "OutputArray": {
        "anyOf": [
            *_SCALAR["anyOf"],
            _ref("NestedList"),
            _ref("B64Array"),
            _ref("ComplexArray"),
        ],
        "description": 'An answered array: a number, a nested list, or (encoding="b64") a '
        "B64Array; a complex array is a ComplexArray (a B64Array of complex dtype with "
        'encoding="b64"). Non-finite numbers are the strings nan, inf and -inf.',
    },
    "OutputValue": {
        "anyOf": [_ref("OutputArray"), {"type": "array", "items": _ref("OutputArray")}],
        "description": "An OutputArray, or for a function with several outputs a list with "
        "one OutputArray per output.",
    },
}


def _named(name: str, description: str | None = None) -> Any:
    """A schema that is the named component (a ``$ref`` in the document)."""
    schema: dict[str, Any] = {COMPONENT_REF: name}
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


def ref_named_schemas(node: Any) -> Any:
    """The document with every component marker replaced by a ``$ref`` to its component."""
    if isinstance(node, list):
        return [ref_named_schemas(item) for item in node]
    if not isinstance(node, dict):
        return node
    if COMPONENT_REF in node:
        rest = {k: v for k, v in node.items() if k != COMPONENT_REF}
        return {"$ref": _REF + node[COMPONENT_REF], **rest}
    return {key: ref_named_schemas(value) for key, value in node.items()}


ArrayValue = Annotated[Any, _named("Array")]
InputValue = Annotated[Any, _named("InputArray")]
OutputArrayValue = Annotated[Any, _named("OutputArray")]
NumberValue = Annotated[Any, _named("Number")]
ResultValue = Annotated[Any, _named("OutputValue")]
# A cotangent: one Array, or for several outputs a list of them.
CotangentValue = Annotated[
    Any,
    WithJsonSchema(
        {"anyOf": [{COMPONENT_REF: "Array"}, {"type": "array", "items": {COMPONENT_REF: "Array"}}]}
    ),
]


# --------------------------------------------------------------------------- requests
# Strict: pydantic's lax mode would take 0 or "no" for a boolean and so accept
# bodies that the documented schema (what clients and fuzzers read) forbids.
REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True)


class GraphNode(BaseModel):
    """One node of a JSON graph: an op applied to input names, node ids or literals."""

    model_config = REQUEST_CONFIG
    id: str = Field(description="Unique id of this node.")
    op: str = Field(description="Op name, as listed by GET /ops.")
    inputs: list[Any] = Field(
        default_factory=list,
        description="Positional arguments: an input name, another node's id, or a literal "
        '(a number or nested list; "nan", "inf" and "-inf" are the non-finite numbers).',
    )
    attrs: dict[str, Any] = Field(
        default_factory=dict,
        description='Keyword arguments of the op, e.g. {"axis": 0}; where a number is '
        'expected, "nan", "inf" and "-inf" are the non-finite numbers (e.g. {"ord": "inf"}).',
    )


class GraphSpec(BaseModel):
    """A function as a JSON DAG."""

    model_config = REQUEST_CONFIG
    nodes: list[GraphNode] = Field(description="The nodes, in any order (no cycles).")
    outputs: list[str] = Field(
        min_length=1, description="Ids of the output nodes (several give several outputs)."
    )


def _graph_option(value: Any) -> Any:
    # One clear error at include_graph, not one per member of the union.
    if value is True or value is False or value == "dot":
        return value
    raise ValueError('include_graph is true, false or "dot"')


GraphOption = Annotated[bool | Literal["dot"], BeforeValidator(_graph_option)]


class ComputeRequest(BaseModel):
    """What every compute endpoint takes: one function, its inputs, and options."""

    model_config = REQUEST_CONFIG
    expression: str | None = Field(
        None, description="Source text in the safe Python-like language (one of expression/graph)."
    )
    graph: GraphSpec | None = Field(
        None, description="The function as a JSON graph (one of expression/graph)."
    )
    inputs: Annotated[dict[str, InputValue], ARRAY, NAMED] = Field(
        description="A value for each free name: a number, a nested list, or an object "
        "with data or b64, dtype and requires_grad."
    )
    wrt: Annotated[list[str] | None, NAMED] = Field(
        None,
        description="Input names to differentiate with respect to "
        "(default: every input with requires_grad; on /jvp and /hvp, those given a "
        "direction). Naming an input with requires_grad false is a 422. A derivative with "
        "respect to input x is in x's dtype on every endpoint (a Hessian block for (x, y) in "
        "result_type(x, y); a JVP in the output's dtype).",
    )
    include_graph: GraphOption = Field(
        True,
        description='Add graph metadata to the answer; "dot" answers it as Graphviz DOT text '
        "(the same nodes, labelled with op, shape and dtype).",
    )
    check: bool = Field(
        False, description="Also compute the derivative by central finite differences."
    )
    holomorphic: bool = Field(
        False,
        description="For complex inputs (README, Complex numbers): the complex derivative "
        "df/dz of a holomorphic, complex-valued function (jax.grad/jacfwd/jacrev/hessian's "
        "holomorphic=True) on /grad, /jacobian, /hessian and /hvp. Without it a gradient "
        "needs a real-valued output and is JAX's df/dx - i df/dy, and a Jacobian or Hessian "
        "by complex inputs is refused (422).",
    )
    encoding: Annotated[Literal["json", "b64"], _named("Encoding")] = Field(
        "json", description='"b64" answers arrays as {"dtype","shape","b64"} objects.'
    )

    batch: Annotated[list[str] | None, NAMED] = Field(
        None,
        description="Input names whose leading axis is a batch of B evaluation points (the "
        "same B for all; the other inputs are shared by every point): the function and the "
        "endpoint's derivative are computed at every point in one vectorised pass, as JAX's "
        "vmap(transform(f), in_axes=0 or None). Every array in the answer gains a leading "
        "axis B: value (B, *output), gradients/vjp/hvp[name] (B, *input) for every "
        "differentiated input (a shared input's derivative is per point too), jvp (B, "
        "*output), jacobian[name] (B, *output, *input), hessian[a][b] (B, *a, *b). A "
        "cotangent, tangent or vector has the per-point shape (shared by every point) or a "
        "leading axis B (one per point); K directions (cotangents, tangents_batch, "
        "vectors_batch) are (K, *shape) shared or (B, K, *shape) per point, and the answer's "
        "axes are (B, K, ...). A batched input may be a constant (requires_grad false). "
        "Where control flow (an if/while condition, a range bound, an index) differs "
        "between points, the points are grouped by the branch they take and each group runs "
        "in its own pass (at most 64 groups, else a 422 naming the condition). Refused "
        "(422): an empty list, a name that is not an input or is repeated, a scalar input, "
        "B = 0, batched inputs whose leading axes differ.",
        examples=[["x"]],
    )
    function: str | None = Field(
        None,
        pattern=FUNCTION_ID_PATTERN,
        description="The id of a stored function (POST /functions), in place of "
        "expression/graph: its constants are bound, and inputs carries only the rest. An "
        "unknown or evicted id is a 404 of type urn:autodiff:problem:unknown-function.",
        examples=["sha256:" + "0" * 64],
    )

    @model_validator(mode="after")
    def _one_function(self) -> ComputeRequest:
        given = [self.expression is not None, self.graph is not None, self.function is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'expression', 'graph' or 'function'")
        return self


def one_of(model: BaseModel, single: str, batch: str) -> None:
    """Exactly one of a single direction field and its K-direction form."""
    if (getattr(model, single) is None) == (getattr(model, batch) is None):
        raise ValueError(f"give exactly one of '{single}' or '{batch}'")


class GradRequest(ComputeRequest):
    """Gradient of a scalar output, or a VJP when a cotangent is given."""

    cotangent: Annotated[CotangentValue | None, ARRAY] = Field(
        None,
        description="Cotangent of the output (a list of them for several outputs); "
        "required when the output is not a scalar. Several scalar outputs without it give "
        "the gradient of their sum (torch.autograd.backward([y1, y2])), and warnings says so."
        " With batch: the per-point shape (shared by every point) or a leading axis B (one "
        "per point).",
    )


class VjpRequest(ComputeRequest):
    """Vector-Jacobian product."""

    cotangent: Annotated[CotangentValue | None, ARRAY] = Field(
        None,
        description="Cotangent of the output's shape; a list of them for several outputs. "
        "Exactly one of cotangent and cotangents."
        " With batch: the per-point shape (shared by every point) or a leading axis B (one "
        "per point).",
    )
    cotangents: Annotated[ArrayValue | None, ARRAY] = Field(
        None,
        description="K cotangents in one pass: one array whose leading axis is K, or a list "
        "of K cotangents (for several outputs, a list of K entries, each a list with one "
        "cotangent per output). The answer's vjp[name] is then (K, *input.shape); value "
        "keeps its shape."
        " With batch: (K, *shape) shared by every point or (B, K, *shape) per point; the "
        "answer is (B, K, ...).",
    )

    @model_validator(mode="after")
    def _one_cotangent(self) -> VjpRequest:
        one_of(self, "cotangent", "cotangents")
        return self


class JvpRequest(ComputeRequest):
    """Jacobian-vector product (forward mode)."""

    # None when the other form is given (left out of the schema: send one form)
    tangents: Annotated[dict[str, ArrayValue] | SkipJsonSchema[None], ARRAY, NAMED] = Field(
        None,
        description="A tangent per input name, of that input's shape; these inputs are the "
        "directions (wrt defaults to them). An entry for a constant (requires_grad false, or "
        "not in wrt) contributes nothing: it is ignored, and warnings says so. The answer's "
        "jvp is in the output's dtype. Exactly one of tangents and tangents_batch."
        " With batch: the per-point shape (shared by every point) or a leading axis B (one "
        "per point).",
    )
    # None when the other form is given (left out of the schema: send one form)
    tangents_batch: Annotated[dict[str, ArrayValue] | SkipJsonSchema[None], ARRAY, NAMED] = Field(
        None,
        description="K tangents per input name, each (K, *input.shape) (one array, or a list "
        "of K), the same K for every input: K products in one forward pass. The answer's "
        "jvp is then (K, *output.shape); value keeps its shape."
        " With batch: (K, *shape) shared by every point or (B, K, *shape) per point; the "
        "answer is (B, K, ...).",
    )

    @model_validator(mode="after")
    def _one_tangent(self) -> JvpRequest:
        one_of(self, "tangents", "tangents_batch")
        return self


class JacobianRequest(ComputeRequest):
    """Full Jacobian of every output with respect to every wrt input."""

    mode: Literal["auto", "reverse", "forward"] = Field(
        "auto",
        description="auto picks reverse when the output is smaller than the input, else forward.",
    )


class HessianRequest(ComputeRequest):
    """Hessian of a scalar output."""


class HvpRequest(ComputeRequest):
    """Hessian-vector product without forming the Hessian."""

    # None when the other form is given (left out of the schema: send one form)
    vectors: Annotated[dict[str, ArrayValue] | SkipJsonSchema[None], ARRAY, NAMED] = Field(
        None,
        description="The vector, as one array per input name, of that input's shape "
        "(wrt defaults to these inputs). An entry for a constant (requires_grad false, or "
        "not in wrt) contributes nothing: it is ignored, and warnings says so. Exactly one "
        "of vectors and vectors_batch."
        " With batch: the per-point shape (shared by every point) or a leading axis B (one "
        "per point).",
    )
    # None when the other form is given (left out of the schema: send one form)
    vectors_batch: Annotated[dict[str, ArrayValue] | SkipJsonSchema[None], ARRAY, NAMED] = Field(
        None,
        description="K vectors per input name, each (K, *input.shape), the same K for every "
        "input: K Hessian-vector products in one pass; hvp[name] is then (K, *input.shape)."
        " With batch: (K, *shape) shared by every point or (B, K, *shape) per point; the "
        "answer is (B, K, ...).",
    )

    @model_validator(mode="after")
    def _one_vector(self) -> HvpRequest:
        one_of(self, "vectors", "vectors_batch")
        return self


class FunctionRequest(BaseModel):
    """A function to store once, with its constants (POST /functions)."""

    model_config = REQUEST_CONFIG
    expression: str | None = Field(
        None, description="Source text in the safe Python-like language (one of expression/graph)."
    )
    graph: GraphSpec | None = Field(
        None, description="The function as a JSON graph (one of expression/graph)."
    )
    constants: dict[str, InputValue] = Field(
        default_factory=dict,
        description="Values bound to some of the function's free names, in the same forms as "
        "inputs (a list, data or b64), never differentiated (requires_grad true is refused). "
        "Decoded once; calls then send only the other inputs.",
    )

    @model_validator(mode="after")
    def _one_function(self) -> FunctionRequest:
        if (self.expression is None) == (self.graph is None):
            raise ValueError("give exactly one of 'expression' or 'graph'")
        return self


class ConstantInfo(BaseModel):
    """A stored constant's dtype and shape."""

    dtype: str = Field(description="float64 or float32.")
    shape: list[int] = Field(description="The constant's shape.")


class StoredFunction(BaseModel):
    """A stored function's metadata."""

    id: str = Field(
        description='"sha256:" and the hex SHA-256 of the canonical function and constants: '
        "the same for the same function and constants on any replica, whatever encoding "
        "carried them."
    )
    free_inputs: list[str] = Field(
        description="The function's free names that are not constants: what inputs must give."
    )
    constants: dict[str, ConstantInfo] = Field(description="The stored constants by name.")
    expression: str | None = Field(description="The source, when stored as an expression.")
    graph: dict[str, Any] | None = Field(description="The graph, when stored as a graph.")
    bytes: int = Field(description="Bytes of constant data stored.")
    warnings: list[str] = Field(description="Constants the function never uses, and similar.")


@cache
def fields_with(model: type[BaseModel], role: FieldRole) -> tuple[str, ...]:
    """The fields of ``model`` marked with ``role``, in declaration order."""
    return tuple(name for name, info in model.model_fields.items() if role in info.metadata)


def request_fields_with(role: FieldRole) -> tuple[str, ...]:
    """The fields marked with ``role`` in any compute request model."""
    models = (ComputeRequest, *ComputeRequest.__subclasses__())
    return tuple(dict.fromkeys(name for m in models for name in fields_with(m, role)))


# --------------------------------------------------------------------------- responses


class GraphNodeInfo(BaseModel):
    """One recorded node of the traced graph."""

    id: str = Field(description="Node id.")
    op: str = Field(description='Op name; "input" or "constant" for leaves.')
    inputs: list[str] = Field(description="Ids of the nodes this one reads.")
    shape: list[int] = Field(description="Shape of the node's value.")
    dtype: str = Field(description="dtype of the node's value.")
    requires_grad: bool = Field(
        description="Whether a gradient flows through this node (PyTorch's propagation: the "
        "same on every endpoint for the same function and inputs)."
    )
    is_leaf: bool = Field(description="True for inputs and constants.")
    grad_fn: str | None = Field(description="Name of the backward rule; null for leaves.")


class GraphInfo(BaseModel):
    """Metadata of the graph the inputs took (define-by-run)."""

    nodes: list[GraphNodeInfo] = Field(description="The nodes (cut past the configured count).")
    outputs: list[str] = Field(description="Ids of the output nodes.")
    num_nodes: int = Field(description="Exact number of nodes.")
    num_edges: int = Field(description="Exact number of edges.")
    depth: int = Field(description="Longest path from an input to an output.")
    truncated: bool = Field(False, description="True when the node list was cut.")


class CheckResult(BaseModel):
    """Agreement of the derivative with central finite differences."""

    max_abs_error: NumberValue = Field(description="Largest absolute difference.")
    max_rel_error: NumberValue = Field(description="Largest difference relative to the scale.")
    directions: int = Field(description="Directions along which differences were taken.")


class ComputeResponse(BaseModel):
    """Fields every compute answer has."""

    value: ResultValue = Field(description="The function's output (a list for several outputs).")
    graph: GraphInfo | str | None = Field(
        None, description='Graph metadata (include_graph); DOT text with include_graph "dot".'
    )
    check: CheckResult | None = Field(None, description="Finite-difference check (check).")
    timing_ms: Annotated[dict[str, float], _named("TimingMs")] = Field(
        description="Milliseconds per phase (see TimingMs)."
    )
    warnings: list[str] | None = Field(
        None,
        description="Non-finite values, unused inputs, directions given for constants "
        "(ignored), several outputs summed without a cotangent, and similar notes.",
    )


class GradResponse(ComputeResponse):
    """The value and the gradient of each differentiated input."""

    gradients: dict[str, OutputArrayValue] = Field(
        description="Gradient by input name, each in its input's dtype."
    )


class VjpResponse(ComputeResponse):
    """The value and the vector-Jacobian product by input name."""

    vjp: dict[str, OutputArrayValue] = Field(description="VJP by input name, in its input's dtype.")


class JvpResponse(ComputeResponse):
    """The value and the Jacobian-vector product."""

    jvp: ResultValue = Field(
        description="JVP, of the output's shape and dtype (a list for several)."
    )


class JacobianResponse(ComputeResponse):
    """The value and the Jacobian by input name."""

    jacobian: dict[str, ResultValue] = Field(
        description="Jacobian by input name, shape output.shape + input.shape, in the "
        "input's dtype (a list with one per output for several outputs)."
    )
    mode: Literal["reverse", "forward"] = Field(description="The mode that ran.")


class HessianResponse(ComputeResponse):
    """The value, the gradient and the Hessian by pairs of input names."""

    gradients: dict[str, OutputArrayValue] = Field(
        description="Gradient by input name, each in its input's dtype."
    )
    hessian: dict[str, dict[str, OutputArrayValue]] = Field(
        description='hessian["x"]["y"] has shape x.shape + y.shape and dtype result_type(x, y).'
    )


class HvpResponse(ComputeResponse):
    """The value and the Hessian-vector product by input name."""

    hvp: dict[str, OutputArrayValue] = Field(description="HVP by input name, in its input's dtype.")


class Problem(BaseModel):
    """An error (RFC 9457 problem+json)."""

    type: str = Field(description="URI naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong in this request.")
    errors: list[dict[str, Any]] | None = Field(
        None,
        description="Each {loc, msg}: loc is a body path, a source position {line, column} "
        "or a graph node {node}.",
    )


PROBLEM_TEXT = {
    400: "The body could not be read (a broken chunked encoding or connection).",
    401: "API key missing or wrong (only when API keys are configured).",
    408: "The body arrived too slowly (body_timeout_s); the connection is closed.",
    413: "Body, input, number of inputs or intermediate result over the configured limits.",
    422: "Invalid body, syntax error, unknown name or op, shape mismatch, iteration limit.",
    500: "An internal error (never a traceback); quote the X-Request-ID header.",
    502: "The worker running the request died; it was replaced.",
    503: "The work queue is full or the service is starting (see Retry-After).",
    504: "The computation ran past the time limit; its worker was replaced.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}


def problem_responses(
    *statuses: int, text: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for these error statuses: the Problem schema as problem+json."""
    texts = {**PROBLEM_TEXT, **(text or {})}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        # "model" makes FastAPI emit the Problem component; AutodiffAPI.openapi() then
        # drops the application/json copy FastAPI adds beside the declared media type.
        entry: dict[str, Any] = {
            "description": texts[status],
            "model": Problem,
            "content": {MEDIA_TYPE: {}},
        }
        if status == 503:
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


class OpInfo(BaseModel):
    """One op of the language."""

    name: str = Field(description="NumPy name of the op.")
    signature: str = Field(description="Parameters and defaults.")
    differentiable: bool = Field(description="Whether gradients flow through it.")
    doc: str = Field(description="One-line description.")
    aliases: list[str] = Field(description="Other names of the same op.")


class OpsResponse(BaseModel):
    """Every op the language knows."""

    ops: list[OpInfo] = Field(description="The ops, by name.")


class Health(BaseModel):
    """Liveness or readiness."""

    status: str = Field(description='"ok" or "ready".')


# --------------------------------------------------------------------------- examples
# Taken from the worked examples (shared/examples/worked.json); the first of each
# endpoint is what Swagger UI's "Try it out" sends unedited.

_X4 = [0.0, 1.0, 2.0, 3.0]
_POLY = (
    "stack([x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2], 3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3, "
    "2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2])"
)
_CONTROL_FLOW = (
    "b = a * 2\nwhile norm(b) < 1000:\n    b = b * 2\nif sum(b) > 0:\n    c = b\n"
    "else:\n    c = 100 * b\nreturn sum(c)"
)


def _example(summary: str, value: dict[str, Any]) -> Example:
    return Example(summary=summary, value=value)


GRAD_EXAMPLES: dict[str, Example] = {
    "2dot": _example("2*dot(x, x)", {"expression": "2 * dot(x, x)", "inputs": {"x": _X4}}),
    "controlflow": _example(
        "Control flow (while, if)",
        {"expression": _CONTROL_FLOW, "inputs": {"a": [0.3, -0.2, 0.5, 0.1]}},
    ),
    "detach": _example(
        "detach: no gradient through u",
        {"expression": "u = detach(x * x)\nreturn sum(u * x)", "inputs": {"x": _X4}},
    ),
    "requires-grad-false": _example(
        "A constant input",
        {
            "expression": "sum(multiply(x, exp(c)))",
            "inputs": {
                "x": [1.0, 2.0, 3.0],
                "c": {"data": [0.1, 0.2, 0.3], "dtype": "float64", "requires_grad": False},
            },
        },
    ),
    "cotangent": _example(
        "Non-scalar output with a cotangent",
        {"expression": _POLY, "inputs": {"x": [1.0, 2.0, 3.0]}, "cotangent": [3.0, 2.0, 1.0]},
    ),
    "graph": _example(
        "2*dot(x, x) as a JSON graph",
        {
            "graph": {
                "nodes": [
                    {"id": "xx", "op": "dot", "inputs": ["x", "x"]},
                    {"id": "y", "op": "multiply", "inputs": ["xx", 2.0]},
                ],
                "outputs": ["y"],
            },
            "inputs": {"x": _X4},
        },
    ),
}
# Per-sample gradients (the classic use of ``batch``): a linear model's squared loss at each
# of 3 samples (x, y), the parameters w and b shared; each sample gets its own gradient.
_PER_SAMPLE = {
    "expression": "r = dot(w, x) + b - y\nreturn 0.5 * r * r",
    "inputs": {
        "w": [1.0, -1.0],
        "b": 0.5,
        "x": {"data": [[1.0, 2.0], [3.0, 1.0], [0.0, 2.0]], "requires_grad": False},
        "y": {"data": [0.0, 1.0, -2.0], "requires_grad": False},
    },
    "batch": ["x", "y"],
}
GRAD_EXAMPLES["per-sample-gradients"] = _example(
    "Per-sample gradients: batch over 3 samples (x, y), parameters shared", _PER_SAMPLE
)
VJP_EXAMPLES: dict[str, Example] = {
    "vjp-poly": _example(
        "The [17, 52, 81] VJP",
        {"expression": _POLY, "inputs": {"x": [1.0, 2.0, 3.0]}, "cotangent": [3.0, 2.0, 1.0]},
    ),
}
VJP_EXAMPLES["vjp-many"] = _example(
    "K = 3 cotangents in one pass (the rows of the Jacobian)",
    {
        "expression": _POLY,
        "inputs": {"x": [1.0, 2.0, 3.0]},
        "cotangents": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    },
)
JVP_EXAMPLES: dict[str, Example] = {
    "jvp-poly": _example(
        "Forward mode along [3, 2, 1]",
        {"expression": _POLY, "inputs": {"x": [1.0, 2.0, 3.0]}, "tangents": {"x": [3.0, 2.0, 1.0]}},
    ),
}
JVP_EXAMPLES["jvp-many"] = _example(
    "K = 2 tangents in one forward pass",
    {
        "expression": _POLY,
        "inputs": {"x": [1.0, 2.0, 3.0]},
        "tangents_batch": {"x": [[3.0, 2.0, 1.0], [0.0, 0.0, 1.0]]},
    },
)
JACOBIAN_EXAMPLES: dict[str, Example] = {
    "jacobian-poly": _example(
        "3x3 Jacobian", {"expression": _POLY, "inputs": {"x": [1.0, 2.0, 3.0]}, "mode": "auto"}
    ),
}
HESSIAN_EXAMPLES: dict[str, Example] = {
    "2dot": _example("2*dot(x, x)", {"expression": "2 * dot(x, x)", "inputs": {"x": _X4}}),
    "batch": _example(
        "A Hessian at each of 2 points (batch)",
        {"expression": "sum(x ** 3)", "inputs": {"x": [[1.0, 2.0], [3.0, -1.0]]}, "batch": ["x"]},
    ),
}
HVP_EXAMPLES: dict[str, Example] = {
    "2dot": _example(
        "2*dot(x, x) along v",
        {
            "expression": "2 * dot(x, x)",
            "inputs": {"x": _X4},
            "vectors": {"x": [1.0, 0.0, 0.0, 2.0]},
        },
    ),
}
HVP_EXAMPLES["hvp-many"] = _example(
    "K = 2 Hessian-vector products in one pass",
    {
        "expression": "sum(x ** 3)",
        "inputs": {"x": [1.0, 2.0, 3.0]},
        "vectors_batch": {"x": [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]},
    },
)

_WEIGHTS_DATA = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
FUNCTION_EXAMPLES: dict[str, Example] = {
    "least-squares": _example(
        "A least-squares loss with its data stored once",
        {
            "expression": "r = matmul(A, w) - b\nreturn 0.5 * sum(r * r)",
            "constants": {
                "A": _WEIGHTS_DATA,
                "b": {"data": [1.0, 0.0, 2.0], "dtype": "float64"},
            },
        },
    ),
}

# ---------------------------------------------------------------- response examples
# The answers to the request examples above, by the same names (Swagger UI and ReDoc show
# them beside the request); tests/app/api/test_openapi.py checks each against the service.
# The graph metadata is shown once, for the first example; timing_ms varies by machine.
_GRAPH_2DOT = {
    "nodes": [
        {
            "id": "x",
            "op": "input",
            "inputs": [],
            "shape": [4],
            "dtype": "float64",
            "requires_grad": True,
            "is_leaf": True,
            "grad_fn": None,
        },
        {
            "id": "dot_0",
            "op": "dot",
            "inputs": ["x", "x"],
            "shape": [],
            "dtype": "float64",
            "requires_grad": True,
            "is_leaf": False,
            "grad_fn": "dot_backward",
        },
        {
            "id": "multiply_1",
            "op": "multiply",
            "inputs": ["dot_0"],
            "shape": [],
            "dtype": "float64",
            "requires_grad": True,
            "is_leaf": False,
            "grad_fn": "multiply_backward",
        },
    ],
    "outputs": ["multiply_1"],
    "num_nodes": 3,
    "num_edges": 3,
    "depth": 2,
    "truncated": False,
}
_TIMING = {"parse": 0.01, "decode": 0.03, "forward": 0.2, "backward": 0.1, "encode": 0.05}
_TIMING = {**_TIMING, "total": 0.9}
_POLY_VALUE = [18.0, 38.0, 37.0]
_HESSIAN_2DOT = [[4.0 if i == j else 0.0 for j in range(4)] for i in range(4)]


def _answer(summary: str, value: dict[str, Any]) -> Example:
    return Example(summary=summary, value={**value, "timing_ms": _TIMING})


GRAD_ANSWERS: dict[str, Example] = {
    "2dot": _answer(
        "2*dot(x, x)",
        {"value": 28.0, "gradients": {"x": [0.0, 4.0, 8.0, 12.0]}, "graph": _GRAPH_2DOT},
    ),
    "controlflow": _answer(
        "Control flow (while, if)",
        {"value": 1433.6, "gradients": {"a": [2048.0, 2048.0, 2048.0, 2048.0]}},
    ),
    "detach": _answer(
        "detach: no gradient through u",
        {"value": 36.0, "gradients": {"x": [0.0, 1.0, 4.0, 9.0]}},
    ),
    "requires-grad-false": _answer(
        "A constant input: no gradient for c",
        {
            "value": 7.597552857123997,
            "gradients": {"x": [1.1051709180756477, 1.2214027581601699, 1.3498588075760032]},
        },
    ),
    "cotangent": _answer(
        "Non-scalar output with a cotangent",
        {"value": _POLY_VALUE, "gradients": {"x": [17.0, 52.0, 81.0]}},
    ),
    "graph": _answer(
        "2*dot(x, x) as a JSON graph", {"value": 28.0, "gradients": {"x": [0.0, 4.0, 8.0, 12.0]}}
    ),
}
# r = [-0.5, 1.5, 0.5] at the three samples: gradients r * x (w) and r (b)
GRAD_ANSWERS["per-sample-gradients"] = _answer(
    "One value and one gradient per sample (a leading axis B = 3)",
    {
        "value": [0.125, 1.125, 0.125],
        "gradients": {"w": [[-0.5, -1.0], [4.5, 1.5], [0.0, 1.0]], "b": [-0.5, 1.5, 0.5]},
    },
)
VJP_ANSWERS: dict[str, Example] = {
    "vjp-poly": _answer(
        "The [17, 52, 81] VJP", {"value": _POLY_VALUE, "vjp": {"x": [17.0, 52.0, 81.0]}}
    ),
}
JVP_ANSWERS: dict[str, Example] = {
    "jvp-poly": _answer(
        "Forward mode along [3, 2, 1]", {"value": _POLY_VALUE, "jvp": [28.0, 52.0, 48.0]}
    ),
}
JACOBIAN_ANSWERS: dict[str, Example] = {
    "jacobian-poly": _answer(
        "3x3 Jacobian (forward mode: as many inputs as outputs)",
        {
            "value": _POLY_VALUE,
            "jacobian": {"x": [[3.0, 8.0, 3.0], [3.0, 8.0, 27.0], [2.0, 12.0, 18.0]]},
            "mode": "forward",
        },
    ),
}
HESSIAN_ANSWERS: dict[str, Example] = {
    "2dot": _answer(
        "2*dot(x, x): 4 times the identity",
        {
            "value": 28.0,
            "gradients": {"x": [0.0, 4.0, 8.0, 12.0]},
            "hessian": {"x": {"x": _HESSIAN_2DOT}},
        },
    ),
    "batch": _answer(
        "diag(6 x) at each point: a leading axis B = 2",
        {
            "value": [9.0, 26.0],
            "gradients": {"x": [[3.0, 12.0], [27.0, 3.0]]},
            "hessian": {"x": {"x": [[[6.0, 0.0], [0.0, 12.0]], [[18.0, 0.0], [0.0, -6.0]]]}},
        },
    ),
}
HVP_ANSWERS: dict[str, Example] = {
    "2dot": _answer("2*dot(x, x) along v", {"value": 28.0, "hvp": {"x": [4.0, 0.0, 0.0, 8.0]}}),
}

# The answers to the K-direction examples (the Jacobian of _POLY at [1, 2, 3] is
# [[3, 8, 3], [3, 8, 27], [2, 12, 18]]; the Hessian of sum(x ** 3) is diag(6 x)).
VJP_ANSWERS["vjp-many"] = _answer(
    "The three rows of the Jacobian",
    {"value": _POLY_VALUE, "vjp": {"x": [[3.0, 8.0, 3.0], [3.0, 8.0, 27.0], [2.0, 12.0, 18.0]]}},
)
JVP_ANSWERS["jvp-many"] = _answer(
    "J along [3, 2, 1] and along [0, 0, 1]",
    {"value": _POLY_VALUE, "jvp": [[28.0, 52.0, 48.0], [3.0, 27.0, 18.0]]},
)
HVP_ANSWERS["hvp-many"] = _answer(
    "diag(6 x) times each vector",
    {"value": 36.0, "hvp": {"x": [[6.0, 0.0, 0.0], [0.0, 12.0, 18.0]]}},
)
