"""MQ-series gas sensors behind an ADC (MCP3008 over SPI, ADS1115 over I2C).

The chain, per sensor, from a raw ADC code to a concentration:

1. code -> volts at the ADC pin: MCP3008 `V = code * Vref / 1024` (datasheet eq. 4-2);
   ADS1115 `V = raw * FSR / 32768` (raw is signed 16-bit, FSR 4.096 V at gain 1).
2. volts at the pin -> volts at the sensor's output: times the divider ratio (a 5 V module read
   by a 3.3 V ADC sits behind a divider, typically 10k/20k -> 1.5).
3. output volts -> sensor resistance: the sensor and the load resistor RL form a divider,
   `Rs = RL * (Vc - Vout) / Vout`.
4. Rs -> ratio to R0 (Rs in the curve's reference atmosphere; R0 = Rs in clean air divided by the
   curve's clean-air ratio, measured once by `gasmon-device calibrate`).
5. ratio -> concentration with the datasheet's log-log line fitted as `ppm = a * ratio**b`.

The hardware is reached through two tiny interfaces (`SpiDevice.xfer2`, `I2cBus.*_i2c_block_data`)
so the whole chain runs in tests on recorded codes; `spidev` and `smbus2` are imported only when a
real chip is opened.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .config import SensorSpec
from .sources import Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Curve:
    """A sensor's datasheet sensitivity line `ppm = a * (Rs/R0)**b`, and its clean-air Rs/R0."""

    a: float
    b: float
    clean_air_ratio: float
    unit: str = "ppm"


# Exponential fits of the Hanwei datasheet curves as published with the MQUnifiedsensor library
# (R0 = Rs at the datasheet's reference concentration). MQ sensors have no NO2 curve: an NO2
# sensor (e.g. MiCS-2714) needs its own `a`/`b` in the config.
CURVES: dict[str, Curve] = {
    "MQ-7/CO": Curve(a=99.042, b=-1.518, clean_air_ratio=27.5),
    "MQ-8/H2": Curve(a=976.97, b=-0.688, clean_air_ratio=70.0),
    "MQ-2/H2": Curve(a=987.99, b=-2.162, clean_air_ratio=9.83),
    "MQ-3/alcohol": Curve(a=0.3934, b=-1.504, clean_air_ratio=60.0, unit="mg/L"),
    "MQ-135/alcohol": Curve(a=77.255, b=-3.18, clean_air_ratio=3.6),
}


class AdcError(Exception):
    """The ADC or a sensor cannot be read as configured."""


# -- conversion math (pure) ----------------------------------------------------------------------


def mcp3008_volts(code: int, vref: float) -> float:
    """Volts at an MCP3008 input for a 10-bit code."""
    if not 0 <= code <= 1023:
        raise ValueError(f"MCP3008 code {code} is outside 0..1023")
    return code * vref / 1024


def ads1115_volts(raw: int, full_scale: float = 4.096) -> float:
    """Volts at an ADS1115 input for a signed 16-bit conversion result."""
    return raw * full_scale / 32768


def sensor_resistance(v_out: float, supply_volts: float, load_ohms: float) -> float | None:
    """Rs from the load-resistor divider; None when the output is at a rail (no usable reading)."""
    if v_out <= 0 or v_out >= supply_volts:
        return None
    return load_ohms * (supply_volts - v_out) / v_out


def concentration(rs: float, r0: float, curve: Curve) -> float:
    """`a * (Rs/R0)**b`."""
    return curve.a * float((rs / r0) ** curve.b)


def calibrate_r0(clean_air_rs: Sequence[float], clean_air_ratio: float) -> float:
    """R0 from Rs samples taken in clean air after warm-up (the median resists spikes)."""
    if not clean_air_rs:
        raise ValueError("no clean-air samples")
    return statistics.median(clean_air_rs) / clean_air_ratio


