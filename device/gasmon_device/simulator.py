"""A fleet of virtual Raspberry Pis for `make local`, the benches and the tests.

Each virtual device behaves like a real one running `gasmon-device`: it samples plausible gas
levels (`gasmon_device.profiles`: baseline, noise, drift, and NO2 plumes over the seed's threshold
of 88), queues every reading and posts batches through the publisher's own `Forwarder` and
`HttpSender`, and holds an MQTT connection with client id = thing name, the seed's Last Will, and
connected=true on every connect. Some devices leave now and then: unexpectedly (socket closed
without DISCONNECT, so the broker publishes the Last Will) or cleanly (connected=false, then
DISCONNECT). While away a device keeps sampling and delivers the backlog when it returns.

Entry point for other code::

    from .simulator import run_fleet
    stop = threading.Event()
    threading.Thread(target=run_fleet, kwargs=dict(
        api_url="http://127.0.0.1:3000", api_key=key, mqtt_host="127.0.0.1", mqtt_port=1883,
        devices=3, interval=5.0, stop_event=stop)).start()
    ...
    stop.set()

or, to control the fleet step by step, `Fleet(...)` with `start()`, `stop()` and `report()`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .backoff import Backoff
from .clock import Clock, SystemClock
from .config import DEFAULT_PRESENCE_TOPIC, MqttSettings, SensorSpec, readings_url
from .mqtt import DeviceConnection
from .profiles import DEFAULT_PROFILES, GasProfile
from .publisher import Forwarder, Sampler
from .queue import DiskQueue
from .sender import HttpSender
from .sources import SimulatedSource

logger = logging.getLogger(__name__)

Behaviour = Literal["steady", "drop", "clean"]
SEOUL = (37.61, 126.99)
SEED_SENSOR_TYPES = {"co": "8", "no2": "9", "c2h5oh": "27", "h2": "30"}


@dataclass(frozen=True)
class DevicePlan:
    """When a virtual device leaves and for how long.

    `drop` closes its socket without DISCONNECT (the Last Will fires; an unexpected disconnect);
    `clean` reports connected=false and sends DISCONNECT. It leaves `leave_after` seconds after the
    fleet starts and comes back after `away_for` seconds (None: it stays away). `spike_at_sample`
    guarantees a warning early in a demo instead of waiting for a random plume.
    """

    behaviour: Behaviour = "steady"
    leave_after: float = 20.0
    away_for: float | None = 90.0
    spike_at_sample: int | None = None  # force an NO2 plume over threshold on this sample (1-based)


def default_plans(devices: int) -> list[DevicePlan]:
    """The local stack's default: device 1 is steady and sends an NO2 plume over the threshold on its
    3rd reading (a warning within seconds), device 2 drops unexpectedly after 15 s and stays away
    90 s (past the 60 s presence grace, so a disconnect email goes out), device 3 leaves cleanly
    after 30 s for 20 s (no email), every other device is steady (and every 5th one drops too)."""
    plans = []
    for number in range(1, devices + 1):
        if number == 1:
            plans.append(DevicePlan("steady", spike_at_sample=3))
        elif number == 2:
            plans.append(DevicePlan("drop", leave_after=15.0, away_for=90.0))
        elif number == 3:
            plans.append(DevicePlan("clean", leave_after=30.0, away_for=20.0))
        elif number > 3 and number % 5 == 0:
            plans.append(DevicePlan("drop", leave_after=15.0 + number, away_for=90.0))
        else:
            plans.append(DevicePlan("steady"))
    return plans


def device_sensors(number: int) -> tuple[SensorSpec, ...]:
    """Sensor ids per device; device 1 has the seed's 0005-0008."""
    return tuple(
        SensorSpec(gas=gas, sensorid=f"{4 * number + 1 + offset:04d}", sensortype=kind)
        for offset, (gas, kind) in enumerate(SEED_SENSOR_TYPES.items())
    )


@dataclass
class DeviceReport:
    """What one virtual device did."""

    thing_name: str
    groupid: str
    behaviour: Behaviour
    samples: int = 0
    delivered: int = 0
    queued: int = 0
    dead_letters: int = 0
    connects: int = 0
    departures: list[str] = field(default_factory=list)


