"""gasmon.rest: Powertools' REST resolver without the rest of its package, everything else on demand.

Each check runs in a fresh interpreter, since what matters is what a cold start imports.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> dict[str, object]:
    prelude = f"import json, sys\nsys.path[:0] = [{str(ROOT / 'layers' / 'gasmon')!r}]\n"
    answer = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return dict(json.loads(answer.stdout.strip().splitlines()[-1]))


def test_the_rest_resolver_comes_without_appsync_asyncio_or_every_event_class() -> None:
    # Given a fresh interpreter
    # When a function imports the resolver through gasmon.rest
    seen = run(
        "import gasmon.rest\n"
        "print(json.dumps({'appsync': 'aws_lambda_powertools.event_handler.appsync' in sys.modules,"
        " 'asyncio': 'asyncio' in sys.modules,"
        " 'sqs': 'aws_lambda_powertools.utilities.data_classes.sqs_event' in sys.modules,"
        " 'resolver': 'aws_lambda_powertools.event_handler.api_gateway' in sys.modules}))"
    )
    # Then the REST resolver is there and the resolvers and events it does not need are not
    assert seen == {"appsync": False, "asyncio": False, "sqs": False, "resolver": True}


def test_every_name_of_the_packages_still_imports_on_demand() -> None:
    # Given the lean packages are registered
    # When code asks them for names their __init__ exports, a submodule, or a name only __init__ defines
    seen = run(
        "import gasmon.rest\n"
        "from aws_lambda_powertools.event_handler import AppSyncResolver, APIGatewayRestResolver, content_types\n"
        "from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source\n"
        "import aws_lambda_powertools.event_handler as eh\n"
        "print(json.dumps({'appsync': AppSyncResolver.__name__, 'same': APIGatewayRestResolver is gasmon.rest"
        ".APIGatewayRestResolver, 'ct': content_types.APPLICATION_JSON, 'sqs': SQSEvent.__name__,"
        " 'all': sorted(eh.__all__)[:1]}))"
    )
    # Then each is the real one
    assert seen == {
        "appsync": "AppSyncResolver",
        "same": True,
        "ct": "application/json",
        "sqs": "SQSEvent",
        "all": ["ALBResolver"],
    }


def test_a_name_nobody_defines_is_still_an_attribute_error() -> None:
    seen = run(
        "import gasmon.rest, aws_lambda_powertools.event_handler as eh\n"
        "try:\n    eh.NoSuchThing\n    print(json.dumps({'raised': False}))\n"
        "except AttributeError:\n    print(json.dumps({'raised': True}))"
    )
    assert seen == {"raised": True}