def curve_for(spec: SensorSpec) -> Curve:
    """The sensor's curve: explicit `a`/`b` in the config win over a named built-in curve."""
    named = CURVES.get(spec.curve) if spec.curve else None
    if spec.a is not None and spec.b is not None:
        return Curve(a=spec.a, b=spec.b, clean_air_ratio=named.clean_air_ratio if named else 1.0)
    if named is None:
        known = ", ".join(CURVES)
        raise AdcError(f"sensor {spec.gas}: set curve to one of {known}, or give a and b for its datasheet curve")
    return named


# -- hardware access (injectable) ----------------------------------------------------------------


class SpiDevice(Protocol):
    """The part of `spidev.SpiDev` the MCP3008 driver uses."""

    def xfer2(self, data: list[int]) -> list[int]: ...


class I2cBus(Protocol):
    """The part of `smbus2.SMBus` the ADS1115 driver uses."""

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None: ...

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]: ...


class AdcReader(Protocol):
    """Volts on one single-ended channel."""

    def read_volts(self, channel: int) -> float: ...


class Mcp3008:
    """MCP3008 10-bit ADC over SPI (single-ended channels 0-7)."""

    def __init__(self, spi: SpiDevice, vref: float = 3.3) -> None:
        self.spi = spi
        self.vref = vref

    @classmethod
    def open(cls, bus: int = 0, device: int = 0, vref: float = 3.3) -> Mcp3008:
        try:
            import spidev  # type: ignore[import-not-found]
        except ImportError:
            raise AdcError("the MCP3008 driver needs spidev: `sudo apt install python3-spidev`") from None
        spi: Any = spidev.SpiDev()
        spi.open(bus, device)
        spi.max_speed_hz = 1_350_000
        return cls(spi, vref)

    def read_code(self, channel: int) -> int:
        if not 0 <= channel <= 7:
            raise AdcError(f"MCP3008 channel {channel} is outside 0..7")
        # Start bit, then single-ended mode + channel in the high nibble; the answer is the last 10 bits.
        reply = self.spi.xfer2([0x01, (0x08 | channel) << 4, 0x00])
        return ((reply[1] & 0x03) << 8) | reply[2]

    def read_volts(self, channel: int) -> float:
        return mcp3008_volts(self.read_code(channel), self.vref)


