"""`make invoke`: one function, one event, the environment `sam local invoke --env-vars` builds."""

import json
import socket
import subprocess
import sys
from pathlib import Path

from gasmon_local.functions import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "presence" / "template.yaml"


def invoke(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gasmon_local.invoke", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_seed_event_is_accepted_into_a_temporary_store_when_no_stack_runs(tmp_path: Path) -> None:
    # Given no running stack in the data dir, and the sample env file (which names a fixed /tmp store for sam)
    # When IngestFunction is invoked with the seed document, twice
    first, second = (
        invoke(
            "IngestFunction",
            str(ROOT / "events" / "ingest_seed_document.json"),
            "--data-dir",
            str(tmp_path),
            cwd=tmp_path,
        )
        for _ in range(2)
    )
    # Then each answers 200 with the seed's four readings accepted: a fresh temporary store each
    # time, never a file shared by every checkout (a second run would say duplicates)
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        response = json.loads(result.stdout)
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["accepted"] == 4
        assert "temporary store" in result.stderr


def test_a_running_stacks_store_is_used(tmp_path: Path) -> None:
    # Given a data dir whose endpoints.json names a stack that answers (a listening socket stands in)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        store = tmp_path / "stack-readings.sqlite3"
        endpoints = {
            "aws": f"http://127.0.0.1:{port}",
            "iot_data": f"http://127.0.0.1:{port}",
            "sqlite_path": str(store),
        }
        (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
        # When the seed document is invoked against that data dir
        result = invoke(
            "IngestFunction",
            str(ROOT / "events" / "ingest_seed_document.json"),
            "--data-dir",
            str(tmp_path),
            cwd=tmp_path,
        )
    # Then the readings land in the stack's own store
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout)["body"])["accepted"] == 4
    assert store.exists()


def test_a_missing_event_file_is_one_line_naming_what_was_expected(tmp_path: Path) -> None:
    result = invoke("IngestFunction", "events/nope.json", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no event file events/nope.json" in result.stderr and "events/ingest_seed_document.json" in result.stderr


def test_an_event_of_the_wrong_shape_is_one_line_naming_what_was_expected(tmp_path: Path) -> None:
    # Given a lifecycle event handed to the ingest function
    result = invoke(
        "IngestFunction",
        str(ROOT / "events" / "presence_disconnected_lost.json"),
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    # Then one line says an API Gateway event was expected, and nothing was invoked
    assert result.returncode == 2
    assert result.stdout == ""
    line = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert len(line) == 1 and "API Gateway proxy event" in line[0]
    assert "Traceback" not in result.stderr


def test_a_pair_event_is_invoked_once_per_message_in_order(tmp_path: Path) -> None:
    # Given the sample pair of duplicate disconnects for the presence recorder (no stack: its
    # DynamoDB calls fail, which the recorder reports in its answer or as an error document)
    result = invoke(
        "RecordPresenceFunction",
        str(ROOT / "events" / "presence_duplicate_pair.json"),
        "--template",
        str(FIXTURE),
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    # Then each message reached the recorder as one lifecycle event (an array handed over whole
    # would be dropped as malformed), and the shape check did not refuse the file
    assert "expects" not in result.stderr, result.stderr
    assert result.stdout.strip()
    assert "malformed_event" not in result.stdout


def test_template_env_file_and_function_section_layer_up(tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"Parameters": {"SHARED_SETTING": "from-file"}, "EchoFunction": {"JOINED": "own"}}))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"path": "/echo/x", "httpMethod": "GET"}))
    result = invoke(
        "EchoFunction",
        str(event),
        "--template",
        str(FIXTURE),
        "--env-vars",
        str(env_file),
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    env = json.loads(json.loads(result.stdout)["body"])["env"]
    assert env["SHARED_SETTING"] == "from-file"  # env file beats the template
    assert env["JOINED"] == "own"  # the function's own section beats Parameters
    assert env["QUEUE_ARN"].endswith(":gasmon-PresenceCheckQueue")  # template value, resolved


def test_an_unknown_function_is_named_with_the_choices(tmp_path: Path) -> None:
    result = invoke(
        "Nope", str(ROOT / "events" / "ingest_seed_document.json"), "--data-dir", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "IngestFunction" in result.stderr