class VirtualDevice:
    """One simulated Pi: sampler + forwarder over an in-memory queue, and an MQTT connection."""

    def __init__(
        self,
        number: int,
        *,
        api_url: str,
        api_key: str,
        mqtt: MqttSettings | None,
        interval: float,
        plan: DevicePlan,
        seed: int,
        thing_prefix: str = "sim-pi",
        groupid: str | None = None,
        profiles: Mapping[str, GasProfile] | None = None,
        clock: Clock | None = None,
    ) -> None:
        rng = random.Random(seed)
        self.number = number
        self.thing_name = f"{thing_prefix}-{number:02d}"
        self.groupid = groupid or str(number)
        self.interval = interval
        self.plan = plan
        self.clock = clock or SystemClock()
        lat = SEOUL[0] + rng.uniform(-0.05, 0.05)
        lon = SEOUL[1] + rng.uniform(-0.05, 0.05)
        self.gps = f"{lat:.5f}, {lon:.5f}"
        self.sensors = device_sensors(number)
        self.source = SimulatedSource([s.gas for s in self.sensors], seed=rng.randrange(2**32), profiles=profiles)
        # A virtual device needs no durability: its queue lives in memory (budget 16 MB).
        self.queue = DiskQueue(":memory:", max_bytes=16 * 1024 * 1024)
        self.sender = HttpSender(readings_url(api_url), api_key, connect_timeout=3.0, read_timeout=10.0)
        self.forwarder = Forwarder(
            self.queue,
            self.sender,
            backoff=Backoff(base=min(1.0, interval), cap=max(5.0, 6 * interval), rng=random.Random(rng.random())),
            clock=self.clock,
            batch_size=100,
        )
        self.sampler = Sampler(
            self.source,
            self.queue,
            clock=self.clock,
            groupid=self.groupid,
            gps=self.gps,
            sensors=self.sensors,
            subsecond=interval < 1,
            deviceid=self.thing_name,
        )
        self.connection = (
            DeviceConnection(mqtt, self.thing_name, rng=random.Random(rng.random())) if mqtt is not None else None
        )
        self.online = True
        self.report = DeviceReport(self.thing_name, self.groupid, plan.behaviour)
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event, started_at: float, offset: float) -> None:
        if self.connection is not None:
            self.connection.start()
        self._thread = threading.Thread(
            target=self._run, args=(stop, started_at, offset), name=f"sim-{self.thing_name}", daemon=True
        )
        self._thread.start()

    def _run(self, stop: threading.Event, started_at: float, offset: float) -> None:
        stop.wait(offset)  # stagger devices so their posts do not arrive in step
        next_at = time.monotonic()
        left_at: float | None = None
        while not stop.is_set():
            elapsed = time.monotonic() - started_at
            if self.plan.behaviour != "steady":
                if self.online and left_at is None and elapsed >= self.plan.leave_after:
                    self._leave(clean=self.plan.behaviour == "clean")
                    left_at = elapsed
                elif (
                    not self.online
                    and left_at is not None
                    and self.plan.away_for is not None
                    and elapsed >= left_at + self.plan.away_for
                ):
                    self._return()
            try:
                if self.plan.spike_at_sample == self.sampler.taken + 1:
                    self.source.spike("no2")
                self.sampler.sample_once()
                self.report.samples = self.sampler.taken
                if self.online:
                    self.forwarder.drain(stop, max_batches=10)
            except Exception:  # one device's trouble must not end the fleet
                logger.exception("%s: sampling or sending failed", self.thing_name)
            next_at += self.interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    def _leave(self, clean: bool) -> None:
        self.online = False
        how = "cleanly (DISCONNECT)" if clean else "unexpectedly (socket closed, no DISCONNECT)"
        self.report.departures.append("clean" if clean else "drop")
        logger.warning("simulated device %s leaves %s", self.thing_name, how)
        if self.connection is not None:
            self.connection.leave(clean=clean)

    def _return(self) -> None:
        logger.info("simulated device %s is back; %d readings queued meanwhile", self.thing_name, self.queue.depth())
        self.online = True
        if self.connection is not None:
            self.connection.resume()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        if self.online:
            try:
                self.forwarder.drain(max_batches=5)  # best effort: deliver what is queued
            except Exception:
                logger.exception("%s: final send failed", self.thing_name)
        if self.connection is not None:
            self.connection.stop(timeout)
            self.report.connects = self.connection.connects
        health = self.queue.health()
        self.report.delivered = health.delivered + health.duplicates
        self.report.queued = health.depth
        self.report.dead_letters = health.dead_letters
        self.sender.close()
        self.queue.close()