class Ads1115:
    """ADS1115 16-bit ADC over I2C, single-shot conversions at gain 1 (+-4.096 V), 128 samples/s."""

    CONVERSION_REGISTER = 0x00
    CONFIG_REGISTER = 0x01

    def __init__(
        self,
        bus: I2cBus,
        address: int = 0x48,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bus = bus
        self.address = address
        self.sleep = sleep

    @classmethod
    def open(cls, bus: int = 1, address: int = 0x48) -> Ads1115:
        try:
            import smbus2  # type: ignore[import-not-found]
        except ImportError:
            raise AdcError("the ADS1115 driver needs smbus2: `sudo apt install python3-smbus2`") from None
        return cls(smbus2.SMBus(bus), address)

    @staticmethod
    def config_word(channel: int) -> int:
        """OS=1 (start), MUX=AINx vs GND, PGA=+-4.096 V, single-shot, 128 SPS, comparator off."""
        if not 0 <= channel <= 3:
            raise AdcError(f"ADS1115 channel {channel} is outside 0..3")
        return 0x8000 | ((0x4 + channel) << 12) | (0x1 << 9) | 0x0100 | (0x4 << 5) | 0x0003

    def read_raw(self, channel: int) -> int:
        word = self.config_word(channel)
        self.bus.write_i2c_block_data(self.address, self.CONFIG_REGISTER, [word >> 8, word & 0xFF])
        for _ in range(20):  # one conversion takes ~8 ms at 128 SPS
            self.sleep(0.002)
            status = self.bus.read_i2c_block_data(self.address, self.CONFIG_REGISTER, 2)
            if status[0] & 0x80:  # OS bit back to 1: conversion done
                break
        else:
            raise AdcError("ADS1115 conversion did not finish")
        data = self.bus.read_i2c_block_data(self.address, self.CONVERSION_REGISTER, 2)
        return int.from_bytes(bytes(data[:2]), "big", signed=True)

    def read_volts(self, channel: int) -> float:
        return ads1115_volts(self.read_raw(channel))


# -- the source ----------------------------------------------------------------------------------


class AdcSource:
    """A `SensorSource` reading MQ sensors through an `AdcReader` (averaging a few conversions)."""

    def __init__(
        self,
        reader: AdcReader,
        sensors: Sequence[SensorSpec],
        *,
        supply_volts: float = 5.0,
        divider_ratio: float = 1.0,
        samples_per_reading: int = 5,
    ) -> None:
        self.reader = reader
        self.supply_volts = supply_volts
        self.divider_ratio = divider_ratio
        self.samples_per_reading = max(1, samples_per_reading)
        self.sensors = [s for s in sensors if s.channel is not None]
        self.unwired = [s.gas for s in sensors if s.channel is None]
        self.curves = {s.gas: curve_for(s) for s in self.sensors}
        for spec in self.sensors:
            if spec.r0_ohms is None:
                raise AdcError(f"sensor {spec.gas} has no r0_ohms: run `gasmon-device calibrate` in clean air first")

    def resistance(self, spec: SensorSpec) -> float | None:
        """Rs of one sensor, averaged over `samples_per_reading` conversions."""
        assert spec.channel is not None
        volts = statistics.fmean(self.reader.read_volts(spec.channel) for _ in range(self.samples_per_reading))
        return sensor_resistance(volts * self.divider_ratio, self.supply_volts, spec.load_ohms)

    def read(self, now: datetime) -> Sample:
        values: dict[str, float | None] = dict.fromkeys(self.unwired)
        for spec in self.sensors:
            rs = self.resistance(spec)
            if rs is None:
                logger.warning("sensor %s on channel %s reads at a rail; check its wiring", spec.gas, spec.channel)
                values[spec.gas] = None
                continue
            assert spec.r0_ohms is not None
            values[spec.gas] = round(concentration(rs, spec.r0_ohms, self.curves[spec.gas]), 2)
        return Sample(values)

    def calibrate(
        self, samples: int = 50, pause: float = 0.1, sleep: Callable[[float], None] = time.sleep
    ) -> dict[str, float]:
        """R0 per gas from `samples` readings in clean air (the sensors must be warmed up)."""
        collected: dict[str, list[float]] = {s.gas: [] for s in self.sensors}
        for _ in range(samples):
            for spec in self.sensors:
                rs = self.resistance(spec)
                if rs is not None:
                    collected[spec.gas].append(rs)
            sleep(pause)
        result = {}
        for spec in self.sensors:
            if not collected[spec.gas]:
                raise AdcError(f"sensor {spec.gas} gave no usable reading during calibration; check its wiring")
            result[spec.gas] = calibrate_r0(collected[spec.gas], self.curves[spec.gas].clean_air_ratio)
        return result


def open_adc_source(
    chip: str,
    sensors: Sequence[SensorSpec],
    *,
    spi_bus: int = 0,
    spi_device: int = 0,
    i2c_bus: int = 1,
    i2c_address: int = 0x48,
    vref: float = 3.3,
    supply_volts: float = 5.0,
    divider_ratio: float = 1.0,
    samples_per_reading: int = 5,
    require_r0: bool = True,
) -> AdcSource:
    """Open the real chip and wrap it as a source."""
    reader: AdcReader
    if chip == "mcp3008":
        reader = Mcp3008.open(spi_bus, spi_device, vref)
    elif chip == "ads1115":
        reader = Ads1115.open(i2c_bus, i2c_address)
    else:
        raise AdcError(f"unknown ADC chip {chip!r} (mcp3008 or ads1115)")
    if not require_r0:
        sensors = [s if s.r0_ohms is not None else _with_r0(s, 1.0) for s in sensors]
    return AdcSource(
        reader, sensors, supply_volts=supply_volts, divider_ratio=divider_ratio, samples_per_reading=samples_per_reading
    )


def _with_r0(spec: SensorSpec, r0: float) -> SensorSpec:
    from dataclasses import replace

    return replace(spec, r0_ohms=r0)
