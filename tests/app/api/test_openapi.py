"""The OpenAPI document makes good clients (issue 19 item 3), checked on the document itself.

Operation ids are the endpoints' names; the array forms are named components referenced
everywhere (never inlined); answers are typed; the protected operations name the two key
schemes; every response example is what the service answers to the request example of the
same name; info carries the licence, a contact and the service's version.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from app.version import __version__

COMPUTE = ["grad", "vjp", "jvp", "jacobian", "hessian", "hvp"]
FORMS = ["NonFiniteNumber", "NestedList", "B64Array", "InputArray", "OutputArray", "Array"]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(create_app(Settings(_env_file=None))) as c:  # type: ignore[call-arg]
        yield c  # type: ignore[misc]


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in spec["paths"].items() for m, op in item.items()]


def test_operation_ids_are_the_endpoint_names(spec: dict[str, Any]) -> None:
    ids = {(path, method): op["operationId"] for path, method, op in operations(spec)}
    assert {ids[(f"/{name}", "post")] for name in COMPUTE} == set(COMPUTE)
    assert ids[("/ops", "get")] == "list_ops"
    assert ids[("/healthz", "get")] == "healthz" and ids[("/readyz", "get")] == "readyz"
    assert ids[("/metrics", "get")] == "metrics"
    assert len(set(ids.values())) == len(ids)  # unique, as the generators need


def test_array_forms_are_named_and_never_inlined(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert set(FORMS) <= set(schemas)
    text = json.dumps({k: v for k, v in schemas.items() if k != "NonFiniteNumber"})
    assert '["nan", "inf", "-inf"]' not in text  # the non-finite words only in their component
    assert "x-autodiff-component" not in json.dumps(spec)  # every marker became a $ref
    props = schemas["GradRequest"]["properties"]
    assert props["inputs"]["additionalProperties"] == {"$ref": "#/components/schemas/InputArray"}
    refs = {"$ref": "#/components/schemas/Array"}
    assert refs in props["cotangent"]["anyOf"]
    assert schemas["JvpRequest"]["properties"]["tangents"]["additionalProperties"] == refs
    assert schemas["HvpRequest"]["properties"]["vectors"]["additionalProperties"] == refs
    assert "B64Array" in json.dumps(schemas["OutputArray"])
    for name in FORMS:  # every named form is used somewhere else in the document
        others = json.dumps({k: v for k, v in schemas.items() if k != name})
        assert f'"#/components/schemas/{name}"' in others, name


def test_answers_are_typed(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    fields = {
        "GradResponse": "gradients",
        "VjpResponse": "vjp",
        "JvpResponse": "jvp",
        "JacobianResponse": "jacobian",
        "HessianResponse": "hessian",
        "HvpResponse": "hvp",
    }
    for model, field in fields.items():
        props = schemas[model]["properties"]
        assert {"value", "graph", "timing_ms", "warnings", field} <= set(props), model
        assert props["value"]["$ref"] == "#/components/schemas/OutputValue"
        assert props["graph"]["anyOf"][0] == {"$ref": "#/components/schemas/GraphInfo"}
        assert props["timing_ms"]["$ref"] == "#/components/schemas/TimingMs"
        assert "OutputArray" in json.dumps(props[field]) or "OutputValue" in json.dumps(
            props[field]
        )
    for name in COMPUTE:
        ok = spec["paths"][f"/{name}"]["post"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{name.capitalize()}Response"}


def test_security_schemes_cover_the_protected_operations_only(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    for path, _, op in operations(spec):
        if path.lstrip("/") in COMPUTE or path.startswith(("/functions", "/jobs")):
            assert {"HTTPBearer": []} in op["security"] and {"APIKeyHeader": []} in op["security"]
            assert "401" in op["responses"]
        else:  # health, ops, metrics never need a key
            assert "security" not in op and "401" not in op["responses"], path


def test_errors_are_documented_where_they_occur(spec: dict[str, Any]) -> None:
    for name in COMPUTE:
        responses = spec["paths"][f"/{name}"]["post"]["responses"]
        for status in ("401", "408", "413", "422", "503", "504"):
            assert responses[status]["content"] == {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (name, status)


def test_info_has_licence_contact_and_version(spec: dict[str, Any]) -> None:
    info = spec["info"]
    assert info["license"]["identifier"] == "MIT"
    assert info["contact"]["name"]
    assert info["version"] == __version__ and __version__ != "0+unknown"


def test_request_defaults_are_said_not_imposed(spec: dict[str, Any]) -> None:
    """openapi-typescript makes a property with a default required: requests say it in words."""
    props = spec["components"]["schemas"]["GradRequest"]["properties"]
    assert not [name for name, prop in props.items() if "default" in prop]
    assert props["include_graph"]["description"].endswith("Default: true.")
    assert props["encoding"]["description"].endswith('Default: "json".')


@pytest.mark.parametrize("name", COMPUTE)
def test_every_response_example_is_the_services_answer(
    client: TestClient, spec: dict[str, Any], name: str
) -> None:
    op = spec["paths"][f"/{name}"]["post"]
    requests = op["requestBody"]["content"]["application/json"]["examples"]
    answers = op["responses"]["200"]["content"]["application/json"]["examples"]
    assert set(answers) == set(requests), name
    for key, example in answers.items():
        documented = example["value"]
        real = client.post(f"/{name}", json=requests[key]["value"]).json()
        for field, value in documented.items():
            if field != "timing_ms":
                expected = pytest.approx(value) if isinstance(value, float) else value
                assert real[field] == expected, (name, key, field)
        assert set(documented["timing_ms"]) <= set(real["timing_ms"]) | {"backward"}
