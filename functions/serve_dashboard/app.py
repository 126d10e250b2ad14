"""GET /, /{file}, /vendor/{file}: the dashboard's static files, served by the API itself.

The page is public (the API key is asked for in the browser, or handed over in a `#key=` viewer
link, and sent only to the query API on the page's own origin), so
these routes need no key. Only files that ship in `static/` (a link to the repository's
`dashboard/` folder, copied into the artifact by `sam build`) are served; anything else is 404.
"""

import os
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from gasmon.models import ErrorBody
from gasmon.observability import logger, tracer

app = APIGatewayRestResolver()

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}  # text only: binary bodies would need BinaryMediaTypes on the REST API
# Scripts, styles and API calls stay on this origin: the viewer key the page holds can never be
# sent to another one, whatever a crafted link or an injected script asks for.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def _root() -> Path:
    return Path(os.environ.get("DASHBOARD_DIR") or Path(__file__).resolve().parent / "static").resolve()


@cache
def _files() -> dict[str, Path]:
    """Every servable file by its URL path, listed once: a request can name nothing else."""
    root = _root()
    return {
        "/" + path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES and not path.name.startswith(".")
    }


def _serve(url_path: str) -> Response[Any]:
    path = _files().get(url_path)
    if path is None:
        body = ErrorBody(error=f"no file {url_path}", code="not_found")
        return Response(status_code=404, content_type="application/json", body=body.model_dump_json())
    content_type = CONTENT_TYPES[path.suffix]
    # The page and its code change with a deploy: revalidate them; the vendored library is pinned.
    cache_control = "public, max-age=86400" if url_path.startswith("/vendor/") else "no-cache"
    headers = {"Cache-Control": cache_control, **SECURITY_HEADERS}
    return Response(status_code=200, content_type=content_type, body=path.read_text("utf-8"), headers=headers)


@app.get("/")
def index() -> Response[Any]:
    # https://<api>/Prod and https://<api>/Prod/ both land here, but the page's relative URLs
    # (style.css, series, ...) resolve under the stage only from the second: send the first there.
    stage_path = str(app.current_event.request_context.path or "/")
    if not stage_path.endswith("/"):
        return Response(status_code=301, headers={"Location": f"{stage_path}/"}, body="")
    return _serve("/index.html")


@app.get("/<name>")
def top_level_file(name: str) -> Response[Any]:
    return _serve(f"/{name}")


@app.get("/vendor/<name>")
def vendored_file(name: str) -> Response[Any]:
    return _serve(f"/vendor/{name}")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point."""
    return app.resolve(event, context)
