"""Cold start as deployed: the ingest function and its layer against the seed's own handler.

What runs, for each side, in one fresh interpreter per run (interleaved, so machine noise hits
both alike), timed from process start to the first POST's answer:

- gasmon: `functions/ingest_readings/` and a host-platform copy of the layer built by the same
  `layers/gasmon/Makefile` recipe `sam build` runs (pinned wheels, bytecode compiled ahead of
  time), on `sys.path` as Lambda puts them, in a virtualenv with nothing installed. Its
  environment is template.yaml's Globals and IngestFunction variables with the parameters'
  defaults, plus what Lambda itself sets with `Tracing: Active` (`_X_AMZN_TRACE_ID`, the X-Ray
  daemon address, LAMBDA_TASK_ROOT...). READING_STORE is OpenSearch, on a local stub that
  checks every request's SigV4 signature; the template's resources (ALARM_TABLE, the registry
  table the rate limiter counts in, the ARCHIVE_STREAM delivery stream) are on moto's server.
- baseline: `bench/seed003/app.py`, the seed's handler as seed 003 shows it (boto3 iot-data
  client at import, `requests.post` per document), in a virtualenv of its own with only boto3
  and requests at the layer's pinned versions.

The layer and both virtualenvs are cached in `.bench-cache/`, keyed by what they are built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"
LAYER = ROOT / "layers" / "gasmon"
FUNCTION = ROOT / "functions" / "ingest_readings"
SEED_FUNCTION = ROOT / "bench" / "seed003"
REGION = "ap-northeast-2"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
RUNS = 21  # at least 11; more, because this 2-core machine is shared and one run can take twice another

RUNNER = """
import json, sys
sys.path[:0] = [sys.argv[1]] + sys.argv[2:]
event = json.loads(sys.stdin.read())
import app
class Context:
    function_name = "gasmon-ingest"; memory_limit_in_mb = 512; aws_request_id = "bench-cold"
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-ingest"
    def get_remaining_time_in_millis(self): return 15000
answer = app.lambda_handler(event, Context())
print(json.dumps(answer))
"""


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            h.update(str(file.relative_to(ROOT)).encode())
            h.update(file.read_bytes())
    return h.hexdigest()[:16]


def _python313() -> str:
    """The interpreter this virtualenv was made from (pyenv's 3.13), for the clean ones."""
    return getattr(sys, "_base_executable", sys.executable)


def host_layer() -> Path:
    """The layer's `python/` folder, built for this machine by `layers/gasmon/Makefile`."""
    key = _digest(LAYER / "Makefile", LAYER / "requirements.txt", LAYER / "gasmon")
    built = CACHE / f"layer-{key}"
    if not (built / "python").is_dir():
        CACHE.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="layer-", dir=CACHE))
        print(f"  building the layer for this machine (layers/gasmon/Makefile) in {scratch}", file=sys.stderr)
        subprocess.run(
            # The recipe sam build runs, with the host's platform in place of manylinux aarch64.
            [
                "make",
                "-s",
                "-C",
                str(LAYER),
                "build-GasmonLayer",
                f"ARTIFACTS_DIR={scratch}",
                "PLATFORM=--only-binary=:all:",
            ],
            check=True,
            env=os.environ | {"PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.13.0")},
        )
        shutil.rmtree(built, ignore_errors=True)
        scratch.rename(built)
        for stale in CACHE.glob("layer-*"):  # builds of older sources
            if stale != built and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return built / "python"


def clean_venv(name: str, packages: list[str]) -> Path:
    """A virtualenv with only `packages` (pinned by the layer's requirements); its python."""
    constraints = LAYER / "requirements.txt"
    key = _digest(constraints, extra=f"{name}:{packages}:{sys.version}")
    home = CACHE / f"venv-{name}-{key}"
    python = home / "bin" / "python"
    if not (home / ".ready").exists():
        shutil.rmtree(home, ignore_errors=True)
        print(f"  creating the {name} virtualenv {home}", file=sys.stderr)
        subprocess.run(
            [_python313(), "-m", "venv", *(["--without-pip"] if not packages else []), str(home)], check=True
        )
        if packages:
            pins = home / "constraints.txt"  # the layer's pins; pip's constraints take no extras
            pins.write_text(re.sub(r"\[[^\]]*\]", "", constraints.read_text()))
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(pins), *packages],
                check=True,
            )
        (home / ".ready").touch()
    return python


