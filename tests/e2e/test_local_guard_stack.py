"""Starting `make local` twice on one data dir leaves the first stack untouched."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gasmon_local.process import PORT_FLAGS, StackProcess

pytestmark = pytest.mark.e2e


def test_a_second_stack_on_the_same_data_dir_refuses_and_leaves_the_first_running(tmp_path: Path) -> None:
    with StackProcess(tmp_path, "--no-devices") as first:
        endpoints_file = tmp_path / "endpoints.json"
        before = endpoints_file.read_text()
        # When a second gasmon-local is started on the same data dir (free ports, so only the lock stops it)
        command = [str(Path(sys.executable).with_name("gasmon-local")), "--data-dir", str(tmp_path), *PORT_FLAGS]
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        # Then it exits 1 naming the first one's pid, and the first one's endpoints file is intact
        assert second.returncode == 1
        assert f"pid {first.process.pid}" in second.stdout + second.stderr  # type: ignore[union-attr]
        assert endpoints_file.read_text() == before
        # And the first stack still answers
        with urllib.request.urlopen(json.loads(before)["api"] + "/", timeout=5) as answer:
            assert answer.status == 200
