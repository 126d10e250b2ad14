"""The two template gates `make iac` runs can fail: on a template with known gaps each reports them.

So template.yaml's 0 findings mean its resources (and their reasoned suppressions) pass, not that
the serverless rules failed to load or checkov scanned nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

GAPS = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.13
      Handler: app.handler
      InlineCode: "def handler(event, context): return 1"
"""


def test_cfn_lint_with_the_serverless_rules_reports_a_function_without_tracing(tmp_path: Path) -> None:
    template = tmp_path / "gaps.yaml"
    template.write_text(GAPS)
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "-t", str(template), "--append-rules", "cfn_lint_serverless.rules"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "WS1000" in result.stdout, result.stdout  # Lambda tracing not Active
    assert "ES6000" in result.stdout  # a queue without a redrive policy


@pytest.mark.skipif(not CHECKOV.exists(), reason="no .venv-checkov: `make iac` (and so `make test`) creates it")
def test_checkov_reports_an_unencrypted_queue(tmp_path: Path) -> None:
    template = tmp_path / "gaps.yaml"
    template.write_text(GAPS)
    result = subprocess.run(
        [str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "--compact", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "CKV_AWS_27" in result.stdout
