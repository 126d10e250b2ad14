"""`make invoke`: one function, one event, the environment `sam local invoke --env-vars` builds."""

import json
import subprocess
import sys
from pathlib import Path

from gasmon_local.functions import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "presence" / "template.yaml"


def invoke(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gasmon_local.invoke", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_seed_event_is_accepted_by_the_ingest_function(tmp_path: Path) -> None:
    # Given the sample event and an env file pointing the store into a scratch directory
    env_file = tmp_path / "env.json"
    parameters = json.loads((ROOT / "events" / "env.json").read_text())["Parameters"]
    parameters["SQLITE_PATH"] = str(tmp_path / "readings.sqlite3")
    env_file.write_text(json.dumps({"Parameters": parameters}))
    # When IngestFunction is invoked with the seed document
    result = invoke(
        "IngestFunction",
        str(ROOT / "events" / "ingest_seed_document.json"),
        "--env-vars",
        str(env_file),
        "--data-dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    # Then it answers 200 with the seed's four readings accepted, stored where the env file said
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["accepted"] == 4
    assert (tmp_path / "readings.sqlite3").exists()


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
