"""Configuration: TOML file, the local stack's endpoints file, environment overrides, and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gasmon_device.config import ConfigError, load_config, mqtt_host_port, readings_url

TOML = """
thing_name = "gasmon-pi-07"
groupid = "2"
gps = "37.61, 126.99"
interval_seconds = 10

[api]
endpoint = "https://abc123.execute-api.ap-northeast-2.amazonaws.com/Prod/readings"
api_key = "from-file"
batch_size = 50

[queue]
path = "/var/lib/gasmon/queue.sqlite3"
max_bytes = 1048576

[mqtt]
host = "xxxx-ats.iot.ap-northeast-2.amazonaws.com"
root_ca = "~/certs/Amazon-root-CA-1.pem"
cert = "~/certs/device.pem.crt"
key = "~/certs/private.pem.key"

[[sensors]]
gas = "co"
sensorid = "0005"
sensortype = "8"
channel = 0
curve = "MQ-7/CO"
r0_ohms = 10000

[[sensors]]
gas = "no2"
sensorid = "0006"
sensortype = "9"
"""


def write(tmp_path: Path, text: str, name: str = "device.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_file_is_read_and_the_environment_wins(tmp_path) -> None:
    # Given a config file and a few GASMON_* variables
    path = write(tmp_path, TOML)
    env = {"GASMON_API_KEY": "from-env", "GASMON_INTERVAL": "2.5", "GASMON_MQTT_PORT": "443"}

    # When the configuration is loaded
    config = load_config(path, environ=env)

    # Then the file's values apply, the environment overrides them, and defaults fill the rest
    assert (config.thing_name, config.groupid, config.gps) == ("gasmon-pi-07", "2", "37.61, 126.99")
    assert (config.api.api_key, config.api.batch_size, config.interval_seconds) == ("from-env", 50, 2.5)
    assert config.queue.path == Path("/var/lib/gasmon/queue.sqlite3")
    assert (config.mqtt.port, config.mqtt.tls, config.mqtt.keepalive_seconds) == (443, True, 30)
    assert config.mqtt.root_ca == Path("~/certs/Amazon-root-CA-1.pem").expanduser()
    assert config.client_id == "gasmon-pi-07"
    assert [s.gas for s in config.sensors] == ["co", "no2"]
    assert config.sensors[0].r0_ohms == 10_000.0 and config.sensors[0].channel == 0


def test_the_local_stack_endpoints_file_points_the_device_at_make_local(tmp_path) -> None:
    # Given `make local`'s .local/endpoints.json
    endpoints = write(
        tmp_path,
        json.dumps(
            {
                "api": "http://127.0.0.1:3000",
                "mqtt": "mqtt://127.0.0.1:1883",
                "iot_data": "http://127.0.0.1:3001",
                "aws": "http://127.0.0.1:5000",
                "api_key": "local-key",
                "api_key_device": {"thing": "sim-pi-01", "groupid": "1"},
                "mail_dir": ".local/mail",
            }
        ),
        "endpoints.json",
    )

    # When it is asked for (--local), over a config file made for AWS
    config = load_config(write(tmp_path, TOML), endpoints_file=endpoints, environ={})

    # Then the API and broker are the local ones, without TLS
    assert config.api.endpoint == "http://127.0.0.1:3000/readings"
    assert config.api.api_key == "local-key"
    # And the device is the one the key belongs to (any other thing or group gets 403)
    assert (config.thing_name, config.groupid) == ("sim-pi-01", "1")
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("127.0.0.1", 1883, False)
    config.require_api()
    config.require_mqtt()


def test_defaults_need_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/gasmon")
    config = load_config(None, environ={"GASMON_ENDPOINT": "http://x/readings", "GASMON_API_KEY": "k"})
    assert config.queue.path == Path("/var/lib/gasmon/queue.sqlite3")
    assert [s.sensorid for s in config.sensors] == ["0005", "0006", "0007", "0008"]
    assert config.mqtt.warning_topic == "pi/1"
    assert config.mqtt.presence_topic == "my/things/{thing}/update"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("interval_seconds = 'often'", {}, "interval_seconds must be a number"),
        ("gps = '137.6, 126.9'", {}, "latitude, longitude"),
        ("timezone = 'Mars/Olympus'", {}, "not a known time zone"),
        ("[api]\nbatch_size = 501", {}, "batch_size must be at most 500"),
        ("[source]\nkind = 'csv'", {}, "needs csv_path"),
        ("[source]\nkind = 'lidar'", {}, "must be one of simulated, csv, adc"),
        ("", {"GASMON_MQTT_PORT": "eighty"}, "GASMON_MQTT_PORT='eighty'"),
        ("not toml [", {}, "is not valid TOML"),
        ("[api]\nendpont = 'x'", {}, "unknown setting [api] endpont (did you mean endpoint?)"),
        ("intervall_seconds = 3", {}, "did you mean interval_seconds"),
    ],
)
def test_mistakes_name_the_setting(tmp_path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text), environ=env)


def test_missing_endpoint_and_tls_files_are_explained(tmp_path) -> None:
    config = load_config(write(tmp_path, "[mqtt]\nhost = 'x-ats.iot.ap-northeast-2.amazonaws.com'\n"), environ={})
    with pytest.raises(ConfigError, match="GASMON_ENDPOINT"):
        config.require_api()
    with pytest.raises(ConfigError, match="root_ca is not set"):
        config.require_mqtt()
    missing = load_config(
        write(tmp_path, "[mqtt]\nhost = 'h'\nroot_ca = '/nope/ca.pem'\ncert = '/nope/c'\nkey = '/nope/k'\n"),
        environ={},
    )
    with pytest.raises(ConfigError, match="does not exist"):
        missing.require_mqtt()


def test_url_helpers() -> None:
    assert readings_url("http://127.0.0.1:3000/") == "http://127.0.0.1:3000/readings"
    assert readings_url("https://x/Prod/gasdetector") == "https://x/Prod/gasdetector"
    assert mqtt_host_port("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert mqtt_host_port("localhost:1884") == ("localhost", 1884)
    assert mqtt_host_port({"host": "h", "port": 1885}) == ("h", 1885)
    assert mqtt_host_port("broker") == ("broker", None)


def test_the_example_config_is_valid() -> None:
    # Given the example shipped next to the README
    example = Path(__file__).parent.parent / "config.example.toml"

    # When it is loaded
    config = load_config(example, environ={"GASMON_API_KEY": "k"})

    # Then it describes an AWS device with four ADC sensors
    assert config.mqtt.tls and config.mqtt.port == 8883 and config.mqtt.keepalive_seconds == 30
    assert [(s.gas, s.channel) for s in config.sensors] == [("co", 0), ("no2", 1), ("c2h5oh", 2), ("h2", 3)]
    assert config.queue.path == Path("/var/lib/gasmon/queue.sqlite3")
    config.require_api()
