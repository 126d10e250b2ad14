"""Print the REST API's OpenAPI spec, generated from the handlers' routes and models.

POST /readings validates its body per document in the domain (so a batch can be partly
accepted), so its request body schema is added here from `gasmon.models.ReadingPost`.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from pydantic import TypeAdapter

from gasmon.models import ErrorBody, ReadingPost
from gasmon_local.functions import load_function_module

API_FUNCTIONS = ("functions/ingest_readings", "functions/query_readings")
REF = "#/components/schemas/{model}"


def build_spec() -> dict[str, Any]:
    # One resolver holding every function's routes, so the functions' own apps stay untouched.
    app = APIGatewayRestResolver(enable_validation=True)
    for path in API_FUNCTIONS:
        function_app = load_function_module(path).app
        app._static_routes.extend(function_app._static_routes)
        app._dynamic_routes.extend(function_app._dynamic_routes)
    spec: dict[str, Any] = json.loads(app.get_openapi_json_schema(title="gasmon API", version="1.0.0"))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ReadingPost, ErrorBody):
        schema = TypeAdapter(model).json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        if schema.get("title") == "ErrorBody":
            schemas["ErrorBody"] = schema
        else:
            body_schema = schema
    spec["paths"]["/readings"]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": body_schema}},
    }
    spec["components"]["securitySchemes"] = {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
    spec["security"] = [{"api_key": []}]
    # API Gateway itself answers a request without a valid key, before any function runs.
    spec["components"]["schemas"]["GatewayError"] = {
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
    }
    gateway = {"$ref": REF.format(model="GatewayError")}
    for methods in spec["paths"].values():
        for operation in methods.values():
            responses = operation["responses"]
            responses["401"] = {
                "description": "No x-api-key: API Gateway's own answer, before the authorizer runs",
                "content": {"application/json": {"schema": gateway}},
            }
            # The authorizer's Deny (a revoked or unknown key, or the other role's key) is API
            # Gateway's answer too; a function's own 403 (a document of another device) keeps its body.
            own = responses.get("403", {}).get("content", {}).get("application/json", {}).get("schema")
            responses["403"] = {
                "description": "The key may not call this route (API Gateway), or "
                + (responses.get("403", {}).get("description") or "no function answer"),
                "content": {"application/json": {"schema": {"anyOf": [own, gateway]} if own else gateway}},
            }
    return spec


def main() -> None:
    print(json.dumps(build_spec(), indent=2))


if __name__ == "__main__":
    main()
