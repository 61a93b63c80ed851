"""autodiff-client: a typed client for autodiff-service. NumPy arrays in, NumPy arrays out.

    from autodiff_client import Client
    with Client("http://127.0.0.1:8000") as ad:
        res = ad.grad("2 * dot(x, x)", {"x": np.arange(4.0)})
        res.value, res.gradients["x"]        # array(28.), array([0., 4., 8., 12.])

It speaks only HTTP (httpx) and depends on nothing from the service. Adapters for JAX,
PyTorch and SciPy are in ``autodiff_client.jax``, ``.torch`` and ``.scipy`` (extras).
"""

from autodiff_client._version import __version__
from autodiff_client.client import DEFAULT_TIMEOUT, AsyncClient, Client, JSONObject
from autodiff_client.codec import (
    B64_MIN_ELEMENTS,
    Array,
    ArrayLike,
    Encoding,
    Function,
    Result,
    StoredFunction,
    Value,
    build_body,
    decode_array,
    encode_array,
    parse_result,
)
from autodiff_client.endpoints import ENDPOINTS, Endpoint, JacobianOptions, Options
from autodiff_client.errors import AutodiffHTTPError
from autodiff_client.jobs import AsyncJob, Job

__all__ = [
    "B64_MIN_ELEMENTS",
    "DEFAULT_TIMEOUT",
    "ENDPOINTS",
    "Array",
    "ArrayLike",
    "AsyncClient",
    "AsyncJob",
    "AutodiffHTTPError",
    "Client",
    "Encoding",
    "Endpoint",
    "Function",
    "JSONObject",
    "Job",
    "JacobianOptions",
    "Options",
    "Result",
    "StoredFunction",
    "Value",
    "__version__",
    "build_body",
    "decode_array",
    "encode_array",
    "parse_result",
]