class SigV4Stub:
    """OpenSearch's `_bulk` and index-template APIs on 127.0.0.1, checking SigV4 like the domain.

    A signed request is re-signed here with botocore's own SigV4 over the headers it names, and
    refused with 403 unless the signatures match. Unsigned requests are accepted only on
    `/<index>/_doc`, the seed's open domain. Counts what it saw, for the bench's checks.

    ISM policies are kept, as the domain keeps them: the first cold start of a run installs
    gasmon's setup, the later ones find it (the retention policy's setup marker) as every cold
    start after a deployment's first does.
    """

    def __init__(self, credentials: dict[str, str], region: str = REGION) -> None:
        from botocore.credentials import Credentials

        self.credentials = Credentials(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"])
        self.region = region
        self.counts = {"signed": 0, "unsigned": 0, "refused": 0, "bulk": 0, "documents": 0, "bytes": 0}
        self.lock = threading.Lock()
        self.policies: dict[str, dict[str, Any]] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # As OpenSearch's own HTTP server does (TCP_NODELAY): without it every answer on a
            # kept-alive connection waits ~40 ms for the client's delayed ACK (Nagle), which
            # charged a client reusing its connection and spared one opening a new one per request.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None: ...

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = stub.handle(self.command, self.path, dict(self.headers.items()), body)
                self._answer(status, answer)

            do_GET = do_POST = do_PUT = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SigV4Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def signature_ok(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        lower = {k.lower(): v for k, v in headers.items()}
        auth = lower.get("authorization", "")
        try:
            scheme, rest = auth.split(" ", 1)
            parts = dict(p.strip().split("=", 1) for p in rest.split(","))
            _key, day, region, service, _ = parts["Credential"].split("/")
            signed = parts["SignedHeaders"].split(";")
        except (ValueError, KeyError):
            return False
        if scheme != "AWS4-HMAC-SHA256" or region != self.region or service != "es":
            return False
        request = AWSRequest(
            method=method, url=f"{self.url}{path}", data=body, headers={h: lower[h] for h in signed if h in lower}
        )
        request.context["timestamp"] = lower.get("x-amz-date", "")
        signer = SigV4Auth(self.credentials, service, region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return bool(lower.get("x-amz-date", "").startswith(day)) and expected == parts.get("Signature")

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        signed = any(k.lower() == "authorization" for k in headers)
        route = urlsplit(path).path
        with self.lock:
            if signed and not self.signature_ok(method, path, headers, body):
                self.counts["refused"] += 1
                return 403, {
                    "message": "The request signature we calculated does not match the signature you provided."
                }
            if not signed and not route.endswith("/_doc"):
                self.counts["refused"] += 1
                return 403, {"message": "no Authorization header"}
            self.counts["signed" if signed else "unsigned"] += 1
            self.counts["bytes"] += len(body)
            if route.endswith("/_bulk"):
                self.counts["bulk"] += 1
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                actions = lines[0::2]
                self.counts["documents"] += len(actions)
                items = [{kind: {"_id": meta["_id"], "status": 201}} for a in actions for kind, meta in a.items()]
                return 200, {"took": 1, "errors": False, "items": items}
            if route.startswith("/_plugins/_ism/policies/"):
                policy_id = route.rsplit("/", 1)[-1]
                meta = {"_id": policy_id, "_version": 1, "_seq_no": 0, "_primary_term": 1}
                if method == "PUT":
                    self.policies[policy_id] = json.loads(body)["policy"]
                    return 201, {**meta, "policy": {"policy": self.policies[policy_id]}}
                if policy_id in self.policies:
                    return 200, {**meta, "policy": self.policies[policy_id]}
                return 404, {"error": {"type": "status_exception", "reason": "Policy not found"}, "status": 404}
            if route.endswith("/_doc"):
                self.counts["documents"] += 1
                return 201, {"_id": "x", "result": "created"}
            return 200, {"acknowledged": True}


def ingest_stack(opensearch: str, stack_name: str) -> Any:
    """template.yaml with its parameter defaults, the OpenSearch endpoint on the stub."""
    from gasmon_local.template import Stack, StackContext

    return Stack.from_file(
        ROOT / "template.yaml",
        context=StackContext(stack_name=stack_name, region=REGION),
        parameter_overrides={"OpenSearchEndpoint": opensearch},
    )


def ingest_environment(opensearch: str, moto: str, table_prefix: str) -> dict[str, str]:
    """template.yaml's Globals + IngestFunction variables (parameter defaults), as Lambda sets them."""
    spec = ingest_stack(opensearch, table_prefix).functions()["IngestFunction"]
    return dict(spec.environment)


def lambda_environment(function_dir: Path, variables: dict[str, str], moto: str) -> dict[str, str]:
    """What the Lambda runtime adds for a python3.13 function with `Tracing: Active`."""
    return (
        {"PATH": "/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC"}
        | variables
        | CREDENTIALS
        | {
            "AWS_SESSION_TOKEN": "bench-token",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": "gasmon-ingest",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(function_dir),
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "_HANDLER": "app.lambda_handler",
            # Tracing: Active. The daemon address gets UDP on 127.0.0.1 that nobody reads.
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            # moto's server stands in for DynamoDB, Firehose and IoT (boto3's standard variables).
            "AWS_ENDPOINT_URL_DYNAMODB": moto,
            "AWS_ENDPOINT_URL_FIREHOSE": moto,
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": moto,
            "AWS_ENDPOINT_URL_IOT": moto,
        }
    )


def seed_event(at: datetime) -> dict[str, Any]:
    sample = json.loads((ROOT / "events" / "ingest_seed_document.json").read_text())
    document = json.loads(sample["body"])
    stamp = (at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    for gas in ("co", "no2", "c2h5oh", "h2"):
        document[gas]["createdtime"] = stamp
    document["no2"]["value"] = "52.00"
    return sample | {"path": "/readings", "resource": "/readings", "body": json.dumps(document)}


def _once(python: Path, paths: list[str], env: dict[str, str], event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = subprocess.run(
        [str(python), "-c", RUNNER, *paths],
        input=json.dumps(event).encode(),
        env=env,
        cwd=paths[0],
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if answer.returncode != 0:
        raise RuntimeError(f"cold start run failed:\n{answer.stderr.decode()[-3000:]}")
    return elapsed, json.loads(answer.stdout.decode().strip().splitlines()[-1])


def measure(runs: int = RUNS, subsegments: bool = False) -> dict[str, Any]:
    """Median cold start of each side over `runs` interleaved fresh interpreters."""
    from gasmon_local.aws import MotoServer, create_resources

    layer = host_layer()
    gasmon_python = clean_venv("layer-only", [])
    seed_python = clean_venv("seed003", ["boto3", "requests"])
    moto = MotoServer(port=0)
    moto_url = moto.start()
    gasmon_ms: list[float] = []
    seed_ms: list[float] = []
    try:
        with SigV4Stub(CREDENTIALS) as stub:
            # A stack name of its own: moto keeps tables for the whole process, across servers.
            stack_name = f"bench{uuid.uuid4().hex[:6]}"
            variables = ingest_environment(stub.url, moto_url, stack_name)
            if subsegments:
                variables["POWERTOOLS_TRACE_DISABLED"] = "false"
            env = lambda_environment(FUNCTION, variables, moto_url)
            seed_env = lambda_environment(SEED_FUNCTION, {"OPENSEARCH_ENDPOINT": stub.url}, moto_url)
            with _credentials():  # the alarm and registry tables, the archive's stream and bucket
                problems = create_resources(ingest_stack(stub.url, stack_name), moto_url)
            if any(variables[name] in " ".join(problems) for name in ("ALARM_TABLE", "DEVICE_TABLE", "ARCHIVE_STREAM")):
                raise RuntimeError(f"moto refused a resource ingest uses: {problems}")
            now = datetime.now(UTC)
            for i in range(runs):
                event = seed_event(now - timedelta(seconds=runs - i))
                took, answer = _once(gasmon_python, [str(FUNCTION), str(layer)], env, event)
                if answer.get("statusCode") != 200 or json.loads(answer["body"]).get("accepted") != 4:
                    raise RuntimeError(f"gasmon's cold POST was not accepted: {answer}")
                gasmon_ms.append(took * 1000)
                took, answer = _once(seed_python, [str(SEED_FUNCTION)], seed_env, event)
                if answer.get("statusCode") != 200:
                    raise RuntimeError(f"the seed's cold POST failed: {answer}")
                seed_ms.append(took * 1000)
            if stub.counts["refused"] or stub.counts["signed"] < runs:
                raise RuntimeError(f"the OpenSearch stub refused or missed requests: {stub.counts}")
    finally:
        moto.stop()
    return {"gasmon": gasmon_ms, "seed": seed_ms}


class _credentials:
    """The bench's fake credentials in os.environ for the table set-up, then as they were."""

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in CREDENTIALS}
        os.environ.update(CREDENTIALS)

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(runs: int = RUNS) -> list[dict[str, Any]]:
    plain = measure(runs)
    traced = measure(runs, subsegments=True)
    label = "seed 003's handler: boto3 iot-data client at import, requests.post per document; own clean venv"
    return [
        {
            "metric": f"cold start as deployed: import + first 4-gas POST, median of {runs} fresh interpreters "
            "(host-built layer, clean venv, Tracing: Active, OpenSearch SigV4 stub, alarm and registry "
            "tables and archive stream on moto)",
            "value": statistics.median(plain["gasmon"]),
            "unit": "ms",
            "baseline": statistics.median(plain["seed"]),
            "baseline_label": label,
            "target": "<= 0.8x",
        },
        {
            "metric": "cold start as deployed, with X-Ray subsegments (TracingSubsegments=true: the SDK imported)",
            "value": statistics.median(traced["gasmon"]),
            "unit": "ms",
            "baseline": statistics.median(traced["seed"]),
            "baseline_label": label,
            "target": "report only",
        },
    ]


if __name__ == "__main__":
    result = measure(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
    for side, values in result.items():
        print(side, f"median {statistics.median(values):.1f} ms", [round(v) for v in values])
