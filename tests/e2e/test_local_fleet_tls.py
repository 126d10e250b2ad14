"""`make local`'s simulated Pis connect as provisioned devices do in AWS: TLS, their own certificate."""

import re
import time
from pathlib import Path

import pytest

from gasmon_local.process import StackProcess

pytestmark = pytest.mark.e2e


def test_the_simulated_fleet_connects_over_tls_with_its_certificates_and_is_never_denied(tmp_path: Path) -> None:
    # Given `make local` with one simulated Pi (the fleet is provisioned through gasmon-admin)
    with StackProcess(tmp_path, "--devices", "1", "--interval", "1") as stack:
        host, tls_port = stack.mqtts_address()
        deadline = time.monotonic() + 30
        pattern = re.compile(rf"MQTT connected to {re.escape(host)}:{tls_port} as sim-pi-01")
        while not pattern.search(stack.log_tail(400)) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = stack.log_tail(400)
        # Then it connected on the TLS listener, with its provisioned certificate and key
        assert pattern.search(log), log
        assert (tmp_path / "fleet" / "sim-pi-01" / "certificate.pem.crt").exists()
        # And the stack's device policy never refused it anything (connect, its will, its topics)
        assert "DENIED" not in log
