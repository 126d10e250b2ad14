"""Shaping HTTP answers: every error is `ErrorBody` JSON with a code and field-level details."""

from __future__ import annotations

from gasmon.errors import GasmonError, InvalidReadingsError, MalformedJsonError
from gasmon.models import ErrorBody, Problem
from gasmon.rest import RequestValidationError, Response


def error_response(error: GasmonError, headers: dict[str, str] | None = None) -> Response[str]:
    """The JSON answer for a `GasmonError`, with its status code."""
    body = ErrorBody(error=error.message, code=error.code, details=error.details)
    return Response(
        status_code=error.status, content_type="application/json", body=body.model_dump_json(), headers=headers
    )


def problems_from_validation(error: RequestValidationError) -> GasmonError:
    """Turn Powertools' request validation failure into gasmon's field-level error."""
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        if item.get("type") == "json_invalid":
            return MalformedJsonError("the body is not valid JSON")
        # Powertools prefixes the source ("query", "body", "path"); keep the field path after it.
        path = ".".join(loc[1:] if loc and loc[0] in {"query", "body", "path", "header"} else loc)
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        if item.get("type") == "missing":
            message = "is required"
        problems.append(Problem(path=path, problem=message))
    return InvalidReadingsError("the request is invalid", problems)
