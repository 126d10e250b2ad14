"""What each function imports at cold start: only what its own requests need.

Cold start is measured in `make bench`, never timed here; these tests pin the cause instead: a
fresh interpreter imports the handler as Lambda does (function folder and layer on sys.path)
and the modules that must wait for a request that needs them are checked absent.
What a whole cold POST loads (no SDK client, no opensearch-py) is pinned by
tests/integration/test_cold_post_path.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The SDKs themselves (Powertools imports the bare `botocore` and `aws_xray_sdk` packages, <1 ms).
HEAVY_CLIENTS = {
    "boto3",
    "botocore.session",
    "botocore.client",
    "botocore.auth",
    "opensearchpy",
    "requests",
    "urllib3",
    "aws_xray_sdk.core",
}


def modules_after_import(function: str) -> set[str]:
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'functions' / function)!r}, {str(ROOT / 'layers' / 'gasmon')!r}]\n"
        "import app\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    environment = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "ap-northeast-2", "PATH": ""}
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment, cwd=ROOT
    )
    return set(json.loads(answer.stdout))


@pytest.mark.parametrize(
    ("function", "not_yet"),
    [
        (
            "ingest_readings",
            {
                "gasmon.presence_models",
                "gasmon.query_models",
                "gasmon.presence",
                "gasmon.query",
                # Powertools' other resolvers (and asyncio with AppSync's), and request validation
                # machinery no ingest route uses (gasmon.rest, `APIGatewayRestResolver()`).
                "aws_lambda_powertools.event_handler.appsync",
                "asyncio",
                "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
            },
        ),
        ("record_presence", {"gasmon.query_models", "gasmon.query"}),
        ("check_presence", {"gasmon.query_models", "gasmon.query"}),
        ("query_readings", {"gasmon.presence_models", "gasmon.presence"}),
        ("sweep_readings", {"gasmon.presence_models", "gasmon.query_models", "gasmon.ingest", "gasmon.alarms"}),
    ],
)
def test_a_function_imports_no_sdk_and_no_other_functions_models(function: str, not_yet: set[str]) -> None:
    loaded = modules_after_import(function)
    assert "gasmon.models" in loaded  # the check is looking at the right interpreter
    assert not loaded & HEAVY_CLIENTS, "SDK clients are imported on the first request that needs them"
    assert not loaded & not_yet


def modules_loaded_by(module: str) -> set[str]:
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'layers' / 'gasmon')!r}]\n"
        f"import {module}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(answer.stdout))


DOMAIN = {"gasmon.ingest", "gasmon.alarms", "gasmon.presence", "gasmon.query"}


def test_settings_sit_on_the_ground_floor() -> None:
    # Given settings are read at every cold start
    # When only the settings module is imported
    loaded = modules_loaded_by("gasmon.settings")
    # Then no use case it configures comes with it
    assert "gasmon.settings" in loaded
    assert not loaded & DOMAIN


@pytest.mark.parametrize(("module", "other"), [("gasmon.ingest", "gasmon.alarms"), ("gasmon.alarms", "gasmon.ingest")])
def test_ingest_and_alarms_do_not_import_each_other(module: str, other: str) -> None:
    # Given both share thresholds and reading identity through gasmon.readings
    loaded = modules_loaded_by(module)
    # Then importing one never loads the other
    assert "gasmon.readings" in loaded
    assert other not in loaded


def test_package_metadata_loads_only_when_something_reads_it() -> None:
    # Given a fresh interpreter that imports gasmon's models (pydantic imports importlib.metadata)
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'layers' / 'gasmon')!r}]\n"
        "from gasmon.models import GasThresholds\n"
        "GasThresholds(warning=1)\n"
        "before = 'zipfile' in sys.modules\n"
        "from importlib.metadata import version\n"
        "print(json.dumps([before, version('pydantic'), 'zipfile' in sys.modules]))\n"
    )
    environment = {"PYDANTIC_DISABLE_PLUGINS": "__all__", "PATH": ""}
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment, cwd=ROOT
    )
    before, pydantic_version, after = json.loads(answer.stdout)
    # Then a model validated without loading it, and the first reader still gets the real module
    assert before is False
    assert pydantic_version.startswith("2.") and after is True
