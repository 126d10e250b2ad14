"""gasmon device agent (runs on the Raspberry Pi; never imports the Lambda layer).

- `gasmon-device publish`: sensors -> on-disk queue -> `POST /readings` (`gasmon_device.publisher`)
- `gasmon-device subscribe`: warnings on `pi/1` -> log and alarm hook, presence via Last Will
  (`gasmon_device.subscriber`)
- `gasmon-device simulate` / `gasmon_device.simulator.run_fleet`: a fleet of virtual Pis
- `gasmon-device status`: queue depth, dead letters, dropped readings, last success
"""

__version__ = "0.1.0"
