"""The static-dashboard function: the page's files, and nothing else, without an API key."""

from collections.abc import Callable
from typing import Any

import pytest

from gasmon_local.functions import load_handler

handler = load_handler("functions/serve_dashboard")


def get(api_event: Callable[..., dict[str, Any]], context: Any, path: str, stage_path: str | None = None):
    event = api_event("GET", path)
    event["requestContext"]["path"] = stage_path or f"/Prod{path}"
    return handler(event, context)


def header(result: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), values[-1])
    return str(headers.get(name.lower(), ""))


def test_the_page_is_served_at_the_root(api_event: Callable[..., dict[str, Any]], lambda_context: Any) -> None:
    result = get(api_event, lambda_context, "/")
    assert result["statusCode"] == 200
    assert header(result, "Content-Type").startswith("text/html")
    assert "<title>gasmon dashboard</title>" in result["body"]
    assert "script-src 'self'" in header(result, "Content-Security-Policy")


def test_the_stage_root_without_a_slash_redirects_so_relative_urls_work(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    result = get(api_event, lambda_context, "/", stage_path="/Prod")
    assert result["statusCode"] == 301
    assert header(result, "Location") == "/Prod/"


@pytest.mark.parametrize(
    ("path", "content_type", "text"),
    [
        ("/app.js", "text/javascript", "x-api-key"),
        ("/style.css", "text/css", "@media"),
        ("/vendor/chart.umd.min.js", "text/javascript", "Chart.js v4.5.1"),
        ("/vendor/chart.js.LICENSE.md", "text/plain", "MIT License"),
    ],
)
def test_the_page_files_are_served_with_their_types(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any, path: str, content_type: str, text: str
) -> None:
    result = get(api_event, lambda_context, path)
    assert result["statusCode"] == 200
    assert header(result, "Content-Type").startswith(content_type)
    assert text in result["body"]


@pytest.mark.parametrize("path", ["/nothing.js", "/app.py", "/..%2Fapp.py", "/vendor/..%2F..%2Ftemplate.yaml"])
def test_anything_else_is_a_404(api_event: Callable[..., dict[str, Any]], lambda_context: Any, path: str) -> None:
    result = get(api_event, lambda_context, path)
    assert result["statusCode"] == 404


@pytest.mark.parametrize("path", ["/", "/app.js", "/index.html"])
def test_the_page_may_connect_to_its_own_origin_only(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any, path: str
) -> None:
    # Given any file of the dashboard
    result = get(api_event, lambda_context, path)
    # Then its CSP lets scripts connect to this origin and nowhere else: the key cannot leave
    directives = dict(
        part.strip().split(" ", 1) for part in header(result, "Content-Security-Policy").split(";") if part.strip()
    )
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'self'"