class Fleet:
    """N virtual devices; see `run_fleet` for the parameters."""

    def __init__(
        self,
        api_url: str,
        api_key: str | Sequence[str],
        mqtt_host: str | None,
        mqtt_port: int = 1883,
        devices: int = 3,
        interval: float = 5.0,
        *,
        plans: Sequence[DevicePlan] | None = None,
        seed: int | None = None,
        thing_prefix: str = "sim-pi",
        groups: Sequence[str] | None = None,
        spike_probability: float | None = None,
        mqtt_settings: MqttSettings | Sequence[MqttSettings] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if devices < 1:
            raise ValueError("a fleet needs at least one device")
        if interval <= 0:
            raise ValueError("interval must be positive")
        # One key per device (each its own credential), or one key for every device.
        keys = [api_key] * devices if isinstance(api_key, str) else list(api_key)
        if len(keys) < devices:
            raise ValueError(f"{devices} devices need {devices} API keys, got {len(keys)}")
        plans = list(plans) if plans is not None else default_plans(devices)
        if len(plans) < devices:
            plans += [DevicePlan("steady")] * (devices - len(plans))
        # One MQTT connection setting for every device, or one per device (each with its own
        # certificate, as provisioned devices on a TLS listener need).
        per_device = list(mqtt_settings) if isinstance(mqtt_settings, Sequence) else None
        if per_device is not None and len(per_device) < devices:
            raise ValueError(f"{devices} devices need {devices} MQTT settings, got {len(per_device)}")
        mqtt: MqttSettings | None = None
        if mqtt_host and per_device is None:
            mqtt = (
                mqtt_settings
                if isinstance(mqtt_settings, MqttSettings)
                else MqttSettings(
                    host=mqtt_host,
                    port=mqtt_port,
                    tls=False,
                    clean_session=True,
                    presence_topic=DEFAULT_PRESENCE_TOPIC,
                    reconnect_base_seconds=1.0,
                    reconnect_cap_seconds=30.0,
                )
            )
        profiles = dict(DEFAULT_PROFILES)
        if spike_probability is not None:
            profiles["no2"] = replace(profiles["no2"], spike_probability=spike_probability)
        rng = random.Random(seed)
        self.interval = interval
        self.devices = [
            VirtualDevice(
                number,
                api_url=api_url,
                api_key=keys[number - 1],
                mqtt=per_device[number - 1] if per_device is not None and mqtt_host else mqtt,
                interval=interval,
                plan=plans[number - 1],
                seed=rng.randrange(2**32),
                thing_prefix=thing_prefix,
                groupid=groups[number - 1] if groups else None,
                profiles=profiles,
                clock=clock,
            )
            for number in range(1, devices + 1)
        ]
        self._stop = threading.Event()
        self._started = False

    def start(self) -> None:
        """Connect every device and start sampling; returns at once."""
        started_at = time.monotonic()
        for index, device in enumerate(self.devices):
            device.start(self._stop, started_at, offset=self.interval * index / len(self.devices))
        self._started = True
        logger.info(
            "simulated fleet started: %s",
            ", ".join(f"{d.thing_name} ({d.plan.behaviour})" for d in self.devices),
        )

    def stop(self) -> list[DeviceReport]:
        """Stop every device cleanly (connected=false, DISCONNECT) and return their reports."""
        self._stop.set()
        for device in self.devices:
            device.stop()
        return self.report()

    def report(self) -> list[DeviceReport]:
        return [device.report for device in self.devices]


def run_fleet(
    api_url: str,
    api_key: str | Sequence[str],
    mqtt_host: str | None,
    mqtt_port: int = 1883,
    devices: int = 3,
    interval: float = 5.0,
    stop_event: threading.Event | None = None,
    *,
    plans: Sequence[DevicePlan] | None = None,
    seed: int | None = None,
    thing_prefix: str = "sim-pi",
    groups: Sequence[str] | None = None,
    spike_probability: float | None = None,
    duration: float | None = None,
    mqtt_settings: MqttSettings | Sequence[MqttSettings] | None = None,
) -> list[DeviceReport]:
    """Run `devices` virtual Pis until `stop_event` is set (or `duration` seconds pass); blocks.

    - `api_url`: the API's base URL (`http://127.0.0.1:3000`) or the full `.../readings` URL;
      `api_key` goes in `x-api-key`: one key per device (device n uses the n-th; a device's key
      only posts its own group), or one key for all.
    - `mqtt_host`/`mqtt_port`: the broker (plain TCP); None for a fleet that only posts readings.
      `mqtt_settings`: instead, the connection settings (one for all, or one per device: the
      local stack gives each device its provisioned certificate on the TLS listener).
    - `interval`: seconds between readings of each device (below 1 s, `createdtime` carries
      milliseconds so readings stay distinct).
    - `plans`: one `DevicePlan` per device; by default device 2 drops unexpectedly after 15 s for
      90 s and device 3 leaves cleanly after 30 s for 20 s (`default_plans`).
    - `seed`: makes values, spikes and jitter repeatable; `spike_probability` overrides the NO2
      plume probability per sample (default 0.05).

    Thing names (and MQTT client ids) are `<thing_prefix>-01`, `-02`, ...; device n posts with
    groupid "n", or `groups[n-1]` (each device's provisioned group). Returns each device's report
    (samples, delivered, still queued, connects). On return every device has disconnected cleanly.
    """
    fleet = Fleet(
        api_url,
        api_key,
        mqtt_host,
        mqtt_port,
        devices,
        interval,
        plans=plans,
        seed=seed,
        thing_prefix=thing_prefix,
        groups=groups,
        spike_probability=spike_probability,
        mqtt_settings=mqtt_settings,
    )
    stop = stop_event or threading.Event()
    fleet.start()
    try:
        stop.wait(duration)
    finally:
        reports = fleet.stop()
    return reports
