"""MQ sensors behind an ADC: the conversion chain on known answers and on a recorded run of codes."""

from __future__ import annotations

import csv
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gasmon_device.config import SensorSpec
from gasmon_device.mq import (
    CURVES,
    AdcSource,
    Ads1115,
    Mcp3008,
    calibrate_r0,
    concentration,
    mcp3008_volts,
    sensor_resistance,
)

RECORDING = Path(__file__).parent / "data" / "mcp3008_mq7_co_plume.csv"
NOW = datetime(2025, 3, 1, tzinfo=UTC)
MQ7 = SensorSpec(gas="co", sensorid="0005", sensortype="8", channel=0, curve="MQ-7/CO", r0_ohms=10_000.0)


def recorded_codes() -> list[int]:
    with RECORDING.open() as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [int(row["ch0"]) for row in rows]


class RecordedSpi:
    """Answers MCP3008 transfers with recorded codes, checking each request is well formed.

    The high bits of the second reply byte are set to garbage, as the chip leaves them undefined.
    """

    def __init__(self, codes: list[int]) -> None:
        self.codes = iter(codes)
        self.requests: list[list[int]] = []

    def xfer2(self, data: list[int]) -> list[int]:
        self.requests.append(list(data))
        assert data[0] == 0x01 and data[1] & 0x80 and data[2] == 0x00
        code = next(self.codes)
        return [0xFF, 0xF8 | (code >> 8), code & 0xFF]


def test_datasheet_reference_points() -> None:
    # The MQ-7 datasheet defines R0 at 100 ppm CO, the MQ-8's at 1000 ppm H2: Rs/R0 = 1 must give them
    assert concentration(10_000, 10_000, CURVES["MQ-7/CO"]) == pytest.approx(100, rel=0.01)
    assert concentration(10_000, 10_000, CURVES["MQ-8/H2"]) == pytest.approx(1000, rel=0.03)
    # and a lower resistance (more gas) must read higher
    assert concentration(5_000, 10_000, CURVES["MQ-7/CO"]) > concentration(10_000, 10_000, CURVES["MQ-7/CO"])


def test_one_code_worked_by_hand() -> None:
    # Code 519 on a 3.3 V MCP3008 is 519 * 3.3 / 1024 = 1.67256 V at the pin; behind a 1.5:1 divider
    # the module's output is 2.50884 V; with RL = 10 kOhm on 5 V, Rs = 10k * (5 - 2.50884) / 2.50884
    # = 9929.5 Ohm; with R0 = 10 kOhm, Rs/R0 = 0.99295 and 99.042 * 0.99295**-1.518 = 100.11 ppm.
    volts = mcp3008_volts(519, 3.3)
    rs = sensor_resistance(volts * 1.5, 5.0, 10_000)
    assert volts == pytest.approx(1.67256, abs=1e-5)
    assert rs == pytest.approx(9929.5, abs=0.5)
    assert rs is not None and concentration(rs, 10_000, CURVES["MQ-7/CO"]) == pytest.approx(100.11, abs=0.02)


def test_readings_at_a_rail_are_not_numbers() -> None:
    assert sensor_resistance(0.0, 5.0, 10_000) is None
    assert sensor_resistance(5.0, 5.0, 10_000) is None
    with pytest.raises(ValueError):
        mcp3008_volts(1024, 3.3)


def test_calibration_on_the_clean_air_part_of_the_recording_finds_r0() -> None:
    # Given the first 60 s of the recording (clean air) read through the MCP3008 driver
    codes = recorded_codes()[:60]
    adc = Mcp3008(RecordedSpi(codes), vref=3.3)
    rs = [sensor_resistance(adc.read_volts(0) * 1.5, 5.0, 10_000) for _ in codes]

    # When R0 is derived with the MQ-7's clean-air ratio
    r0 = calibrate_r0([r for r in rs if r is not None], CURVES["MQ-7/CO"].clean_air_ratio)

    # Then it is the module's 10 kOhm within the 1-LSB resolution of a 10-bit ADC at clean-air levels
    assert r0 == pytest.approx(10_000, rel=0.05)


def test_replaying_the_recording_through_the_source_tracks_the_plume() -> None:
    # Given an AdcSource on the recorded codes (one conversion per reading)
    spi = RecordedSpi(recorded_codes())
    source = AdcSource(Mcp3008(spi, vref=3.3), [MQ7], supply_volts=5.0, divider_ratio=1.5, samples_per_reading=1)

    # When every recorded second is read
    values = [source.read(NOW).values["co"] for _ in range(180)]

    # Then clean air reads about 1 ppm, the plume peaks near 200 ppm (over gasmon's CO threshold of 35),
    # the rise is steady, and the end of the decay is back under 5 ppm
    assert all(v is not None for v in values)
    co = [v for v in values if v is not None]
    assert max(co[:60]) < 1.5
    assert max(co[90:120]) == pytest.approx(200, rel=0.03)
    rise = co[60:90]
    assert rise[-1] > 35 and sum(b < a for a, b in zip(rise[::5], rise[5::5], strict=False)) == 0
    assert co[-1] < 5
    # and every transfer asked for channel 0, single-ended
    assert {tuple(r) for r in spi.requests} == {(0x01, 0x80, 0x00)}


def test_a_sensor_at_a_rail_gives_no_value_and_a_warning(caplog) -> None:
    source = AdcSource(Mcp3008(RecordedSpi([0]), vref=3.3), [MQ7], divider_ratio=1.5, samples_per_reading=1)
    with caplog.at_level(logging.WARNING):
        assert source.read(NOW).values == {"co": None}
    assert "check its wiring" in caplog.text


class RecordedI2c:
    """An ADS1115 on a fake bus: conversions finish after one status poll; results come from `raw`."""

    def __init__(self, raw: dict[int, int]) -> None:
        self.raw = raw
        self.writes: list[tuple[int, int, list[int]]] = []
        self._channel = 0
        self._polls = 0

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        self.writes.append((address, register, list(data)))
        word = (data[0] << 8) | data[1]
        self._channel = ((word >> 12) & 0x7) - 0x4
        self._polls = 0

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        if register == Ads1115.CONFIG_REGISTER:
            self._polls += 1
            return [0x80 if self._polls > 1 else 0x00, 0x00]
        return list(self.raw[self._channel].to_bytes(2, "big", signed=True))


def test_ads1115_single_shot_configuration_and_conversion() -> None:
    # The widely used single-shot AIN0 word (+-4.096 V, 128 SPS, comparator off) is 0xC383
    assert Ads1115.config_word(0) == 0xC383
    assert Ads1115.config_word(3) == 0xF383

    bus = RecordedI2c({0: 16384, 1: -8})
    adc = Ads1115(bus, address=0x48, sleep=lambda _: None)
    assert adc.read_volts(0) == pytest.approx(2.048)
    assert adc.read_volts(1) == pytest.approx(-8 * 4.096 / 32768)
    assert bus.writes[0] == (0x48, 0x01, [0xC3, 0x83])
    assert bus.writes[1] == (0x48, 0x01, [0xD3, 0x83])


def test_adc_source_without_r0_asks_for_calibration() -> None:
    from gasmon_device.mq import AdcError

    uncalibrated = SensorSpec(gas="co", sensorid="0005", sensortype="8", channel=0, curve="MQ-7/CO")
    with pytest.raises(AdcError, match="calibrate"):
        AdcSource(Mcp3008(RecordedSpi([]), 3.3), [uncalibrated])
