"""Settings are read once from the environment; the OpenAPI spec is generated from the models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gasmon.policies import ingest_policy
from gasmon.settings import IngestSettings


def test_thresholds_parameter_overrides_some_gases_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the template's Thresholds parameter naming two gases, one in upper case
    monkeypatch.setenv("THRESHOLDS", '{"NO2": 50, "nh3": 25}')
    # When settings are read
    settings = IngestSettings()
    # Then those override, others keep the defaults
    assert settings.thresholds == {"no2": 50.0, "nh3": 25.0, "co": 35.0, "c2h5oh": 1000.0, "h2": 4000.0}
    assert ingest_policy(settings).thresholds["no2"] == 50.0


def test_a_bad_setting_fails_at_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ValidationError):
        IngestSettings()
    monkeypatch.setenv("LOCAL_TIMEZONE", "Asia/Seoul")
    monkeypatch.setenv("THRESHOLDS", '{"no2": -1}')
    with pytest.raises(ValidationError):
        IngestSettings()


def test_boto3_endpoint_variable_points_the_publisher_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOT_DATA_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_IOT_DATA", "http://127.0.0.1:3001")
    assert IngestSettings().iot_data_endpoint == "http://127.0.0.1:3001"


def test_openapi_spec_describes_the_readings_body_and_errors() -> None:
    from gasmon_local.openapi import build_spec

    spec = build_spec()
    post = spec["paths"]["/readings"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/ReadingDocument"} in body["anyOf"]
    document = spec["components"]["schemas"]["ReadingDocument"]
    assert document["additionalProperties"] == {"$ref": "#/components/schemas/GasSample"}
    assert set(post["responses"]) >= {"200", "400", "413", "422", "503"}
    assert "/gasdetector" not in spec["paths"]  # the seed's alias works but is not advertised
    assert spec["components"]["securitySchemes"]["api_key"]["name"] == "x-api-key"
