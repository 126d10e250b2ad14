"""A small simulated fleet for `make local`, until the device agent's simulator lands.

`run_fleet` has the signature of `gasmon_device.simulator.run_fleet`, so the local stack switches
to the real simulator by changing one import. Each virtual Raspberry Pi behaves like the seeds'
`pub.py` + `sub.py`:

- an MQTT client (paho, keep-alive 30 s) with a Last Will on `my/things/<thing>/update`
  `{"state":{"reported":{"connected":"false"}}}`; on connect it reports connected=true on the same
  topic and subscribes to the warning topic;
- every `interval` seconds it POSTs one seed-shaped reading (groupid, gps, co/no2/c2h5oh/h2 with
  sensorid, sensortype, value, createdtime in Asia/Seoul wall time) with the API key;
- now and then NO2 reaches 88 or more (the first device does so on its third reading, so a
  newcomer sees a warning within seconds);
- the last device drops its TCP connection without a DISCONNECT after about 20 s (the broker
  sends its Last Will and a CONNECTION_LOST lifecycle event, so presence mails about it) and comes
  back two minutes later.

On stop every device still connected disconnects cleanly (no alert).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger("fleet")
WARNING_TOPIC = "pi/1"
DROP_AFTER_SECONDS = 20.0
COME_BACK_AFTER_SECONDS = 120.0
SENSORS = {  # gas: (sensorid, sensortype, typical value), as in the seed
    "co": ("0005", "8", 26.0),
    "no2": ("0006", "9", 52.0),
    "c2h5oh": ("0007", "27", 26.0),
    "h2": ("0008", "30", 400.0),
}


def reading(groupid: str, gps: str, rng: random.Random, spike: bool, zone: str = "Asia/Seoul") -> dict[str, Any]:
    """One document as the seed's pub.py posts it (values as strings, local wall time)."""
    created = datetime.now(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
    document: dict[str, Any] = {"groupid": groupid, "gps": gps}
    for gas, (sensorid, sensortype, baseline) in SENSORS.items():
        value = baseline * rng.uniform(0.85, 1.15)
        if gas == "no2" and spike:
            value = rng.uniform(88.0, 120.0)
        value_text = f"{value:.2f}"
        document[gas] = {"sensorid": sensorid, "sensortype": sensortype, "value": value_text, "createdtime": created}
    return document


class SimulatedDevice:
    """One virtual Pi: an MQTT session with a Last Will, and periodic POSTs."""

    def __init__(self, index: int, api_url: str, api_key: str, mqtt_host: str, mqtt_port: int) -> None:
        self.index = index
        self.thing = f"sim-pi-{index}"
        self.api_url = api_url.rstrip("/") + "/readings"
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.rng = random.Random(index)
        self.gps = f"{37.61 + index * 0.01:.5f}, {126.99 + index * 0.01:.5f}"
        self.http = requests.Session()
        self.http.headers["x-api-key"] = api_key
        self.posts = 0
        self.client: mqtt.Client | None = None

    @property
    def update_topic(self) -> str:
        return f"my/things/{self.thing}/update"

    def connect(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.thing)
        client.will_set(self.update_topic, json.dumps({"state": {"reported": {"connected": "false"}}}), qos=1)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect(self.mqtt_host, self.mqtt_port, keepalive=30)
        client.loop_start()
        self.client = client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.publish(self.update_topic, json.dumps({"state": {"reported": {"connected": "true"}}}), qos=1)
        client.subscribe(WARNING_TOPIC, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self.index == 1:  # one device reporting what it hears is enough for the log
            log.info("%s heard on %s: %s", self.thing, message.topic, message.payload.decode(errors="replace"))

    def post(self) -> None:
        self.posts += 1
        spike = (self.index == 1 and self.posts == 3) or self.rng.random() < 0.05
        try:
            answer = self.http.post(self.api_url, json=reading(str(self.index), self.gps, self.rng, spike), timeout=10)
            if answer.status_code >= 400:
                log.warning("%s POST %s: %s", self.thing, answer.status_code, answer.text[:200])
        except requests.RequestException as exc:
            log.warning("%s POST failed: %s", self.thing, exc)

    def drop(self) -> None:
        """Lose the connection the hard way: no DISCONNECT packet, the socket just closes."""
        if self.client is None:
            return
        log.info("%s drops its connection without saying goodbye", self.thing)
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.client = None

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def run_fleet(
    api_url: str,
    api_key: str,
    mqtt_host: str,
    mqtt_port: int,
    devices: int = 3,
    interval: float = 5.0,
    stop_event: threading.Event | None = None,
) -> None:
    """Run `devices` simulated Pis until `stop_event` is set (blocks; run it in a thread)."""
    stop = stop_event or threading.Event()
    fleet = [SimulatedDevice(index, api_url, api_key, mqtt_host, mqtt_port) for index in range(1, devices + 1)]
    for device in fleet:
        device.connect()
    dropper = fleet[-1] if devices > 1 else None
    log.info("%d simulated devices post every %.0f s", devices, interval)
    started = time.monotonic()
    dropped_at: float | None = None
    try:
        while True:
            elapsed = time.monotonic() - started
            if dropper is not None and dropped_at is None and elapsed >= DROP_AFTER_SECONDS:
                dropper.drop()
                dropped_at = elapsed
            elif dropper is not None and dropped_at is not None and dropper.client is None:
                if elapsed - dropped_at >= COME_BACK_AFTER_SECONDS:
                    log.info("%s is back", dropper.thing)
                    dropper.connect()
            for device in fleet:
                if device.client is not None:
                    device.post()
            if stop.wait(interval):
                break
    finally:
        for device in fleet:
            device.disconnect()
